"""Polygraphy's TensorRT loader chain for an engine, and the ``polygraphy`` command lines that repeat it, as pure functions of the engine's Params.

``NetworkFromOnnxPath -> CreateConfig -> EngineFromNetwork -> SaveEngine``: Polygraphy's loaders
are lazy callables, so the whole chain is built (and its settings read back) without TensorRT;
TensorRT is imported only when the chain is called. The one exception is the int8 calibrator
(Polygraphy's ``Calibrator`` subclasses a TensorRT class): :func:`make_calibrator` builds it at
engine build time, from the :class:`CalibrationData` the chain's description holds.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from navbuild.formats.tensorrt_profiles import EngineProfile
from navbuild.lazy import lazy_import
from navbuild.runners.trt_runner import PLAN_FILE

np = lazy_import("numpy")

#: the precisions an engine is built at, and the builder flags each sets (fp8 layers need Q/DQ nodes
#: in the network; the rest of an fp8 engine runs in fp16)
PRECISION_FLAGS: Mapping[str, tuple[str, ...]] = {
    "fp32": (),
    "fp16": ("fp16",),
    "bf16": ("bf16",),
    "int8": ("int8",),
    "fp8": ("fp8", "fp16"),
}
CALIBRATION_CACHE = "calibration.cache"
#: the calibration batches as Polygraphy's JSON (what ``polygraphy convert --load-inputs`` reads)
CALIBRATION_INPUTS = "calibration_inputs.json"
#: TensorRT's memory pool the workspace setting caps
WORKSPACE_POOL = "WORKSPACE"


class PoolLimits(dict):
    """``CreateConfig(memory_pool_limits=...)`` keyed by pool name (``{"WORKSPACE": bytes}``): the
    names become ``tensorrt.MemoryPoolType`` members only when TensorRT reads them, at build time."""

    def items(self) -> Iterator[tuple[Any, int]]:  # type: ignore[override]
        import tensorrt as trt

        for name, size in super().items():
            yield getattr(trt.MemoryPoolType, name), size


@dataclass(frozen=True)
class CalibrationData:
    """What int8 calibration reads: batches of the samples (each a feed) and where its cache goes."""

    batches: tuple[Mapping[str, Any], ...]
    cache: Path


def calibration_data(samples: Mapping[str, Any], input_names: Sequence[str], batch_size: int, max_rows: int,
                     cache: Path) -> CalibrationData:
    """The first ``max_rows`` rows of ``samples`` in batches of ``batch_size`` (the last may be shorter),
    each with the engine's inputs only; ValueError naming what the samples lack."""
    missing = [n for n in input_names if n not in samples]
    if missing:
        raise ValueError(f"the reference samples have no input(s) {', '.join(missing)} that int8 calibration needs "
                         f"(they have {', '.join(samples) or 'none'})")
    rows = min([int(samples[n].shape[0]) for n in input_names] + [max_rows])
    batches = tuple({n: np.ascontiguousarray(samples[n][start:min(start + batch_size, rows)]) for n in input_names}
                    for start in range(0, rows, batch_size))
    return CalibrationData(batches, Path(cache))


def save_calibration_inputs(data: CalibrationData, path: Path) -> None:
    """Write the calibration batches where ``polygraphy convert --load-inputs`` reads them (the reproduce script)."""
    from polygraphy.json import save_json

    save_json([dict(b) for b in data.batches], str(path), description="int8 calibration batches")


def make_calibrator(data: CalibrationData) -> Any:
    """Polygraphy's entropy calibrator over ``data`` (needs TensorRT: called at engine build time only)."""
    from polygraphy.backend.trt import Calibrator

    return Calibrator(list(data.batches), cache=str(data.cache))


def polygraphy_profiles(profiles: Sequence[EngineProfile]) -> list[Any]:
    """The profiles as Polygraphy ``Profile`` objects (each input's min/opt/max)."""
    from polygraphy.backend.trt import Profile

    out = []
    for profile in profiles:
        p = Profile()
        for r in profile.inputs:
            p.add(r.name, min=r.min, opt=r.opt, max=r.max)
        out.append(p)
    return out


def create_config(params: Any, timing_cache: Path | None, calibrator: Any = None) -> Any:
    """``CreateConfig`` for the engine's Params: precision flags, profiles, builder optimization level,
    workspace cap, sparse weights, the timing cache to load; ``calibrator`` (int8) only at build time."""
    from polygraphy.backend.trt import CreateConfig

    if params.precision not in PRECISION_FLAGS:
        raise ValueError(f"precision '{params.precision}' is not one of {', '.join(PRECISION_FLAGS)}")
    flags = {flag: True for flag in PRECISION_FLAGS[params.precision]}
    return CreateConfig(**flags, profiles=polygraphy_profiles(params.profiles),
                        builder_optimization_level=params.builder_optimization_level,
                        memory_pool_limits=PoolLimits({WORKSPACE_POOL: params.workspace_mb * 2**20}),
                        sparse_weights=params.sparsity or None,
                        load_timing_cache=str(timing_cache) if timing_cache is not None else None,
                        calibrator=calibrator)


def engine_chain(params: Any, onnx: Path, plan: Path, timing_cache: Path | None = None, calibrator: Any = None) -> Any:
    """``SaveEngine(EngineFromNetwork(NetworkFromOnnxPath(onnx), config), plan)``: calling it builds the
    engine and writes ``plan``. The timing cache (when given) is loaded before and saved after the build."""
    from polygraphy.backend.trt import EngineFromNetwork, NetworkFromOnnxPath, SaveEngine

    network = NetworkFromOnnxPath(str(onnx))
    engine = EngineFromNetwork(network, config=create_config(params, timing_cache, calibrator),
                               save_timing_cache=str(timing_cache) if timing_cache is not None else None)
    return SaveEngine(engine, path=str(plan))


# ----------------------------------------------------------------------------- command lines

def _shapes(profile: EngineProfile, which: str) -> list[str]:
    return [f"{r.name}:[{','.join(str(d) for d in getattr(r, which))}]" for r in profile.inputs]


def convert_command(params: Any, onnx: str = "model.onnx", plan: str = PLAN_FILE, timing_cache: str | None = None,
                    calibration_cache: str | None = None, calibration_inputs: str | None = None) -> list[str]:
    """``polygraphy convert`` arguments that build the same engine (one ``--trt-*-shapes`` triple per profile)."""
    cmd = ["polygraphy", "convert", onnx, "--convert-to", "trt"]
    cmd += [f"--{flag}" for flag in PRECISION_FLAGS[params.precision]]
    for profile in params.profiles:
        for which in ("min", "opt", "max"):
            cmd += [f"--trt-{which}-shapes", *_shapes(profile, which)]
    cmd += ["--builder-optimization-level", str(params.builder_optimization_level),
            "--pool-limit", f"workspace:{params.workspace_mb}M"]
    if params.sparsity:
        cmd.append("--sparse-weights")
    if timing_cache:
        cmd += ["--load-timing-cache", timing_cache, "--save-timing-cache", timing_cache]
    if params.precision == "int8":
        if calibration_inputs:
            cmd += ["--load-inputs", calibration_inputs]
        if calibration_cache:
            cmd += ["--calibration-cache", calibration_cache]
    return cmd + ["-o", plan]


def run_command(params: Any, plan: str = PLAN_FILE) -> list[str]:
    """``polygraphy run`` arguments that load the engine and run it at its first profile's opt shapes."""
    cmd = ["polygraphy", "run", plan, "--model-type", "engine", "--trt"]
    if params.profiles:
        cmd += ["--input-shapes", *_shapes(params.profiles[0], "opt")]
    return cmd


def script_lines(params: Any, timing_cache: str | None, calibrated: bool) -> str:
    """The ``polygraphy`` lines of a TensorRT step's reproduce script (run from the target's folder)."""
    convert = convert_command(params, timing_cache=timing_cache,
                              calibration_cache=CALIBRATION_CACHE if calibrated else None,
                              calibration_inputs=CALIBRATION_INPUTS if calibrated else None)
    return (f"{shlex.join(convert)}\n"
            f"{shlex.join(run_command(params))}\n")


__all__ = ["PRECISION_FLAGS", "CALIBRATION_CACHE", "CALIBRATION_INPUTS", "save_calibration_inputs", "WORKSPACE_POOL", "PoolLimits", "CalibrationData",
           "calibration_data", "make_calibrator", "polygraphy_profiles", "create_config", "engine_chain",
           "convert_command", "run_command", "script_lines"]
