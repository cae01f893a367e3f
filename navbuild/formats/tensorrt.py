"""The TensorRT family: engines built from the sanitized ONNX model through Polygraphy, at fp32, fp16, bf16, int8 and fp8, served by Triton's tensorrt_plan backend."""

from __future__ import annotations

from typing import Callable

from navbuild.formats.base import (REFERENCE, Conversion, FormatFamily, PlanContext, Planned, Runner, TritonBackend,
                                   TritonServing, Variant, register)
from navbuild.formats.common import tensor_specs
from navbuild.formats.onnxruntime import SANITIZED
from navbuild.formats.tensorrt_profiles import derive_profiles, recipe_sizes

#: Triton's TensorRT backend: a serialized engine, on GPU instances only; it reads no string parameters
TENSORRT_PLAN = TritonBackend("tensorrt_plan", "", "tensorrt_plan", ("model.plan",), kinds=("KIND_GPU",),
                              engine_fields=True)

#: engine precision -> its conversion (the model name, the target id)
ENGINES: dict[str, str] = {p: "tensorrt" if p == "fp32" else f"tensorrt-{p}" for p in
                           ("fp32", "fp16", "bf16", "int8", "fp8")}
_STEP = {"TensorRtFromOnnx": "navbuild.steps.tensorrt_from_onnx:TensorRtFromOnnx"}


def _engine(precision: str) -> Callable[[PlanContext], Planned]:
    """The plan of one engine: always from the sanitized ONNX model (shapes inferred, constants folded,
    weights never graph inputs); int8 also reads the reference's samples to calibrate on."""
    def plan(ctx: PlanContext) -> Planned:
        r = ctx.recipe
        inputs = {"onnx": SANITIZED, **({"reference": REFERENCE} if precision == "int8" else {})}
        profiles = derive_profiles(tensor_specs(r), recipe_sizes(r), r.tensorrt.profiles)
        return Planned("TensorRtFromOnnx", inputs, dict(precision=precision, profiles=profiles), section=r.tensorrt)
    return plan


FAMILY = register(FormatFamily(
    name="tensorrt",
    formats=("tensorrt",),
    variants=(
        # after every other variant: an engine is the least simple form (bound to one GPU and TensorRT version)
        Variant("tensorrt", "tensorrt", "fp32", 40, "tensorrt", model=ENGINES["fp32"], device="cuda"),
        Variant("tensorrt-fp16", "tensorrt", "fp16", 41, "tensorrt", model=ENGINES["fp16"], device="cuda"),
        Variant("tensorrt-bf16", "tensorrt", "bf16", 42, "tensorrt", model=ENGINES["bf16"], device="cuda"),
        Variant("tensorrt-int8", "tensorrt", "int8", 43, "tensorrt", model=ENGINES["int8"], device="cuda",
                note="int8 calibrated by TensorRT's entropy calibrator on the recipe's samples"),
        Variant("tensorrt-fp8", "tensorrt", "fp8", 44, "tensorrt", model=ENGINES["fp8"], device="cuda",
                note="fp8 needs compute capability 8.9+; layers run in fp8 only where the ONNX model has Q/DQ "
                     "nodes, the rest in fp16"),
    ),
    runners=(
        # torch: bind() keeps the inputs on the GPU as torch tensors and times with CUDA events
        Runner("tensorrt", "navbuild.runners.trt_runner:make", ("tensorrt", "polygraphy", "torch"),
               triton=TritonServing(TENSORRT_PLAN)),
    ),
    conversions=tuple(Conversion(model, 20 + i, _STEP, _engine(precision), device="cuda")
                      for i, (precision, model) in enumerate(ENGINES.items())),
))

__all__ = ["FAMILY", "TENSORRT_PLAN", "ENGINES"]
