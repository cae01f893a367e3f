"""OpenVinoDrift: an OpenVINO variant's every node output against the fp32 IR's, through OpenVINO's per-node outputs.

Every output port of every computing node is added as a model output (``Model.add_outputs``);
the CPU plugin then keeps each of them, so fusions that would hide one do not happen. A tensor
is named ``<friendly name>:<port>``: NNCF keeps the friendly names of the nodes it quantizes and
only adds FakeQuantize (and weight decompression) nodes, so the int8 IR and the fp32 IR share
their names, and the ranked names are the ones ``openvino.quantization.ignored_patterns`` matches.
The bf16 variant is the fp32 IR itself compiled with the bf16 precision hint.

Each quantized layer (a MatMul or Convolution reached by a FakeQuantize or an int8 weight) also gets its
own quantization error (``local_error``): the layer with its quantization nodes cut out of the variant's IR,
fed the fp32 IR's tensors where the variant's graph reads fp32-named nodes, against the fp32 layer.
NNCF's SmoothQuant scales travel with the cut (they are variant-only nodes between the two).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

from navbuild.formats.openvino import QUANTIZED_LAYERS
from navbuild.lazy import lazy_import
from navbuild.runners.openvino_runner import compile_config, numpy_dtype, port_name, read_model
from navbuild.runtime import RuntimeOptions
from navbuild.steps.drift import DriftParams, DriftStep, GraphRun, Node, NotMeasurable, relative_l2

np = lazy_import("numpy")

#: nodes that move values between precisions rather than compute: not ranked as layers
HELPERS = frozenset({"FakeQuantize", "Convert", "FakeConvert"})
#: nodes that compute nothing at run time: their outputs are not compared
_NOT_COMPUTED = frozenset({"Parameter", "Constant", "Result"})
#: element types of a weight NNCF stored as int8 (a FakeQuantize on a constant, compressed when saved)
_INT8 = frozenset({"i8", "u8"})
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


def local_errors(path: Path, fp32: GraphRun) -> dict[str, float]:
    """Layer name -> relative L2 error of each quantized layer of the IR at ``path`` run alone on the fp32
    run's tensors (``fp32.tensors``, named by :func:`tensor_id`) against the fp32 layer's output.

    A layer's inputs are followed upstream through the nodes the fp32 graph does not have (FakeQuantize,
    weight decompression, SmoothQuant's Multiply) to the first tensor it does have, which becomes a
    Parameter fed that fp32 tensor; constants stay. A layer with no FakeQuantize or int8 weight on that
    path is not quantized and gets no figure.
    """
    import openvino as ov

    model = read_model(path)
    core = ov.Core()
    config = compile_config(RuntimeOptions(intra_op_threads=THREADS), core)
    found: dict[str, float] = {}
    for layer in model.get_ordered_ops():
        expected = fp32.tensors.get(tensor_id(layer.output(0))) if layer.get_type_name() in QUANTIZED_LAYERS else None
        if expected is None:
            continue
        way = _cut_inputs(layer, fp32.tensors)
        if way is None or not way[1] or any(fp32.tensors[t].dtype != np.float32 for _, t in way[0]):
            continue
        cut = way[0]
        original = [(port, port.get_source_output()) for port, _ in cut]
        parameters = []
        try:
            for port, tensor in cut:
                parameter = ov.opset13.parameter(list(fp32.tensors[tensor].shape), ov.Type.f32)
                port.replace_source_output(parameter.output(0))
                parameters.append(parameter)
            alone = core.compile_model(ov.Model([layer.output(0)], parameters), "CPU", config)
            actual = alone([fp32.tensors[t] for _, t in cut])[0]
        finally:
            for port, source in original:
                port.replace_source_output(source)
        if np.shape(actual) == np.shape(expected):
            found[layer.get_friendly_name()] = relative_l2(actual, expected)
    return found


def _cut_inputs(layer: Any, fp32: Mapping[str, Any]) -> tuple[list[tuple[Any, str]], bool] | None:
    """(the input ports where ``layer``'s variant-only upstream meets an fp32 tensor, with that tensor;
    whether a FakeQuantize or an int8 weight lies on the way), or None where the way reaches a graph
    input (an integer or shape path the fp32 run did not record: the layer cannot run alone)."""
    cut: list[tuple[Any, str]] = []
    quantized = False
    pending, seen = list(layer.inputs()), set()
    while pending:
        port = pending.pop()
        source = port.get_source_output()
        node = source.get_node()
        kind = node.get_type_name()
        if kind == "Constant":
            quantized |= node.get_element_type().get_type_name() in _INT8
        elif tensor_id(source) in fp32:
            cut.append((port, tensor_id(source)))
        elif kind == "Parameter":
            return None
        elif node.get_friendly_name() not in seen:
            seen.add(node.get_friendly_name())
            quantized |= kind == "FakeQuantize"
            pending.extend(node.inputs())
    return cut, quantized


class OpenVinoDrift(DriftStep):
    """Rank the layers of an OpenVINO variant (int8, weight-only int8, bf16) by how much they add to its error."""

    name: ClassVar[str] = "OpenVinoDrift"
    # 2: each quantized MatMul/Convolution's local error (its own quantization on fp32 inputs), which
    # openvino-int8-aa's search ranks by
    version: ClassVar[int] = 2
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

    def local_errors(self, variant_model: Path, variant: GraphRun, fp32: GraphRun) -> dict[str, float]:
        return local_errors(variant_model, fp32)


__all__ = ["OpenVinoDrift", "HELPERS", "local_errors", "run_marked", "tensor_id"]
