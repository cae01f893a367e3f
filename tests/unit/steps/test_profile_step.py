"""Tests of ProfilePerformance with small windows: shapes of the result and sane numbers, no wall-clock thresholds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from navbuild.steps.base import StepContext
from navbuild.runtime import RuntimeOptions, TorchFactory
from navbuild.steps.profile import ProfilePerformance, measure, measure_bound


def _params(**overrides):
    base = dict(variant_format="onnx", factory=None, batch_sizes=(1, 4),
                runtime=RuntimeOptions(intra_op_threads=1), warmup_iters=3, window_s=0.05,
                min_window_iters=5, stable_windows=2, stability=0.5, max_windows=6, pin_cores=False)
    base.update(overrides)
    return ProfilePerformance.Params(**base)


def _check_batch(r: dict, batch: int) -> None:
    lat = r["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"]
    assert lat["mean"] > 0
    assert r["throughput"] == pytest.approx(batch / (lat["mean"] / 1e3))
    assert 2 <= r["windows"] <= 6 and r["iterations"] >= 2 * 5
    assert r["spread"] >= 0 and r["stable"] == (not r["capped"])


def test_profile_onnx(tmp_path: Path, make_reference: Callable[..., Path],
                      make_onnx: Callable[..., Path]) -> None:
    result = ProfilePerformance().run(_params(), StepContext(
        inputs={"model": make_onnx(), "reference": make_reference()}, out=tmp_path / "p"))
    assert set(result["batches"]) == {"1", "4"} and result["threads"] == 1
    assert result["pinned_cpus"] == []
    for b in (1, 4):
        _check_batch(result["batches"][str(b)], b)
        assert result["batches"][str(b)]["conditions"]["seconds"] > 0
    # the conditions it ran under; the step runs in this process, so its CPU time is ours
    cond = result["conditions"]
    assert cond["own_cores"] > 0 and cond["background_cores"] >= 0 and "loadavg_1m" in cond
    assert ("noise" in result) == any(not r["stable"] for r in result["batches"].values())


def test_profile_that_misses_its_stability_target_says_so(tmp_path: Path, make_reference: Callable[..., Path],
                                                          make_onnx: Callable[..., Path]) -> None:
    # a stability target of 0 is met only by identical window medians, which timings never are
    result = ProfilePerformance().run(_params(batch_sizes=(1,), stability=0.0, max_windows=2),
                                      StepContext(inputs={"model": make_onnx(), "reference": make_reference()},
                                                  out=tmp_path / "p"))
    assert not result["batches"]["1"]["stable"]
    assert result["noise"].startswith("profile not stable at batch 1 (spread ")


def test_profile_torch_pinned_restores_affinity(tmp_path: Path, make_reference: Callable[..., Path]) -> None:
    before = os.sched_getaffinity(0)
    params = _params(variant_format="torch", factory=TorchFactory("tests.models:tiny_mlp", {}),
                     batch_sizes=(2,), pin_cores=True)
    result = ProfilePerformance().run(params, StepContext(inputs={"reference": make_reference()},
                                                          out=tmp_path / "p"))
    assert result["pinned_cpus"] == sorted(before)[:1]
    assert os.sched_getaffinity(0) == before
    _check_batch(result["batches"]["2"], 2)


def test_measure_caps_when_never_stable() -> None:
    calls = iter(range(10_000))

    def jittery(_feeds: dict) -> None:
        # alternate 0 and ~2 ms windows so that consecutive medians never agree
        n = next(calls)
        if (n // 10) % 2:
            import time
            time.sleep(0.002)

    params = _params(window_s=0.0, min_window_iters=10, warmup_iters=0, stable_windows=2,
                     stability=0.01, max_windows=4)
    r = measure(jittery, {}, 1, params)
    assert r["windows"] == 4 and r["capped"] and not r["stable"]
    assert r["iterations"] == 40 and r["pooled_iterations"] == 20


def test_a_bound_runner_is_timed_by_its_own_clock_after_the_clocks_settle() -> None:
    # a device warming up: each warm-up window (10 calls) twice as fast as the last, then steady at
    # 1 ms; the figures are the bound model's own times (what CUDA events measure on a GPU)
    calls = iter(range(10_000))
    ramp = [8.0, 4.0, 2.0]

    def bound() -> float:
        window = next(calls) // 10
        return ramp[window] if window < len(ramp) else 1.0

    params = _params(window_s=0.0, min_window_iters=10, warmup_iters=0, stable_windows=2, stability=0.1,
                     max_windows=8)
    r = measure_bound(bound, 4, params)
    # windows of 8, 4, 2, 1, 1 ms: the 4th and 5th agree
    assert r["timing"] == "device" and r["settled"] and r["settle_windows"] == 5
    assert r["latency_ms"]["p50"] == r["latency_ms"]["p99"] == 1.0  # no cold call among the measured ones
    assert r["throughput"] == 4000.0 and r["stable"] and r["windows"] == 2


def test_settling_is_capped_and_says_so() -> None:
    calls = iter(range(10_000))

    def bound() -> float:  # alternating 1 ms and 3 ms windows never agree
        return 3.0 if (next(calls) // 10) % 2 else 1.0

    params = _params(window_s=0.0, min_window_iters=10, warmup_iters=0, stable_windows=2, stability=0.1,
                     max_windows=3)
    r = measure_bound(bound, 1, params)
    assert not r["settled"] and r["settle_windows"] == 3
    assert r["capped"] and r["windows"] == 3
