"""A profile on a real CUDA GPU: timed through bind() with CUDA events, with its peak device memory.
Skipped, with the reason, where torch sees no GPU (the CPU twin: test_profile_step.py's bound runner)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from navbuild.runtime import RuntimeOptions, TorchFactory
from navbuild.steps.base import StepContext
from navbuild.steps.profile import ProfilePerformance

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU (torch.cuda.is_available() is False)")]


def test_a_gpu_profile_records_device_timing_and_peak_memory(tmp_path: Path, make_reference) -> None:
    params = ProfilePerformance.Params(variant_format="torch-cuda", factory=TorchFactory("tests.models:tiny_mlp", {}),
                                       batch_sizes=(1, 4), runtime=RuntimeOptions(intra_op_threads=1), warmup_iters=3, window_s=0.05, min_window_iters=5, stable_windows=2,
                                       stability=0.5, max_windows=6, pin_cores=False)
    result = ProfilePerformance().run(params, StepContext(inputs={"reference": make_reference()},
                                                          out=tmp_path / "p"))
    assert result["peak_memory_mb"] > 0
    assert all(r["timing"] == "device" and r["latency_ms"]["p50"] > 0 for r in result["batches"].values())
