"""torch-tensorrt-fp16 built, checked at every probe size and profiled on a real CUDA GPU with Torch-TensorRT.

Skipped, with the reason, where torch sees no CUDA GPU or torch_tensorrt is not installed (this machine,
CI, and the lent GPU machine, which has no TensorRT): there the plan-level tests
(tests/unit/planning/test_torch_tensorrt_plan.py) are what runs. Run with ``-m gpu`` where both exist.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import navbuild

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU (torch.cuda.is_available() is False)"),
    pytest.mark.skipif(importlib.util.find_spec("torch_tensorrt") is None, reason="torch_tensorrt not installed"),
]

VARIANT = "torch-tensorrt-fp16"


def test_torch_tensorrt_fp16_is_built_checked_and_profiled_on_the_gpu(project) -> None:
    from navbuild.runners.factory import make_runner
    from navbuild.runtime import RuntimeOptions

    result = navbuild.build("tiny", ["device=cuda", f"variants=[{VARIANT}]", "triton.enabled=false"])
    assert result.exit_code == 0, result.summary["targets"]
    variant = result.summary["variants"][VARIANT]
    assert variant["verdict"] == "pass", variant
    assert set(variant["profile"]) == {"1", "4"} and variant["peak_memory_mb"]
    built = result.outcomes[VARIANT].result
    assert built["precision"] == "fp16" and set(built["ran"]) >= {"1", "4"}

    # the runner times itself on the GPU (CUDA events) with the inputs copied there once
    runner = make_runner("torch-tensorrt", project.root / "build/tiny" / VARIANT, None, ["x"],
                         RuntimeOptions(intra_op_threads=1))
    bound = runner.bind({"x": np.ones((4, 8), np.float32)})
    assert bound() > 0 and bound.outputs()[0].shape[0] == 4
