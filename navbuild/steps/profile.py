"""ProfilePerformance: latency and throughput of a variant per batch size, measured until windows are stable."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, List, Mapping

from navbuild.lazy import lazy_import
from navbuild.measure_conditions import DEFAULT_MAX_BACKGROUND_LOAD, Probe, describe
from navbuild.runners import make_runner
from navbuild.runtime import RuntimeOptions, TorchFactory
from navbuild.samples import read_npz, take_batch
from navbuild.settings import params_of, setting
from navbuild.steps.base import Step, StepContext, variant_runtimes
from navbuild.steps.reference import SAMPLES_FILE

np = lazy_import("numpy")


@dataclass
class ProfileConfig:
    """The recipe's ``profile``: how every variant is timed, and how the finalists are compared."""

    batch_sizes: List[int] = setting(factory=lambda: [1, 8])
    warmup_iters: int = setting(6, minimum=0, doc="iterations run and discarded before measuring "
                                                  "(TorchScript needs ~5 calls before its optimized plan runs)")
    window_s: float = setting(0.5, above=0, doc="a window lasts at least this long ...")
    min_window_iters: int = setting(5, minimum=1, doc="... and at least this many iterations")
    stable_windows: int = setting(3, minimum=2, doc="the last N window medians must agree ...")
    stability: float = setting(0.1, check=lambda v: None if 0 < v < 1 else
                               f"{v} must be between 0 and 1 (a relative spread)",
                               doc="... within this relative spread ((max - min) / median), between 0 and 1")
    max_windows: int = setting(15, minimum=2, doc="give up waiting for stability after this many windows")
    pin_cores: bool = setting(True, doc="pin to the first intra_op_threads allowed CPUs")
    finalists: int = setting(3, doc="re-measured interleaved (A B A B ...) before a winner is named; <2: off")
    finalist_rounds: int = 10
    finalist_iters: int = setting(3, doc="timed runs per variant and round")
    # the previous turn ran another runtime, whose weights pushed this one's out of the caches
    # (MiniLM openvino-int8 timed right after torch with no warm-up: 33.2 ms median against 29.5 ms
    # in its own profile)
    finalist_warmup_iters: int = setting(1, minimum=0, doc="untimed runs at the start of each variant's turn")
    # 0.5 suits 2-core CI runners (a quarter of the machine taken by others); raise it on a
    # many-core host. A policy, not an input: it is in no cache key, so changing it re-measures
    # nothing that was measured quietly.
    max_background_load: float = setting(
        DEFAULT_MAX_BACKGROUND_LOAD, minimum=0, note="cores busy with other work",
        doc="background cores busy (other processes' CPU time averaged over the measurement, from /proc) "
            "above which a profile, the finalists' ranking or a Triton measurement is provisional: this build "
            "uses it and says so, the next build measures it again")
    remeasure: bool = setting(False, doc="re-run every timed target (profiles, finalists, Triton measurements) "
                                         "even when cached; conversions and checks stay cached "
                                         "(`navbuild --remeasure` sets it for one build)")


@dataclass(frozen=True)
class _ProfiledVariant:
    """What a profile reads besides the recipe's ``profile`` section."""

    variant_format: str            # "torch" | "onnx"
    factory: TorchFactory | None   # for torch variants
    runtime: RuntimeOptions


#: the ``profile`` fields a profile target reads (the finalists' and the measurement policy's are not)
PROFILE_FIELDS = ("batch_sizes", "warmup_iters", "window_s", "min_window_iters", "stable_windows", "stability",
                  "max_windows", "pin_cores")
ProfileParams = params_of(ProfileConfig, "ProfileParams", __name__, bases=(_ProfiledVariant,), only=PROFILE_FIELDS)


class ProfilePerformance(Step):
    """Measure a variant at each batch size in windows until the last window medians agree.

    Medians per window (not means) make one preempted iteration harmless; the reported
    percentiles pool every iteration of the last stable windows, so p99 has enough samples.
    """

    name: ClassVar[str] = "ProfilePerformance"
    # 2: OpenVINO variants run shape-specialized (static) compiled models
    version: ClassVar[int] = 2
    Params: ClassVar[type] = ProfileParams
    requires: ClassVar[tuple[str, ...]] = ("numpy",)

    @classmethod
    def runtimes(cls, params: Any = None) -> tuple[str, ...]:
        return variant_runtimes(params)
    tools: ClassVar[tuple[str, ...]] = ("torch", "onnxruntime", "numpy")
    hardware_dependent: ClassVar[bool] = True
    timed: ClassVar[bool] = True

    def run(self, params: ProfileParams, ctx: StepContext) -> dict:

        samples = read_npz(ctx.inputs["reference"] / SAMPLES_FILE)
        # the model's file or folder: each runner finds its own file in a folder (model.onnx, model.xml, ...)
        model_path = ctx.inputs.get("model")
        previous_affinity = _pin(params) if params.pin_cores else None
        pinned = sorted(os.sched_getaffinity(0)) if params.pin_cores else []
        try:
            runner = make_runner(params.variant_format, model_path, params.factory,
                                 list(samples), params.runtime,
                                 source=ctx.inputs.get("source"))
            # a runner that times itself on its device (GPU runners, torch-aoti) is timed through
            # bind: inputs on the device once, the model's own time per call
            bind = getattr(runner, "bind", None)
            batches = {}
            with Probe() as whole:
                for b in params.batch_sizes:
                    with Probe() as probe:
                        feeds = take_batch(samples, b)
                        batches[str(b)] = (measure(runner.run, feeds, b, params) if bind is None
                                           else measure_bound(bind(feeds), b, params))
                    r = batches[str(b)]
                    r["conditions"] = probe.conditions
                    print(f"batch {b}: p50 {r['latency_ms']['p50']:.3f} ms, p99 {r['latency_ms']['p99']:.3f} ms, "
                          f"{r['throughput']:.1f} samples/s, {r['windows']} windows, "
                          f"{'stable' if r['stable'] else 'NOT stable'} (spread {r['spread']:.3f}), "
                          f"{describe(probe.conditions)}", flush=True)
        finally:
            if previous_affinity is not None:
                # in-process callers (tests, the API) must not stay pinned after the step
                os.sched_setaffinity(0, previous_affinity)
        peak = runner.peak_memory_mb() if hasattr(runner, "peak_memory_mb") else None
        result = {"batches": batches, "threads": params.runtime.intra_op_threads, "pinned_cpus": pinned,
                  "conditions": whole.conditions}
        if peak is not None:  # GPU runners: the peak device memory over every batch size
            result["peak_memory_mb"] = round(peak, 1)
            print(f"peak device memory {peak:.1f} MiB", flush=True)
        unstable = [f"{b} (spread {r['spread']:.2f} > {params.stability:g} after {r['windows']} windows)"
                    for b, r in batches.items() if not r["stable"]]
        if unstable:
            # its own stability target missed: the figures are noise-dominated, measure again next build
            result["noise"] = "profile not stable at batch " + ", ".join(unstable)
        return result


def _pin(params: ProfileParams) -> set[int] | None:
    """Pin this process to the first ``intra_op_threads`` allowed CPUs; return the previous set."""
    if not hasattr(os, "sched_setaffinity"):
        print("pin_cores: not supported on this platform, running unpinned", flush=True)
        return None
    allowed = sorted(os.sched_getaffinity(0))
    cpus = allowed[:max(1, params.runtime.intra_op_threads)]
    os.sched_setaffinity(0, cpus)
    print(f"pinned to CPUs {cpus}", flush=True)
    return set(allowed)


def measure(run: Any, feeds: Mapping[str, np.ndarray], batch: int, params: ProfileParams) -> dict[str, Any]:
    """Warm up, then time windows of ``run(feeds)`` until ``stable_windows`` medians agree or the cap."""
    for _ in range(params.warmup_iters):
        run(feeds)

    def once() -> float:
        t0 = time.perf_counter_ns()
        run(feeds)
        return time.perf_counter_ns() - t0

    return _windows(once, batch, params)


def measure_bound(bound: Callable[[], float], batch: int, params: ProfileParams) -> dict[str, Any]:
    """Time a model bound to its inputs on its device (``runner.bind(feeds)``: each call returns its
    own time in ms, measured on the device): warm up, keep warming until the clocks settle, then
    time windows as ``measure`` does.

    A GPU raises its clocks under load and a cold one is slow for a while after the first calls:
    besides ``warmup_iters``, warm-up windows run until two consecutive ones' medians agree within
    ``stability`` (at most ``max_windows`` of them); the result says how many it took.
    """
    for _ in range(params.warmup_iters):
        bound()

    def once() -> float:
        return bound() * 1e6  # ms -> ns, the unit the windows keep

    settle, previous, settled = 0, None, False
    while settle < max(params.max_windows, 1):
        median = float(np.median(_window(once, params)))
        settle += 1
        if previous is not None and abs(median - previous) / max(median, previous, 1.0) <= params.stability:
            settled = True
            break
        previous = median
    result = _windows(once, batch, params)
    result["timing"] = "device"  # the model's own time (inputs on the device, CUDA events on a GPU)
    result["settle_windows"] = settle
    result["settled"] = settled
    return result


def _window(once: Callable[[], float], params: ProfileParams) -> np.ndarray:
    """One window: ``once()`` (a time in ns) for at least ``window_s`` and ``min_window_iters`` calls."""
    window_ns = int(params.window_s * 1e9)
    lat: list[float] = []
    start = time.perf_counter_ns()
    while time.perf_counter_ns() - start < window_ns or len(lat) < params.min_window_iters:
        lat.append(once())
    return np.asarray(lat, dtype=np.float64)


def _windows(once: Callable[[], float], batch: int, params: ProfileParams) -> dict[str, Any]:
    """Windows of ``once()`` (a time in ns) until ``stable_windows`` medians agree or the cap; the figures."""
    need = max(1, params.stable_windows)
    windows: list[np.ndarray] = []
    medians: list[float] = []
    stable, spread = False, float("inf")
    while len(windows) < max(params.max_windows, 1):
        windows.append(_window(once, params))
        medians.append(float(np.median(windows[-1])))
        if len(medians) >= need:
            last = medians[-need:]
            spread = (max(last) - min(last)) / max(float(np.median(last)), 1.0)
            if spread <= params.stability:
                stable = True
                break
    pooled = np.concatenate(windows[-need:]) / 1e6  # ns -> ms
    mean_ms = float(pooled.mean())
    if not np.isfinite(spread):  # fewer windows than stable_windows: report what there is
        last = medians[-need:]
        spread = (max(last) - min(last)) / max(float(np.median(last)), 1.0)
    return {
        "latency_ms": {"mean": mean_ms, "p50": float(np.percentile(pooled, 50)),
                       "p90": float(np.percentile(pooled, 90)), "p95": float(np.percentile(pooled, 95)),
                       "p99": float(np.percentile(pooled, 99))},
        "throughput": batch / (mean_ms / 1e3),
        "windows": len(windows),
        "iterations": int(sum(w.size for w in windows)),
        "pooled_iterations": int(pooled.size),  # the iterations the percentiles are taken over
        "stable": stable,
        "capped": not stable,
        "spread": float(spread),
    }


__all__ = ["ProfilePerformance", "ProfileParams", "ProfileConfig", "PROFILE_FIELDS", "measure", "measure_bound"]
