"""The ONNX Runtime family: the ONNX export (or ONNX source), its optimized, fp16 and int8 forms, its session modes."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from navbuild.formats.base import (REFERENCE, SOURCE, AccuracySearch, BackendOption, Conversion, FormatFamily, PlanContext, Planned,
                                   Runner, TritonBackend, TritonServing, Variant, no_runtime_modes, options, register)
from navbuild.formats.common import tensor_specs, torch_factory

#: ONNX Runtime backend: recipe graph level -> ``optimization.graph.level``. The backend reads
#: -1 as ORT_ENABLE_BASIC, 1 as ORT_ENABLE_EXTENDED, 2 as ORT_DISABLE_ALL and anything else
#: (0, or no optimization block) as ORT_ENABLE_ALL (onnxruntime_backend src/onnxruntime.cc,
#: ModelState constructor; its README says the same). None: write no block, the default.
ORT_GRAPH_LEVELS: dict[str, int | None] = {"disable": 2, "basic": -1, "extended": 1, "all": None}

#: Triton's ONNX Runtime backend; its options as onnxruntime_backend src/onnxruntime.cc spells them.
#: On a CPU-only machine it gives a model with no instance_group 2 instances.
ORT_BACKEND = TritonBackend("onnxruntime_onnx", "onnxruntime", "onnxruntime_onnx", ("model.onnx",), options(
    BackendOption("intra_op_thread_count", "count", runtime="intra_op_threads"),
    BackendOption("inter_op_thread_count", "count", runtime="inter_op_threads"),
    BackendOption("execution_mode", "choice", ("0", "1")),  # 0 sequential, 1 parallel
    BackendOption("enable_mem_arena", "bool"),
    BackendOption("enable_mem_pattern", "bool"),
    BackendOption("graph_level", "choice", tuple(ORT_GRAPH_LEVELS), lands="graph_level", runtime="graph_level"),
    # the CUDA execution provider's options, read on KIND_GPU instances (the README's "deprecated
    # parameters", still read): 0 EXHAUSTIVE, 1 HEURISTIC, 2 DEFAULT; a byte cap; 0 kNextPowerOfTwo,
    # 1 kSameAsRequested; 1 copies on the compute stream
    BackendOption("cudnn_conv_algo_search", "choice", ("0", "1", "2")),
    BackendOption("gpu_mem_limit", "count"),
    BackendOption("arena_extend_strategy", "choice", ("0", "1")),
    BackendOption("do_copy_in_default_stream", "choice", ("0", "1")),
), default_cpu_instances=2, gpu_accelerators={
    # optimization.execution_accelerators.gpu_execution_accelerator "tensorrt": the TensorRT execution
    # provider (a backend built with it, as NGC's is); parameters as the backend's README maps them
    "tensorrt": options(BackendOption("precision_mode", "choice", ("FP32", "FP16", "INT8")),
                        BackendOption("max_workspace_size_bytes", "count"),
                        BackendOption("trt_engine_cache_enable", "bool"),
                        BackendOption("trt_engine_cache_path", "text"),
                        BackendOption("trt_max_partition_iterations", "count"),
                        BackendOption("trt_min_subgraph_size", "count")),
})

ONNX = "onnx"
SANITIZED = "onnx-sanitized"


def onnx_input(ctx: PlanContext) -> str:
    """The ONNX model conversions read: the onnx model, or its normalised copy where the ONNX
    source lists weights as graph inputs (ORT's optimizer, the quantizers and OpenVINO's
    converter then keep them as overridable inputs). The onnx variant runs the file as given."""
    facts = ctx.onnx_facts
    return SANITIZED if facts is not None and facts.needs_sanitizing else ONNX


def _export(ctx: PlanContext) -> Planned:
    r = ctx.recipe
    return Planned("OnnxFromTorch", {"source": SOURCE},
                   dict(factory=torch_factory(r), inputs=tensor_specs(r), outputs=tuple(r.outputs),
                        axes=dict(r.samples.axes), seed=r.samples.seed), section=r.onnx)


def _sanitized(ctx: PlanContext) -> Planned:
    facts = ctx.onnx_facts
    note = (f"source.onnx: {Path(ctx.recipe.source.onnx).name} lists {facts.weights_as_inputs} "
            f"weight(s) as graph inputs (IR version {facts.ir_version}): conversions read "
            f"its normalised copy, target {SANITIZED}") if facts is not None else ""
    return Planned("OnnxSanitizedFromOnnx", {"onnx": ONNX}, {}, note=note)


def _optimized(ctx: PlanContext) -> Planned:
    return Planned("OrtOptimizedFromOnnx", {"onnx": onnx_input(ctx)}, {}, section=ctx.recipe.onnx_opt)


def _fp16(ctx: PlanContext) -> Planned:
    return Planned("OnnxFp16FromOnnx", {"onnx": onnx_input(ctx)}, dict(op_block_list=()), section=ctx.recipe.fp16)


def _int8_dynamic(ctx: PlanContext) -> Planned:
    return Planned("OrtQuantizedDynamic", {"onnx": onnx_input(ctx)}, {}, section=ctx.recipe.quantization.dynamic)


def _int8_static(ctx: PlanContext) -> Planned:
    return Planned("OrtQuantizedStatic", {"onnx": onnx_input(ctx), "reference": REFERENCE}, {},
                   section=ctx.recipe.quantization.static)


def _keep_in_fp32(params: Any, names: tuple[str, ...]) -> Any:
    """Static quantization Params that also keep ``names`` in float: each as an anchored, escaped
    ``exclude`` pattern, after the recipe's own (no names: the very Params of onnx-int8-static)."""
    return dataclasses.replace(params, exclude=tuple(params.exclude) + tuple(f"^{re.escape(n)}$" for n in names))


def _int8_accuracy_aware(ctx: PlanContext) -> Planned:
    """onnx-int8-static's conversion, with the fewest of the layers its drift ranks first kept in fp32 that
    the int8 budget needs (the search: navbuild.planning.accuracy_search)."""
    q = ctx.recipe.quantization
    return Planned("OrtQuantizedStatic", {"onnx": onnx_input(ctx), "reference": REFERENCE}, {}, section=q.static,
                   search=AccuracySearch(ranked_by="onnx-int8-static", precision="int8", keep=_keep_in_fp32,
                                         max_trials=q.accuracy_aware.max_trials,
                                         quantizes=lambda params: tuple(params.op_types)))


def _graph_level(variant: Variant) -> dict[str, str]:
    return {"graph_level": variant.graph_level} if variant.graph_level else {}


def _refuses(variant: Variant) -> str:
    if variant.mode == "openvino-ep":
        return (f"{variant.name} runs ONNX Runtime's OpenVINO execution provider, which navbuild does not deploy; "
                "deploy the openvino variant (Triton's openvino backend) instead")
    return no_runtime_modes(variant)


_STEPS = "navbuild.steps."

FAMILY = register(FormatFamily(
    name="onnxruntime",
    formats=("onnx", "onnx-opt", "onnx-levels", "onnx-openvino", "onnx-sanitized"),
    variants=(
        Variant("onnx", "onnx", "fp32", 3, "onnx", model=ONNX),
        Variant("onnx-opt", "onnx-opt", "fp32", 4, "onnx", model="onnx-opt"),
        # the onnx model with ONNX Runtime's session at each other graph optimization level
        Variant("onnx-disable", "onnx-levels", "fp32", 5, "onnx", model=ONNX, graph_level="disable"),
        Variant("onnx-basic", "onnx-levels", "fp32", 6, "onnx", model=ONNX, graph_level="basic"),
        Variant("onnx-extended", "onnx-levels", "fp32", 7, "onnx", model=ONNX, graph_level="extended"),
        # the onnx model in ONNX Runtime with OpenVINO's execution provider (the onnxruntime-openvino
        # wheel); ORT's own graph passes are off so OpenVINO receives the graph as exported
        Variant("onnx-openvino-ep", "onnx-openvino", "fp32", 9, "onnx", model=ONNX, mode="openvino-ep",
                graph_level="disable"),
        Variant("onnx-fp16", "onnx", "fp16", 15, "onnx", model="onnx-fp16", drift_from="onnx",
                note="fp16 is kept for GPU targets; on CPU it is usually slower than fp32"),
        Variant("onnx-int8-dynamic", "onnx", "int8", 17, "onnx", model="onnx-int8-dynamic", drift_from="onnx"),
        Variant("onnx-int8-static", "onnx", "int8", 18, "onnx", model="onnx-int8-static", drift_from="onnx"),
        # its model is found by a search once the plan has run (no target until then: no drift of its own)
        # the onnx model after Polygraphy's sanitizer (constants folded, shapes inferred), in ONNX Runtime
        Variant("onnx-sanitized", "onnx-sanitized", "fp32", 23, "onnx", model=SANITIZED,
                note="Polygraphy's sanitizer: constants folded, shapes inferred, weights out of the graph inputs"),
        Variant("onnx-int8-aa", "onnx", "int8", 19, "onnx", model="onnx-int8-aa", drift_from="onnx",
                note="accuracy-aware: the layers that drift most kept in fp32, the fewest that meet the budget"),
        # ONNX Runtime's CUDA execution provider (the onnxruntime-gpu wheel), on the recipe's GPU
        Variant("onnx-cuda", "onnx", "fp32", 34, "onnx-cuda", model=ONNX, device="cuda"),
        Variant("onnx-cuda-fp16", "onnx", "fp16", 39, "onnx-cuda", model="onnx-fp16", device="cuda"),
    ),
    runners=(
        Runner("onnx", "navbuild.runners.ort_runner:make", ("onnxruntime",),
               mode_requires={"openvino-ep": ("onnxruntime", "onnxruntime-openvino")}, session_options=True,
               triton=TritonServing(ORT_BACKEND, parameters=_graph_level, refuses=_refuses)),
        # the CUDA execution provider comes in the onnxruntime-gpu wheel (import name onnxruntime)
        Runner("onnx-cuda", "navbuild.runners.ort_cuda_runner:make", ("onnxruntime-gpu",), session_options=True,
               triton=TritonServing(ORT_BACKEND, parameters=_graph_level, refuses=_refuses)),  # on KIND_GPU
    ),
    drift={"onnx": _STEPS + "drift_onnx:OnnxDrift"},
    conversions=(
        Conversion(ONNX, 0, {"OnnxFromTorch": _STEPS + "onnx_from_torch:OnnxFromTorch"}, _export,
                   from_source=lambda recipe: bool(recipe.source.onnx)),
        Conversion(SANITIZED, 1, {"OnnxSanitizedFromOnnx": _STEPS + "onnx_sanitized:OnnxSanitizedFromOnnx"},
                   _sanitized),
        Conversion("onnx-opt", 4, {"OrtOptimizedFromOnnx": _STEPS + "ort_optimized:OrtOptimizedFromOnnx"}, _optimized),
        Conversion("onnx-fp16", 5, {"OnnxFp16FromOnnx": _STEPS + "onnx_fp16:OnnxFp16FromOnnx"}, _fp16),
        Conversion("onnx-int8-dynamic", 6, {"OrtQuantizedDynamic": _STEPS + "ort_quantized:OrtQuantizedDynamic"},
                   _int8_dynamic),
        Conversion("onnx-int8-static", 7, {"OrtQuantizedStatic": _STEPS + "ort_quantized:OrtQuantizedStatic"},
                   _int8_static),
        Conversion("onnx-int8-aa", 12, {"OrtQuantizedStatic": _STEPS + "ort_quantized:OrtQuantizedStatic",
                                       "MeasureAccuracy": _STEPS + "accuracy:MeasureAccuracy"},
                   _int8_accuracy_aware),
    ),
))
