"""OnnxDrift: an ONNX variant's every intermediate tensor against its fp32 model's, through Polygraphy and ONNX Runtime.

Both graphs run with every tensor marked as an output (Polygraphy's ``ModifyOutputs`` with
``MARK_ALL``, saved with ``SaveOnnx``) in an ONNX Runtime session on the CPU. A marked tensor is kept, so ONNX Runtime cannot fold a
Q/DQ pair into an integer kernel: a quantized graph runs as its QDQ simulation (the same values
up to the kernels' rounding), which is what ONNX Runtime's own QDQ debugging compares too.

For an ONNX Runtime-quantized variant the fp32 side is the fp32 model put through the
quantizers' pre-processing (navbuild/steps/ort_quantized.py), the graph the quantizer read: its
tensor and node names are the quantized graph's, and the ranked names are the ones
``quantization.*.exclude`` (``nodes_to_exclude``) accepts.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

from navbuild.lazy import lazy_import
from navbuild.model_io import model_file
from navbuild.steps.drift import DriftParams, DriftStep, GraphRun, Node, owners, relative_l2
from navbuild.steps.ort_quantized import graph_input_dtypes, pre_process

np = lazy_import("numpy")

#: nodes that move values between precisions rather than compute: not ranked as layers
HELPERS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Cast"})
#: op types that mark a graph quantized by ONNX Runtime (its fp32 side is then pre-processed)
_QUANTIZED = frozenset({"QuantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"})
#: above this size the protobuf 2 GB limit is near: the marked graph keeps its weights in a data file
_EXTERNAL_DATA_BYTES = 1_800_000_000
#: the session's threads: fixed, so the recipe's thread count does not change what a drift measures
THREADS = 2


def graph_nodes(path: Path) -> tuple[Node, ...]:
    """The nodes of an ONNX file in graph (topological) order; unnamed nodes named ``<op>_<index>``
    as the quantizers' pre-processing names them."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return tuple(Node(n.name or f"{n.op_type}_{i}", n.op_type, tuple(n.input), tuple(n.output))
                 for i, n in enumerate(graph.node))


def fused_stand_ins(variant_nodes: Sequence[Node], fp32_nodes: Sequence[Node]) -> dict[str, str]:
    """Tensor -> the variant tensor its consumers see, where a quantizer fused the tensor's producer
    into the node before it (a Relu after a Gemm: the Gemm now outputs the Relu's tensor, unclipped,
    and the Q/DQ pair after it clips). There the value after the Q/DQ pair is the one that matches."""
    fp32_op = {t: n.op_type for n in fp32_nodes for t in n.outputs}
    consumers: dict[str, list[Node]] = {}
    for n in variant_nodes:
        for t in n.inputs:
            consumers.setdefault(t, []).append(n)
    owner = owners(variant_nodes, HELPERS)
    found: dict[str, str] = {}
    for tensor, node in owner.items():
        if tensor not in node.outputs or fp32_op.get(tensor, node.op_type) == node.op_type:
            continue
        for q in consumers.get(tensor, ()):
            if q.op_type != "QuantizeLinear":
                continue
            dq = next((d for d in consumers.get(q.outputs[0], ()) if d.op_type == "DequantizeLinear"), None)
            if dq is not None:
                found[tensor] = dq.outputs[0]
                break
    return found


def run_marked(path: Path, feeds: Mapping[str, Any], tmp: Path) -> dict[str, Any]:
    """Every tensor of the ONNX model at ``path`` on ``feeds``: Polygraphy marks them all as outputs,
    ONNX Runtime (CPU) runs the graph."""
    import onnxruntime as ort
    from polygraphy import constants
    from polygraphy.backend.onnx import ModifyOutputs, OnnxFromPath, SaveOnnx
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.WARNING
    size = sum(p.stat().st_size for p in path.parent.iterdir() if p.is_file()) if path.parent.is_dir() else 0
    marked = tmp / f"{path.stem}-marked.onnx"
    SaveOnnx(ModifyOutputs(OnnxFromPath(str(path), external_data_dir=str(path.parent)), outputs=constants.MARK_ALL),
             str(marked), external_data_path=f"{marked.name}.data" if size > _EXTERNAL_DATA_BYTES else None)()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
    options.log_severity_level = 3
    # a session of our own, not Polygraphy's runner: its SessionFromOnnx takes every CPU as threads,
    # and its runner imports torch to check the feeds' type
    session = ort.InferenceSession(str(marked), sess_options=options, providers=["CPUExecutionProvider"])
    dtypes = graph_input_dtypes(path)
    arrays = session.run(None, {n: np.ascontiguousarray(feeds[n], dtype=d) for n, d in dtypes.items()})
    return {o.name: a for o, a in zip(session.get_outputs(), arrays)}


class OnnxDrift(DriftStep):
    """Rank the layers of an ONNX variant (fp16, int8) by how much they add to its error against the fp32 model."""

    name: ClassVar[str] = "OnnxDrift"
    # 2: each quantized MatMul/Gemm's local error (its own quantization on fp32 inputs)
    version: ClassVar[int] = 2
    requires: ClassVar[tuple[str, ...]] = ("numpy", "onnx", "onnxruntime", "polygraphy", "matplotlib")
    tools: ClassVar[tuple[str, ...]] = ("onnx", "onnxruntime", "polygraphy", "numpy")
    helpers: ClassVar[frozenset[str]] = HELPERS

    def run_graphs(self, params: DriftParams, variant: Path, fp32: Path,
                   feeds: Mapping[str, Any]) -> tuple[GraphRun, GraphRun, dict[str, str]]:
        variant, fp32 = model_file(variant), model_file(fp32)
        with tempfile.TemporaryDirectory(prefix="navbuild-drift-") as tmp:
            variant_nodes = graph_nodes(variant)
            if any(n.op_type in _QUANTIZED for n in variant_nodes):
                print("the variant is ONNX Runtime-quantized: its fp32 side is the fp32 model after the "
                      "quantizers' pre-processing (the graph the quantizer read)", flush=True)
                fp32 = pre_process(fp32, Path(tmp) / "prepared.onnx", fp32.stat().st_size > _EXTERNAL_DATA_BYTES)
            fp32_nodes = graph_nodes(fp32)
            fp32_tensors = run_marked(fp32, feeds, Path(tmp))
            variant_tensors = run_marked(variant, feeds, Path(tmp))
            outputs = _graph_outputs(fp32)
        return (GraphRun(variant_nodes, variant_tensors, outputs), GraphRun(fp32_nodes, fp32_tensors, outputs),
                fused_stand_ins(variant_nodes, fp32_nodes))

    def local_errors(self, variant_model: Path, variant: GraphRun, fp32: GraphRun) -> dict[str, float]:
        """Each quantized MatMul/Gemm of a QDQ graph (its inputs dequantized) run in numpy on the fp32
        run's activations, put through the variant's own Quantize/Dequantize scales, and its
        dequantized weights, against the same node's fp32 output."""
        import onnx
        from onnx import numpy_helper

        graph = onnx.load(str(model_file(variant_model))).graph
        weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        producer = {o: n for n in graph.node for o in n.output}
        found: dict[str, float] = {}
        for i, node in enumerate(graph.node):
            if node.op_type not in ("MatMul", "Gemm"):
                continue
            feeds = [_layer_input(t, producer, weights, variant.tensors, fp32.tensors) for t in node.input]
            quantized = any(t in producer and producer[t].op_type == "DequantizeLinear" for t in node.input)
            expected = fp32.tensors.get(node.output[0])
            if not quantized or expected is None or any(f is None for f in feeds[:2]):
                continue
            try:
                actual = _gemm(node, feeds) if node.op_type == "Gemm" else np.matmul(feeds[0], feeds[1])
            except ValueError:  # shapes that do not line up (a fused producer): no local figure
                continue
            if np.shape(actual) == np.shape(expected):
                found[node.name or f"{node.op_type}_{i}"] = relative_l2(actual, expected)
        return found


def _layer_input(tensor: str, producer: Mapping[str, Any], weights: Mapping[str, Any],
                 variant: Mapping[str, Any], fp32: Mapping[str, Any]) -> Any:
    """What a layer reads when only its own quantization counts: a dequantized weight as the variant
    has it, a dequantized activation as the fp32 activation put through the variant's Q/DQ, else the
    fp32 tensor (or a weight left in float)."""
    if tensor in weights:
        return weights[tensor]
    dq = producer.get(tensor)
    if dq is None or dq.op_type != "DequantizeLinear":
        return fp32.get(tensor)
    q = producer.get(dq.input[0])
    if q is None or q.op_type != "QuantizeLinear":
        return variant.get(tensor)  # a weight dequantized from its int8 initializer
    x = fp32.get(q.input[0])
    scale = weights.get(q.input[1])
    if x is None or scale is None:
        return None
    zero = weights.get(q.input[2]) if len(q.input) > 2 and q.input[2] else np.zeros((), np.uint8)
    info = np.iinfo(zero.dtype)
    # an activation's scale is per tensor (ONNX Runtime's static quantization): round half to even
    levels = np.clip(np.rint(np.asarray(x, np.float32) / scale) + zero.astype(np.int32), info.min, info.max)
    return ((levels - zero.astype(np.int32)) * scale).astype(np.float32)


def _gemm(node: Any, feeds: Sequence[Any]) -> Any:
    attrs = {a.name: a for a in node.attribute}
    a, b = feeds[0], feeds[1]
    if attrs.get("transA") is not None and attrs["transA"].i:
        a = a.T
    if attrs.get("transB") is not None and attrs["transB"].i:
        b = b.T
    out = (attrs["alpha"].f if "alpha" in attrs else 1.0) * np.matmul(a, b)
    if len(feeds) > 2 and feeds[2] is not None:
        out = out + (attrs["beta"].f if "beta" in attrs else 1.0) * feeds[2]
    return out


def _graph_outputs(path: Path) -> tuple[str, ...]:
    import onnx

    return tuple(o.name for o in onnx.load(str(path), load_external_data=False).graph.output)


__all__ = ["OnnxDrift", "HELPERS", "graph_nodes", "fused_stand_ins", "run_marked"]
