"""TensorRtFromOnnx: a TensorRT engine (``model.plan``) built from the sanitized ONNX model through Polygraphy's loaders, on the GPU it will run on."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

from navbuild.cache.keys import canonical_json
from navbuild.device import UNKNOWN, VISIBLE_ENV, gpu_fingerprint
from navbuild.formats.tensorrt_profiles import PROFILE_MODES, EngineProfile, describe
from navbuild.model_io import model_file
from navbuild.runners.trt_runner import PLAN_FILE, write_engine_facts
from navbuild.samples import read_npz
from navbuild.settings import params_of, setting
from navbuild.steps.base import Step, StepContext
from navbuild.steps.reference import SAMPLES_FILE
from navbuild.steps.tensorrt_loaders import (CALIBRATION_CACHE, CALIBRATION_INPUTS, PRECISION_FLAGS,
                                             save_calibration_inputs, calibration_data,
                                             engine_chain, make_calibrator, script_lines)

#: where the child process finds the store's folder of timing caches (set by navbuild.execute.isolation)
TIMING_CACHE_ENV = "NAVBUILD_TIMING_CACHE_DIR"
#: the first compute capability with FP8 tensor cores (Ada, Hopper)
FP8_MIN_COMPUTE_CAPABILITY = (8, 9)


@dataclass
class TensorRtConfig:
    """The recipe's ``tensorrt``: TensorRT builder settings of every engine (tensorrt, tensorrt-fp16, ...)."""

    workspace_mb: int = setting(4096, minimum=1, doc="the builder's workspace (scratch GPU memory for tactics), MiB")
    builder_optimization_level: int = setting(3, minimum=0, maximum=5,
                                              doc="TensorRT's builder optimization level: higher searches longer "
                                                  "for faster kernels (3 is TensorRT's default)")
    sparsity: bool = setting(False, doc="let TensorRT use 2:4 structured-sparse kernels where the weights are sparse")
    timing_cache: bool = setting(True, doc="load and save the store's timing cache of this GPU (one per GPU, shared "
                                           "by every engine; it only speeds the tactic search)")
    profiles: str = setting("single", choices=PROFILE_MODES,
                            doc="optimization profiles: single (one over every size run) or per_batch_size (a "
                                "shape bucket per profiled batch size, each tuned for it)")
    calibration_rows: int = setting(512, minimum=1, doc="int8: sample rows the calibrator reads (at most the "
                                                         "samples' count)")


@dataclass(frozen=True)
class _EngineShape:
    """What the plan derives for each engine: its precision and optimization profiles."""

    precision: str
    profiles: tuple[EngineProfile, ...]


#: the profiles mode is in the Params through the profiles themselves
TensorRtParams = params_of(TensorRtConfig, "TensorRtParams", __name__, bases=(_EngineShape,),
                           only=("workspace_mb", "builder_optimization_level", "sparsity", "timing_cache",
                                 "calibration_rows"))


def compute_capability(gpu: Mapping[str, Any]) -> tuple[int, int] | None:
    """A GPU fingerprint's compute capability as (major, minor); None when it is not known."""
    text = str(gpu.get("compute_capability", UNKNOWN))
    major, _, minor = text.partition(".")
    return (int(major), int(minor or 0)) if major.isdigit() and (minor or "0").isdigit() else None


def fp8_refusal(gpu: Mapping[str, Any]) -> str:
    """Why an fp8 engine cannot be built on this GPU ("" when it can, or when its capability is not known:
    the build then says what TensorRT says)."""
    cc = compute_capability(gpu)
    if cc is not None and cc < FP8_MIN_COMPUTE_CAPABILITY:
        return (f"fp8 needs compute capability {'.'.join(map(str, FP8_MIN_COMPUTE_CAPABILITY))} or newer "
                f"({gpu.get('name', 'this GPU')} has {cc[0]}.{cc[1]})")
    return ""


def timing_cache_file(folder: Path, gpu: Mapping[str, Any]) -> Path:
    """The store's timing cache for ``gpu``: named by its fingerprint's hash, so every engine built on
    one GPU model (and driver) reads and grows the same file, and another GPU never reads it."""
    digest = hashlib.sha256(canonical_json(dict(gpu)).encode()).hexdigest()[:16]
    return Path(folder) / f"{digest}.timing-cache"


def current_gpu_index() -> int:
    """The nvidia-smi index of the GPU this process uses: the one a ``cuda:N`` build pins, else 0."""
    visible = os.environ.get(VISIBLE_ENV, "").split(",")[0].strip()
    return int(visible) if visible.isdigit() else 0


class TensorRtFromOnnx(Step):
    """Build a TensorRT engine from ``onnx`` at ``precision`` with the plan's optimization profiles,
    write ``model.plan`` (and, for int8, the calibration cache) and ``engine.json``.

    The engine is machine code for this GPU and this TensorRT: its key holds both (the GPU's
    fingerprint through the conversion's device, TensorRT's version as a tool).
    """

    name: ClassVar[str] = "TensorRtFromOnnx"
    version: ClassVar[int] = 1
    Params: ClassVar[type] = TensorRtParams
    requires: ClassVar[tuple[str, ...]] = ("tensorrt", "polygraphy", "onnx")
    tools: ClassVar[tuple[str, ...]] = ("tensorrt", "polygraphy")
    hardware_dependent: ClassVar[bool] = True

    @classmethod
    def gpu_refusal(cls, params: Any, gpu: Mapping[str, Any]) -> str:
        return fp8_refusal(gpu) if params.precision == "fp8" else ""

    @classmethod
    def reproduce_commands(cls, params: Any) -> str:
        return script_lines(params, timing_cache="timing.cache" if params.timing_cache else None,
                            calibrated=params.precision == "int8")

    def run(self, params: Any, ctx: StepContext) -> dict:
        import onnx

        if params.precision not in PRECISION_FLAGS:
            raise ValueError(f"precision '{params.precision}' is not one of {', '.join(PRECISION_FLAGS)}")
        source = model_file(Path(ctx.inputs["onnx"]))
        graph = onnx.load(str(source), load_external_data=False).graph
        weights = {i.name for i in graph.initializer}
        inputs = [i.name for i in graph.input if i.name not in weights]
        outputs = [o.name for o in graph.output]
        gpu = gpu_fingerprint(current_gpu_index())
        timing = None
        if params.timing_cache and os.environ.get(TIMING_CACHE_ENV):
            timing = timing_cache_file(Path(os.environ[TIMING_CACHE_ENV]), gpu)
            timing.parent.mkdir(parents=True, exist_ok=True)
        calibrator = None
        if params.precision == "int8":
            samples = read_npz(Path(ctx.inputs["reference"]) / SAMPLES_FILE)
            batch = params.profiles[0].inputs[0].opt[0]
            data = calibration_data(samples, inputs, batch, params.calibration_rows, ctx.out / CALIBRATION_CACHE)
            save_calibration_inputs(data, ctx.out / CALIBRATION_INPUTS)  # for the reproduce script
            calibrator = make_calibrator(data)
            print(f"int8 calibration: {len(data.batches)} batch(es) of up to {batch} rows", flush=True)
        plan = ctx.out / PLAN_FILE
        print(f"building a {params.precision} engine for {gpu.get('name', UNKNOWN)} with profiles "
              f"{describe(params.profiles)}", flush=True)
        engine_chain(params, source, plan, timing, calibrator)()
        write_engine_facts(ctx.out, inputs, outputs, params.precision, params.profiles)
        size = plan.stat().st_size
        print(f"{PLAN_FILE}: {size} bytes (by hand: the polygraphy lines in reproduce.sh)", flush=True)
        return {"size_bytes": size, "precision": params.precision, "profiles": len(params.profiles),
                "timing_cache": timing.name if timing is not None else None,
                "calibration_cache": CALIBRATION_CACHE if calibrator is not None else None}


__all__ = ["TensorRtConfig", "TensorRtParams", "TensorRtFromOnnx", "TIMING_CACHE_ENV",
           "FP8_MIN_COMPUTE_CAPABILITY", "compute_capability", "fp8_refusal", "timing_cache_file",
           "current_gpu_index"]
