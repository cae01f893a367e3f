"""The torch family: the source in eager torch and its runtime modes, TorchScript, torch.export, torch.compile,
on the CPU and on a CUDA GPU (eager fp32/fp16/bf16, torch.compile, an AOTInductor package, Torch-TensorRT)."""

from __future__ import annotations

from typing import Callable

from navbuild.formats.base import (SOURCE, BackendOption, Conversion, FormatFamily, PlanContext, Planned, Runner,
                                   TritonBackend, TritonServing, Variant, options, register)
from navbuild.formats.common import tensor_specs, traced_export
from navbuild.formats.tensorrt_profiles import derive_profiles, recipe_sizes

#: Triton's libtorch backend serves TorchScript files; its options as pytorch_backend src/libtorch.cc spells them
LIBTORCH = TritonBackend("pytorch_libtorch", "", "pytorch_libtorch", ("model.pt",), options(
    BackendOption("INTRA_OP_THREAD_COUNT", "count", runtime="intra_op_threads"),
    BackendOption("INTER_OP_THREAD_COUNT", "count", runtime="inter_op_threads"),
    BackendOption("DISABLE_OPTIMIZED_EXECUTION", "bool"),
    BackendOption("INFERENCE_MODE", "bool"),
    BackendOption("ENABLE_JIT_EXECUTOR", "bool"),
    BackendOption("ENABLE_JIT_PROFILING", "bool"),
    BackendOption("ENABLE_TENSOR_FUSER", "bool"),
    BackendOption("ENABLE_WEIGHT_SHARING", "bool"),
    BackendOption("ENABLE_CACHE_CLEANING", "bool"),
    BackendOption("ENABLE_DETERMINISTIC_ALGORITHMS", "bool"),
    BackendOption("DISABLE_CUDNN", "bool"),
))

_NO_COMPILE = "torch.compile cannot compile a TorchScript module"


def _torchscript(ctx: PlanContext) -> Planned:
    r = ctx.recipe
    return Planned("TorchScriptFromTorch", {"source": SOURCE}, traced_export(r), section=r.torchscript)


def _torch_export(ctx: PlanContext) -> Planned:
    r = ctx.recipe
    return Planned("ExportedProgramFromTorch", {"source": SOURCE},
                   dict(traced_export(r), packages=tuple(r.source.packages)))


def _aoti(device: str) -> Callable[[PlanContext], Planned]:
    def plan(ctx: PlanContext) -> Planned:
        return Planned("AotiFromTorch", {"source": SOURCE},
                       dict(traced_export(ctx.recipe), device=device, packages=tuple(ctx.recipe.source.packages)))
    return plan


def _torch_tensorrt(precision: str) -> Callable[[PlanContext], Planned]:
    """Torch-TensorRT at ``precision``: one min/opt/max shape per input, derived from the recipe's sizes
    as the TensorRT engines' single profile is (navbuild.formats.tensorrt_profiles)."""
    def plan(ctx: PlanContext) -> Planned:
        r = ctx.recipe
        (profile,) = derive_profiles(tensor_specs(r), recipe_sizes(r), "single")
        return Planned("TorchTensorRtFromTorch", {"source": SOURCE},
                       dict(traced_export(r), precision=precision, shapes=profile.inputs,
                            packages=tuple(r.source.packages)))
    return plan


_AOTI_STEPS = {"AotiFromTorch": "navbuild.steps.aoti_from_torch:AotiFromTorch"}
_NO_EXPORT = "torch.export cannot export a TorchScript module"

FAMILY = register(FormatFamily(
    name="torch",
    formats=("torch", "torchscript", "torch-export", "torch-compile", "torch-aoti", "torch-tensorrt"),
    torch_source=True,
    variants=(
        Variant("torch", "torch", "fp32", 0, "torch"),
        Variant("torchscript", "torchscript", "fp32", 1, "torchscript", model="torchscript"),
        Variant("torch-export", "torch-export", "fp32", 2, "torch-export", model="torch-export"),
        Variant("torch-compile", "torch-compile", "fp32", 10, "torch", mode="compile"),
        Variant("torch-bf16-autocast", "torch", "bf16", 11, "torch", mode="autocast-bf16"),
        Variant("torch-bf16", "torch", "bf16", 12, "torch", mode="cast-bf16"),
        Variant("torch-compile-bf16", "torch-compile", "bf16", 13, "torch", mode="compile-bf16"),
        Variant("torch-aoti", "torch-aoti", "fp32", 14, "torch-aoti", model="torch-aoti", device="cpu"),
        Variant("torch-int8-dynamic", "torch", "int8", 16, "torch", mode="dynamic-int8"),
        # on a CUDA GPU (the recipe's device picks them): after every CPU variant, fp32 before reduced precisions
        Variant("torch-cuda", "torch", "fp32", 30, "torch-cuda", device="cuda"),
        Variant("torch-cuda-compile", "torch-compile", "fp32", 31, "torch-cuda", mode="compile", device="cuda"),
        Variant("torch-cuda-compile-cudagraphs", "torch-compile", "fp32", 32, "torch-cuda", mode="compile-cudagraphs",
                device="cuda", note="torch.compile (inductor) replaying CUDA graphs: fewer kernel launches"),
        Variant("torch-aoti-cuda", "torch-aoti", "fp32", 33, "torch-aoti", model="torch-aoti-cuda", device="cuda",
                note="an AOTInductor package (.pt2) compiled for this GPU; loads without the model's Python code"),
        Variant("torch-cuda-bf16-autocast", "torch", "bf16", 35, "torch-cuda", mode="autocast-bf16", device="cuda"),
        Variant("torch-cuda-bf16", "torch", "bf16", 36, "torch-cuda", mode="cast-bf16", device="cuda"),
        Variant("torch-cuda-fp16-autocast", "torch", "fp16", 37, "torch-cuda", mode="autocast-fp16", device="cuda"),
        Variant("torch-cuda-fp16", "torch", "fp16", 38, "torch-cuda", mode="cast-fp16", device="cuda"),
        # Torch-TensorRT (dynamo path): TensorRT engines inside an ExportedProgram, bound to this GPU
        Variant("torch-tensorrt-fp16", "torch-tensorrt", "fp16", 45, "torch-tensorrt", model="torch-tensorrt-fp16",
                device="cuda", note="Torch-TensorRT: torch.export, then TensorRT engines for the graph (fp16 allowed)"),
    ),
    runners=(
        Runner("torch", "navbuild.runners.torch_runner:make", ("torch",)),
        Runner("torchscript", "navbuild.runners.torchscript_runner:make", ("torch",),
               triton=TritonServing(LIBTORCH)),
        Runner("torch-export", "navbuild.runners.torch_export_runner:make", ("torch",)),
        Runner("torch-aoti", "navbuild.runners.aoti_runner:make", ("torch",)),
        Runner("torch-cuda", "navbuild.runners.torch_cuda_runner:make", ("torch",)),
        Runner("torch-tensorrt", "navbuild.runners.torch_tensorrt_runner:make", ("torch", "torch_tensorrt")),
    ),
    conversions=(
        Conversion("torchscript", 2, {"TorchScriptFromTorch": "navbuild.steps.torchscript_from_torch:TorchScriptFromTorch"},
                   _torchscript),
        Conversion("torch-export", 3,
                   {"ExportedProgramFromTorch": "navbuild.steps.exported_program_from_torch:ExportedProgramFromTorch"},
                   _torch_export),
        Conversion("torch-aoti", 13, _AOTI_STEPS, _aoti("cpu")),
        Conversion("torch-aoti-cuda", 14, _AOTI_STEPS, _aoti("cuda"), device="cuda"),
        Conversion("torch-tensorrt-fp16", 15,
                   {"TorchTensorRtFromTorch": "navbuild.steps.torch_tensorrt_from_torch:TorchTensorRtFromTorch"},
                   _torch_tensorrt("fp16"), device="cuda"),
    ),
    drift={"torch": "navbuild.steps.drift_torch:TorchDrift"},
    not_on_serialized={
        "torchscript": {
            "torch-compile": _NO_COMPILE,
            "torch-compile-bf16": _NO_COMPILE,
            "torch-int8-dynamic": "dynamic int8 quantizes nn.Linear modules, which a TorchScript module does not expose",
            "torch-export": _NO_EXPORT,
            "torch-aoti": _NO_EXPORT,
            "torch-cuda-compile": _NO_COMPILE,
            "torch-cuda-compile-cudagraphs": _NO_COMPILE,
            "torch-aoti-cuda": _NO_EXPORT,
            "torch-tensorrt-fp16": _NO_EXPORT,
        },
        "exported-program": {
            "torch-int8-dynamic": "dynamic int8 quantizes nn.Linear modules, which an exported program does not have",
        },
    },
))
