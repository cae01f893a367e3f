"""OpenVinoDrift: an OpenVINO variant's every node output against the fp32 IR's, through OpenVINO's per-node outputs.

Every output port of every computing node is added as a model output (``Model.add_outputs``);
the CPU plugin then keeps each of them, so fusions that would hide one do not happen. A tensor
is named ``<friendly name>:<port>``: NNCF keeps the friendly names of the nodes it quantizes and
only adds FakeQuantize (and weight decompression) nodes, so the int8 IR and the fp32 IR share
their names, and the ranked names are the ones ``openvino.quantization.ignored_patterns`` matches.
The bf16 variant is the fp32 IR itself compiled with the bf16 precision hint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

from navbuild.lazy import lazy_import
from navbuild.runners.openvino_runner import compile_config, numpy_dtype, port_name, read_model
from navbuild.runtime import RuntimeOptions
from navbuild.steps.drift import DriftParams, DriftStep, GraphRun, Node, NotMeasurable

np = lazy_import("numpy")

#: nodes that move values between precisions rather than compute: not ranked as layers
HELPERS = frozenset({"FakeQuantize", "Convert", "FakeConvert"})
#: nodes that compute nothing at run time: their outputs are not compared
_NOT_COMPUTED = frozenset({"Parameter", "Constant", "Result"})
#: the compiled model's threads: fixed, so the recipe's thread count does not change what a drift measures
THREADS = 2


def tensor_id(output: Any) -> str:
    """``<friendly name>:<port>`` of a node output."""
    return f"{output.get_node().get_friendly_name()}:{output.get_index()}"


def run_marked(path: Path, mode: str, feeds: Mapping[str, Any]) -> GraphRun:
    """Every node output of the IR at ``path``, compiled for the CPU in runtime ``mode``, on ``feeds``."""
    import openvino as ov

    model = read_model(path)
    nodes: list[Node] = []
    marked: list[Any] = []
    for op in model.get_ordered_ops():
        if op.get_type_name() in _NOT_COMPUTED:
            continue
        inputs = tuple(tensor_id(i.get_source_output()) for i in op.inputs())
        nodes.append(Node(op.get_friendly_name(), op.get_type_name(), inputs,
                          tuple(tensor_id(o) for o in op.outputs())))
        for out in op.outputs():
            feeds_result = any(t.get_node().get_type_name() == "Result" for t in out.get_target_inputs())
            dtype = numpy_dtype(out.get_element_type())
            if not feeds_result and dtype is not None and np.issubdtype(dtype, np.floating):
                marked.append(out)
    outputs = [tensor_id(r.input_value(0)) for r in model.get_results()]
    if marked:
        model.add_outputs(marked)
    names = outputs + [tensor_id(o) for o in marked]
    core = ov.Core()
    compiled = core.compile_model(model, "CPU", compile_config(RuntimeOptions(intra_op_threads=THREADS, mode=mode),
                                                               core))
    inputs = {}
    for i, port in enumerate(model.inputs):
        dtype = numpy_dtype(port.get_element_type())
        arr = np.asarray(feeds[port_name(port, f"input_{i}")])
        inputs[i] = np.ascontiguousarray(arr if dtype is None else arr.astype(dtype, copy=False))
    request = compiled.create_infer_request()
    request.infer(inputs)
    tensors = {}
    for i, name in enumerate(names):
        data = request.get_output_tensor(i).data
        tensors[name] = data.astype(np.float32) if np.issubdtype(data.dtype, np.floating) else np.array(data)
    return GraphRun(tuple(nodes), tensors, tuple(outputs))


class OpenVinoDrift(DriftStep):
    """Rank the layers of an OpenVINO variant (int8, weight-only int8, bf16) by how much they add to its error."""

    name: ClassVar[str] = "OpenVinoDrift"
    version: ClassVar[int] = 1
    requires: ClassVar[tuple[str, ...]] = ("numpy", "openvino", "matplotlib")
    tools: ClassVar[tuple[str, ...]] = ("openvino", "numpy")
    helpers: ClassVar[frozenset[str]] = HELPERS

    @classmethod
    def depends_on_hardware(cls, params: DriftParams) -> bool:
        # a precision hint runs the CPU's own bf16 kernels: another CPU rounds differently
        return bool(params.mode)

    def run_graphs(self, params: DriftParams, variant: Path, fp32: Path,
                   feeds: Mapping[str, Any]) -> tuple[GraphRun, GraphRun, dict[str, str]]:
        import openvino as ov

        try:
            compile_config(RuntimeOptions(mode=params.mode), ov.Core())
        except ValueError as e:  # a bf16 hint on a CPU without native bf16: the check fails it already
            raise NotMeasurable(str(e)) from e
        fp32_run = run_marked(fp32, "", feeds)
        return run_marked(variant, params.mode, feeds), fp32_run, {}


__all__ = ["OpenVinoDrift", "HELPERS", "run_marked", "tensor_id"]
