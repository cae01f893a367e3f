"""ProfilePerformance: latency and throughput of a variant per batch size, measured until windows are stable."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from navbuild.lazy import lazy_import
from navbuild.measure_conditions import Probe, describe
from navbuild.samples import read_npz, take_batch
from navbuild.steps.base import Step, StepContext, variant_runtimes
from navbuild.steps.common import RuntimeOptions, TorchFactory
from navbuild.steps.reference import SAMPLES_FILE

np = lazy_import("numpy")


@dataclass(frozen=True)
class ProfileParams:
    variant_format: str            # "torch" | "onnx"
    factory: TorchFactory | None   # for torch variants
    batch_sizes: tuple[int, ...]
    runtime: RuntimeOptions
    warmup_iters: int              # iterations run and discarded before measuring
    window_s: float                # a window lasts at least this long ...
    min_window_iters: int          # ... and at least this many iterations
    stable_windows: int            # the last N window medians must agree ...
    stability: float               # ... within this relative spread ((max - min) / median)
    max_windows: int               # give up waiting for stability after this many windows
    pin_cores: bool                # pin to the first intra_op_threads allowed CPUs


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
        from navbuild.runners import make_runner

        samples = read_npz(ctx.inputs["reference"] / SAMPLES_FILE)
        # the model's file or folder: each runner finds its own file in a folder (model.onnx, model.xml, ...)
        model_path = ctx.inputs.get("model")
        previous_affinity = _pin(params) if params.pin_cores else None
        pinned = sorted(os.sched_getaffinity(0)) if params.pin_cores else []
        try:
            runner = make_runner(params.variant_format, model_path, params.factory,
                                 list(samples), params.runtime,
                                 source=ctx.inputs.get("source"))
            batches = {}
            with Probe() as whole:
                for b in params.batch_sizes:
                    with Probe() as probe:
                        batches[str(b)] = measure(runner.run, take_batch(samples, b), b, params)
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
        result = {"batches": batches, "threads": params.runtime.intra_op_threads, "pinned_cpus": pinned,
                  "conditions": whole.conditions}
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
    window_ns = int(params.window_s * 1e9)
    need = max(1, params.stable_windows)
    windows: list[np.ndarray] = []
    medians: list[float] = []
    stable, spread = False, float("inf")
    while len(windows) < max(params.max_windows, 1):
        lat: list[int] = []
        start = time.perf_counter_ns()
        while time.perf_counter_ns() - start < window_ns or len(lat) < params.min_window_iters:
            t0 = time.perf_counter_ns()
            run(feeds)
            lat.append(time.perf_counter_ns() - t0)
        windows.append(np.asarray(lat, dtype=np.float64))
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


__all__ = ["ProfilePerformance", "ProfileParams", "measure"]
