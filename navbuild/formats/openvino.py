"""The OpenVINO family: the IR converted from the ONNX model or the torch source, its int8 forms, its bf16 hint."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from navbuild.formats.base import (REFERENCE, SOURCE, AccuracySearch, BackendOption, Conversion, FormatFamily,
                                   PlanContext, Planned, Runner, TritonBackend, TritonServing, Variant, options,
                                   register)
from navbuild.formats.common import tensor_specs, torch_factory
from navbuild.formats.onnxruntime import onnx_input

_YES_NO = ("YES", "NO")

#: Triton's OpenVINO backend; its options as openvino_backend src/openvino.cc spells them
OPENVINO_BACKEND = TritonBackend("openvino", "openvino", "", ("model.xml", "model.bin"), options(
    BackendOption("INFERENCE_NUM_THREADS", "count", runtime="intra_op_threads"),
    BackendOption("COMPILATION_NUM_THREADS", "count"),
    BackendOption("NUM_STREAMS", "count", ("AUTO", "NUMA")),
    BackendOption("PERFORMANCE_HINT", "choice", ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")),
    # the backend accepts only YES (anything else is an error)
    BackendOption("HINT_BF16", "choice", ("YES",), runtime="mode", runtime_values=(("YES", "bf16"),)),
    # the backend's own flags: "yes" (any case) turns them on, anything else leaves them off
    BackendOption("SKIP_OV_DYNAMIC_BATCHSIZE", "choice", _YES_NO),
    BackendOption("ENABLE_BATCH_PADDING", "choice", _YES_NO),
    BackendOption("RESHAPE_IO_LAYERS", "choice", _YES_NO),
    BackendOption("CPU_EXTENSION_PATH", "text"),
), kinds=("KIND_CPU",), no_gpu="Triton's OpenVINO backend runs on the CPU (an NVIDIA GPU is no OpenVINO device)")

OPENVINO = "openvino"
#: the layers whose inputs NNCF quantizes (the others follow them in int8 or stay float): the ones
#: openvino-int8-aa's search may keep in float, and whose own int8 error the drift measures
QUANTIZED_LAYERS: tuple[str, ...] = ("MatMul", "Convolution", "GroupConvolution")


def nncf_preset(preset: str, model_type: str | None) -> str:
    """The NNCF preset a recipe's ``preset`` means; "auto" resolves as NNCF itself would, so the
    step's params (and its key) name the preset that actually ran."""
    if preset != "auto":
        return preset
    return "mixed" if model_type == "transformer" else "performance"


def _convert(ctx: PlanContext) -> Planned:
    r = ctx.recipe
    if r.openvino.source == "torch":
        return Planned("OpenVinoFromTorch", {"source": SOURCE},
                       dict(factory=torch_factory(r), inputs=tensor_specs(r), outputs=tuple(r.outputs),
                            axes=dict(r.samples.axes), seed=r.samples.seed))
    return Planned("OpenVinoFromOnnx", {"onnx": onnx_input(ctx)}, dict(compress_to_fp16=False))


def _quantized(ctx: PlanContext) -> Planned:
    q = ctx.recipe.openvino.quantization
    return Planned("OpenVinoQuantized", {"openvino": OPENVINO, "reference": REFERENCE},
                   dict(preset=nncf_preset(q.preset, q.model_type)), section=q)


def _keep_in_float(params: Any, names: tuple[str, ...]) -> Any:
    """openvino-int8's Params that also keep ``names`` in float: each as an anchored, escaped
    ``ignored_patterns`` entry (nncf.IgnoredScope), after the recipe's own (no names: openvino-int8's very Params)."""
    return dataclasses.replace(params, ignored_patterns=tuple(params.ignored_patterns)
                               + tuple(f"^{re.escape(n)}$" for n in names))


def _quantized_accuracy_aware(ctx: PlanContext) -> Planned:
    """openvino-int8's quantization, with the fewest of the layers its drift ranks first (each quantized
    layer's own error) kept in float that the int8 budget needs (the search: navbuild.planning.accuracy_search).

    Not NNCF's ``quantize_with_accuracy_control``: on MiniLM (model_type transformer, whose SmoothQuant
    scales the reverted layers' inputs) each group it reverted made the model worse, from a pooled cosine
    drop of 0.0029 to 0.90 over 60 iterations, measured with NNCF 3.4.0 and a 0.999 budget."""
    q = ctx.recipe.openvino.quantization
    return Planned("OpenVinoQuantized", {"openvino": OPENVINO, "reference": REFERENCE},
                   dict(preset=nncf_preset(q.preset, q.model_type)), section=q,
                   search=AccuracySearch(ranked_by="openvino-int8", precision="int8", keep=_keep_in_float,
                                         max_trials=ctx.recipe.quantization.accuracy_aware.max_trials,
                                         quantizes=lambda params: QUANTIZED_LAYERS))


def _weight_compressed(ctx: PlanContext) -> Planned:
    return Planned("OpenVinoWeightCompressed", {"openvino": OPENVINO}, {}, section=ctx.recipe.openvino)


def _bf16_hint(variant: Variant) -> dict[str, str]:
    return {"HINT_BF16": "YES"} if variant.mode == "bf16" else {}


_STEPS = "navbuild.steps."

FAMILY = register(FormatFamily(
    name="openvino",
    formats=("openvino",),
    variants=(
        Variant("openvino", "openvino", "fp32", 8, "openvino", model=OPENVINO),
        Variant("openvino-bf16", "openvino", "bf16", 14, "openvino", model=OPENVINO, mode="bf16"),
        Variant("openvino-int8-wo", "openvino", "int8", 20, "openvino", model="openvino-int8-wo",
                drift_from="openvino"),
        Variant("openvino-int8", "openvino", "int8", 21, "openvino", model="openvino-int8", drift_from="openvino"),
        Variant("openvino-int8-aa", "openvino", "int8", 22, "openvino", model="openvino-int8-aa",
                drift_from="openvino",
                note="accuracy-aware: the layers whose own int8 error is largest kept in float, the fewest "
                     "that meet the budget"),
        # the same search with the layers kept in float run in bf16 (the CPU plugin's bf16 precision hint,
        # native bf16 only): its trials are openvino-int8-aa's conversions (the same keys), each measured
        # with the hint, so it may keep other layers; it must meet the same int8 budget
        Variant("openvino-int8-aa-bf16", "openvino", "int8", 24, "openvino", model="openvino-int8-aa-bf16",
                mode="bf16", drift_from="openvino",
                note="accuracy-aware int8 whose float layers run in bf16 (bf16 precision hint; native bf16 CPUs)"),
    ),
    runners=(
        Runner("openvino", "navbuild.runners.openvino_runner:make", ("openvino",),
               triton=TritonServing(OPENVINO_BACKEND, parameters=_bf16_hint, refuses=lambda v: "")),
    ),
    drift={"openvino": _STEPS + "drift_openvino:OpenVinoDrift"},
    conversions=(
        Conversion(OPENVINO, 8, {"OpenVinoFromOnnx": _STEPS + "openvino_convert:OpenVinoFromOnnx",
                                 "OpenVinoFromTorch": _STEPS + "openvino_from_torch:OpenVinoFromTorch"}, _convert),
        Conversion("openvino-int8", 9, {"OpenVinoQuantized": _STEPS + "openvino_quantized:OpenVinoQuantized"},
                   _quantized),
        Conversion("openvino-int8-aa", 11, {"OpenVinoQuantized": _STEPS + "openvino_quantized:OpenVinoQuantized",
                                            "MeasureAccuracy": _STEPS + "accuracy:MeasureAccuracy"},
                   _quantized_accuracy_aware),
        Conversion("openvino-int8-aa-bf16", 12, {"OpenVinoQuantized": _STEPS + "openvino_quantized:OpenVinoQuantized",
                                                 "MeasureAccuracy": _STEPS + "accuracy:MeasureAccuracy"},
                   _quantized_accuracy_aware),
        Conversion("openvino-int8-wo", 10,
                   {"OpenVinoWeightCompressed": _STEPS + "openvino_quantized:OpenVinoWeightCompressed"},
                   _weight_compressed),
    ),
))
