"""OrtQuantizedDynamic and OrtQuantizedStatic: ONNX Runtime int8 quantization of an ONNX model (dynamic, and static QDQ calibrated on the reference samples)."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator, List, Mapping, Sequence

from navbuild.lazy import lazy_import
from navbuild.model_io import model_file
from navbuild.samples import read_npz
from navbuild.settings import params_of, regex_problem, setting
from navbuild.steps.base import Step, StepContext
from navbuild.steps.common import first_line
from navbuild.steps.reference import SAMPLES_FILE

np = lazy_import("numpy")

WEIGHT_TYPES: tuple[str, ...] = ("qint8", "quint8")
ACTIVATION_TYPES: tuple[str, ...] = WEIGHT_TYPES  # the same 8-bit integer types
CALIBRATIONS: tuple[str, ...] = ("minmax", "entropy", "percentile")
#: quantized op types that are not recognisable by name pattern alone (see _is_quantized_op)
_QUANTIZED_OPS = frozenset({"QGemm", "QAttention", "QEmbedLayerNormalization"})
#: histogram bins for entropy calibration. ORT's default equals its 128 quantized bins, which
#: leaves the KL search a single candidate threshold (the full range: min-max again). 2048 (as
#: TensorRT) makes ORT's pure-Python search ~7x slower (60 s on a 2-layer toy BERT); changing
#: this value changes artifacts, so bump the step version with it.
_ENTROPY_BINS = 512
#: above this size the protobuf 2 GB limit is near: weights go to an external data file
_EXTERNAL_DATA_BYTES = 1_800_000_000


@dataclass
class DynamicQuantConfig:
    """The recipe's ``quantization.dynamic``: ONNX Runtime dynamic int8 quantization (onnx-int8-dynamic)."""

    per_channel: bool = setting(True, doc="one scale per output channel of each weight")
    reduce_range: bool = setting(False, doc="7-bit weights: for CPUs without VNNI, where u8s8 can saturate")
    weight_type: str = setting("qint8", choices=WEIGHT_TYPES)
    exclude: List[str] = setting(factory=list, check=regex_problem,
                                 doc="regexes (re.search) on node names and op types kept in float")
    op_types: List[str] = setting(factory=list, doc="op types to quantize; empty: ONNX Runtime's default set")


@dataclass
class StaticQuantConfig(DynamicQuantConfig):
    """The recipe's ``quantization.static``: ONNX Runtime static QDQ int8 quantization (onnx-int8-static);
    the dynamic section's settings and the calibration's."""

    calibration: str = setting("minmax", choices=CALIBRATIONS)
    activation_type: str = setting("quint8", choices=ACTIVATION_TYPES)
    max_samples: int = setting(64, minimum=1, doc="calibration rows taken from the reference samples")
    batch_size: int = setting(1, minimum=1, doc="rows per calibration run")


OrtQuantizedDynamicParams = params_of(DynamicQuantConfig, "OrtQuantizedDynamicParams", __name__)
OrtQuantizedStaticParams = params_of(StaticQuantConfig, "OrtQuantizedStaticParams", __name__)


class OrtQuantizedDynamic(Step):
    """Dynamic int8 quantization (weights int8 offline, activations quantized at run time) to ``model.onnx``.

    Needs no calibration data; on CPU it mainly speeds up MatMul/Gemm-heavy models such as
    transformers. The model is first put through ORT's quantization pre-processing (shape
    inference and basic graph optimization), which the quantizer needs to see tensor shapes.
    """

    name: ClassVar[str] = "OrtQuantizedDynamic"
    version: ClassVar[int] = 1
    Params: ClassVar[type] = OrtQuantizedDynamicParams
    requires: ClassVar[tuple[str, ...]] = ("onnxruntime", "onnx")
    tools: ClassVar[tuple[str, ...]] = ("onnxruntime", "onnx")

    def run(self, params: OrtQuantizedDynamicParams, ctx: StepContext) -> dict:
        from onnxruntime.quantization import quantize_dynamic

        _check_choice("weight_type", params.weight_type, WEIGHT_TYPES)
        patterns = _compile_patterns(params.exclude)
        source = model_file(ctx.inputs["onnx"])
        target = ctx.out / "model.onnx"
        large = source.stat().st_size > _EXTERNAL_DATA_BYTES
        with tempfile.TemporaryDirectory(prefix="navbuild-quant-") as tmp:
            prepared = pre_process(source, Path(tmp) / "prepared.onnx", large)
            excluded = _excluded_nodes(prepared, patterns, params.exclude)
            op_types, ort_excluded = _gemm_as_matmul(prepared, list(params.op_types), excluded)
            print(f"dynamic quantization: weights {params.weight_type}, per_channel {params.per_channel}, "
                  f"reduce_range {params.reduce_range}, op types {list(params.op_types) or 'ORT default'}",
                  flush=True)
            quantize_dynamic(str(prepared), str(target), op_types_to_quantize=op_types or None,
                             per_channel=params.per_channel, reduce_range=params.reduce_range,
                             weight_type=_quant_type(params.weight_type), nodes_to_exclude=ort_excluded,
                             use_external_data_format=large,
                             # ORT's own dynamic default, spelled out: activation x activation
                             # MatMuls (attention scores) lose too much accuracy in int8
                             extra_options={"MatMulConstBOnly": True})
        return {"per_channel": params.per_channel, "reduce_range": params.reduce_range,
                "weight_type": params.weight_type, "excluded_nodes": len(excluded),
                "quantized_ops": _report_quantized(target), "size_bytes": _size(ctx.out)}


class OrtQuantizedStatic(Step):
    """Static int8 quantization in QDQ format, calibrated on the reference samples, to ``model.onnx``.

    Activation ranges are fixed at build time from the samples (``minmax``, ``entropy`` or
    ``percentile``), so the samples should look like production inputs.
    """

    name: ClassVar[str] = "OrtQuantizedStatic"
    version: ClassVar[int] = 1
    Params: ClassVar[type] = OrtQuantizedStaticParams
    requires: ClassVar[tuple[str, ...]] = ("onnxruntime", "onnx")
    tools: ClassVar[tuple[str, ...]] = ("onnxruntime", "onnx")

    def run(self, params: OrtQuantizedStaticParams, ctx: StepContext) -> dict:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

        _check_choice("calibration", params.calibration, CALIBRATIONS)
        _check_choice("activation_type", params.activation_type, ACTIVATION_TYPES)
        _check_choice("weight_type", params.weight_type, WEIGHT_TYPES)
        if params.max_samples < 1 or params.batch_size < 1:
            raise ValueError(f"max_samples ({params.max_samples}) and batch_size ({params.batch_size}) "
                             "must be >= 1")
        patterns = _compile_patterns(params.exclude)
        methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                   "percentile": CalibrationMethod.Percentile}
        source = model_file(ctx.inputs["onnx"])
        target = ctx.out / "model.onnx"
        large = source.stat().st_size > _EXTERNAL_DATA_BYTES
        samples = read_npz(Path(ctx.inputs["reference"]) / SAMPLES_FILE)
        with tempfile.TemporaryDirectory(prefix="navbuild-quant-") as tmp:
            prepared = pre_process(source, Path(tmp) / "prepared.onnx", large)
            excluded = _excluded_nodes(prepared, patterns, params.exclude)
            reader = SampleBatches(samples, graph_input_dtypes(prepared), params.max_samples,
                                   params.batch_size)
            print(f"static QDQ quantization: {params.calibration} calibration on {reader.rows} rows "
                  f"in {len(reader)} batch(es) of <= {params.batch_size}; activations "
                  f"{params.activation_type}, weights {params.weight_type}, per_channel "
                  f"{params.per_channel}, reduce_range {params.reduce_range}", flush=True)
            cache = None
            if params.calibration == "entropy":
                cache = _entropy_ranges(prepared, reader, list(params.op_types), Path(tmp), large)
            quantize_static(str(prepared), str(target), calibration_data_reader=reader,
                            calibration_cache_path=cache,
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(params.op_types) or None,
                            per_channel=params.per_channel, reduce_range=params.reduce_range,
                            activation_type=_quant_type(params.activation_type),
                            weight_type=_quant_type(params.weight_type), nodes_to_exclude=excluded,
                            use_external_data_format=large, calibrate_method=methods[params.calibration],
                            extra_options={
                                # ORT's defaults, spelled out so the artifact does not silently follow
                                # a default that changes: asymmetric activations use the full u8 range
                                # (post-GELU/Softmax tensors are one-sided), symmetric weights keep the
                                # int8 GEMM kernels' zero point at 0
                                "ActivationSymmetric": False,
                                "WeightSymmetric": True,
                                # as in dynamic mode: keep activation x activation MatMuls (attention)
                                # in float, their int8 error dominates a transformer's accuracy
                                "MatMulConstBOnly": True,
                            })
        return {"per_channel": params.per_channel, "reduce_range": params.reduce_range,
                "weight_type": params.weight_type, "excluded_nodes": len(excluded),
                "quantized_ops": _report_quantized(target), "size_bytes": _size(ctx.out),
                "calibration": params.calibration, "calibration_rows": reader.rows}


class SampleBatches:
    """A calibration data reader over the reference samples: batches of ``batch_size`` rows.

    At most ``max_samples`` rows (the first ones) are used; the last batch may be shorter.
    Feeds hold only the model's graph inputs, cast to their declared dtypes. ORT recognises a
    data reader by its ``get_next`` method, so no onnxruntime import is needed here.
    """

    def __init__(self, samples: Mapping[str, np.ndarray], inputs: Mapping[str, np.dtype],
                 max_samples: int, batch_size: int) -> None:
        missing = [n for n in inputs if n not in samples]
        if missing:
            raise ValueError(f"the reference samples have no input(s) {', '.join(missing)} that the model "
                             f"needs for calibration (they have {', '.join(samples) or 'none'})")
        count = min(int(samples[n].shape[0]) for n in inputs) if inputs else 0
        self.rows = min(count, max_samples)
        self._batch_size = batch_size
        self._samples = {n: samples[n] for n in inputs}
        self._dtypes = dict(inputs)
        self._starts = list(range(0, self.rows, batch_size))
        self._iter: Iterator[int] = iter(self._starts)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch of feeds, or None when calibration data is exhausted."""
        start = next(self._iter, None)
        if start is None:
            return None
        stop = min(start + self._batch_size, self.rows)
        return {n: np.ascontiguousarray(a[start:stop], dtype=self._dtypes[n]) for n, a in self._samples.items()}

    def rewind(self) -> None:
        self._iter = iter(self._starts)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Iterate batches ``start_index:end_index`` only (ORT's strided min-max calibration)."""
        self._iter = iter(self._starts[start_index:end_index])

    def __len__(self) -> int:
        return len(self._starts)


def _entropy_ranges(model: Path, reader: SampleBatches, op_types: list[str], tmp: Path,
                    large: bool) -> Path:
    """Entropy (KL) calibration with ``_ENTROPY_BINS`` histogram bins, saved as an ORT calibration cache.

    ``quantize_static`` has no option for the histogram size, and with its default of 128
    bins entropy calibration cannot clip anything; so the ranges are computed here and handed
    to ``quantize_static`` through its calibration cache file.
    """
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    # the op types quantize_static itself calibrates for when none are given
    calibrate = op_types or sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
    calibrator = create_calibrator(model, calibrate, augmented_model_path=str(tmp / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.Entropy, use_external_data_format=large,
                                   extra_options={"num_bins": _ENTROPY_BINS, "num_quantized_bins": 128})
    calibrator.collect_data(reader)
    ranges = calibrator.compute_data()
    reader.rewind()
    cache = tmp / "calibration.json"
    save_tensors_data(ranges, cache)
    print(f"entropy calibration: {_ENTROPY_BINS} histogram bins, ranges of {len(ranges.data)} tensors",
          flush=True)
    return cache


def graph_input_dtypes(path: Path) -> dict[str, np.dtype]:
    """Name -> numpy dtype of the model's real inputs (graph inputs that are not initializers)."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    return {i.name: np.dtype(tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
            for i in graph.input if i.name not in initializers}


def pre_process(source: Path, target: Path, large: bool) -> Path:
    """ORT's quantization pre-processing (symbolic + ONNX shape inference, basic optimization) to ``target``.

    Symbolic shape inference fails on some graphs (e.g. transformers exports whose mask logic
    mixes ``Min(512, seq)`` and ``seq``); then it is skipped and ONNX shape inference alone is used.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    kwargs: dict[str, Any] = dict(save_as_external_data=large, all_tensors_to_one_file=True,
                                  external_data_location=f"{target.name}.data")
    source, target = source.resolve(), target.resolve()
    try:
        # on failure ORT's symbolic shape inference dumps sym_shape_infer_temp.onnx and a
        # model-sized <uuid>.data into the working directory: let that land in our temp folder
        with _working_directory(target.parent):
            quant_pre_process(str(source), str(target), **kwargs)
        print("pre-processing: symbolic shape inference, ONNX shape inference, basic optimization",
              flush=True)
    except Exception as e:  # SymbolicShapeInference raises a bare Exception on incomplete inference
        print(f"pre-processing with symbolic shape inference failed ({first_line(e)}); retrying "
              "without it (ONNX shape inference and basic optimization only)", flush=True)
        quant_pre_process(str(source), str(target), skip_symbolic_shape=True, **kwargs)
    _name_unnamed_nodes(target, large)
    return target


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    """``os.chdir`` to ``path`` for the block (contextlib.chdir needs Python 3.11)."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _name_unnamed_nodes(path: Path, large: bool) -> None:
    """Give every unnamed node a stable name: the quantizer excludes nodes by name only."""
    import onnx

    proto = onnx.load(str(path))
    unnamed = [n for n in proto.graph.node if not n.name]
    if not unnamed:
        return
    taken = {n.name for n in proto.graph.node}
    for i, node in enumerate(proto.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
    onnx.save(proto, str(path), save_as_external_data=large, all_tensors_to_one_file=True,
              location=f"{path.name}.data")


def _excluded_nodes(path: Path, patterns: Sequence[re.Pattern[str]], raw: Sequence[str]) -> list[str]:
    """Names of the nodes whose name or op type matches one of ``patterns`` (re.search), in graph order.

    Matched against the pre-processed graph, which is what the quantizer sees. A pattern that
    matches nothing is most likely a typo; it is named in the log with examples of real names.
    """
    import onnx

    nodes = onnx.load(str(path), load_external_data=False).graph.node
    excluded: list[str] = []
    used: set[str] = set()
    for node in nodes:
        hits = [raw_p for raw_p, p in zip(raw, patterns) if p.search(node.name) or p.search(node.op_type)]
        if hits:
            excluded.append(node.name)
            used.update(hits)
    for pattern in raw:
        if pattern not in used:
            examples = ", ".join(n.name for n in list(nodes)[:3])
            print(f"warning: exclude pattern {pattern!r} matches no node name or op type "
                  f"(node names look like: {examples})", flush=True)
    if excluded:
        shown = ", ".join(excluded[:10]) + (f", ... ({len(excluded)} in all)" if len(excluded) > 10 else "")
        print(f"kept in float: {shown}", flush=True)
    return excluded


def _gemm_as_matmul(path: Path, op_types: list[str], excluded: list[str]) -> tuple[list[str], list[str]]:
    """Op types and node names to hand ``quantize_dynamic`` so that Gemm nodes obey ``exclude``/``op_types``.

    ORT's dynamic quantizer first rewrites every Gemm ``G`` into MatMul ``G_MatMul`` (+ Add
    ``G_Add``) and only then applies ``nodes_to_exclude`` and ``op_types_to_quantize``: excluding
    ``G`` by name or selecting op type "Gemm" would silently do nothing. So an excluded Gemm
    is excluded under its new names too, and "Gemm" selects MatMul with the original MatMuls
    excluded unless MatMul was selected as well.
    """
    import onnx

    nodes = onnx.load(str(path), load_external_data=False).graph.node
    gemms = {n.name for n in nodes if n.op_type == "Gemm"}
    ort_excluded = list(excluded)
    ort_excluded += [f"{n}{suffix}" for n in excluded if n in gemms for suffix in ("_MatMul", "_Add")]
    if "Gemm" in op_types and "MatMul" not in op_types:
        op_types = op_types + ["MatMul"]
        ort_excluded += [n.name for n in nodes if n.op_type == "MatMul" and n.name not in excluded]
    return op_types, ort_excluded


def _compile_patterns(patterns: Sequence[str]) -> list[re.Pattern[str]]:
    compiled = []
    for p in patterns:
        try:
            compiled.append(re.compile(p))
        except re.error as e:
            raise ValueError(f"exclude pattern {p!r} is not a valid regular expression: {e}") from e
    return compiled


def _check_choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{field} '{value}' is not one of {choices}")


def _quant_type(name: str) -> Any:
    from onnxruntime.quantization import QuantType

    return {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}[name]


def quantized_op_counts(path: Path) -> dict[str, int]:
    """Count per op type of the quantization ops in a model (QDQ pairs, integer kernels, QLinear ops)."""
    import onnx

    nodes = onnx.load(str(path), load_external_data=False).graph.node
    return dict(sorted(Counter(n.op_type for n in nodes if _is_quantized_op(n.op_type)).items()))


def _is_quantized_op(op: str) -> bool:
    # QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, DynamicQuantizeMatMul,
    # MatMulInteger, ConvInteger, MatMulIntegerToFloat, QLinearMatMul, QLinearConv, ...
    return ("quantize" in op.lower() or "Integer" in op or op.startswith("QLinear")
            or op in _QUANTIZED_OPS)


def _report_quantized(path: Path) -> dict[str, int]:
    """The quantization ops in the output; none is a failed conversion, not an "int8" fp32 model."""
    import onnx

    counts = quantized_op_counts(path)
    if not counts:
        ops = Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)
        shown = ", ".join(f"{n} x{c}" for n, c in ops.most_common(6)) or "none"
        raise RuntimeError("ONNX Runtime quantized nothing in this model (no QuantizeLinear, DequantizeLinear, "
                           "QLinear*, MatMulInteger or DynamicQuantizeLinear node), so the int8 variant would be "
                           f"the fp32 model under another name (the model's ops: {shown}); int8 needs MatMul/Gemm/"
                           "Conv ops that quantization.*.op_types selects and exclude does not, else leave "
                           "int8 out for this model")
    print(f"quantized ops: {counts}", flush=True)
    return counts


def _size(folder: Path) -> int:
    """Bytes of everything the step wrote (the model and any external data file)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


__all__ = ["OrtQuantizedDynamic", "OrtQuantizedStatic", "DynamicQuantConfig", "StaticQuantConfig", "OrtQuantizedDynamicParams",
           "OrtQuantizedStaticParams", "SampleBatches", "graph_input_dtypes", "pre_process", "quantized_op_counts",
           "WEIGHT_TYPES", "ACTIVATION_TYPES", "CALIBRATIONS"]
