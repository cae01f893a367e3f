"""The GPU runners on a real CUDA GPU: torch-cuda's modes, AOTInductor for CUDA, ONNX Runtime's CUDA
provider with IO binding (a profile timed with CUDA events: tests/unit/steps/test_gpu_profile.py). Skipped, with the reason, where torch
sees no GPU (their CPU-path twins in test_device_runners.py run everywhere)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from navbuild.model_io import TensorSpec
from navbuild.runners import make_runner
from navbuild.runners.torch_cuda_runner import TORCH_CUDA_MODES, on_device
from navbuild.runtime import RuntimeOptions, TorchFactory
from navbuild.steps.aoti_from_torch import AotiFromTorch
from navbuild.steps.base import StepContext
from tests.models import onnx_mlp

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU (torch.cuda.is_available() is False)")]

MLP = TorchFactory("tests.models:tiny_mlp", {})
X = {"x": np.random.default_rng(0).uniform(-1, 1, (5, 8)).astype(np.float32)}
ONE = RuntimeOptions(intra_op_threads=1)


def _cpu_fp32() -> np.ndarray:
    return on_device("cpu", MLP, ["x"], "", 1).run(X)[0]


@pytest.mark.parametrize("mode", TORCH_CUDA_MODES)
def test_torch_cuda_modes_match_the_cpu_and_time_themselves(mode: str) -> None:
    runner = make_runner("torch-cuda", None, MLP, ["x"], RuntimeOptions(intra_op_threads=1, mode=mode))
    assert runner.device == "cuda" and next(runner.model.parameters()).is_cuda
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    (got,) = runner.run(X)
    atol = 1e-5 if mode in ("", "compile", "compile-cudagraphs") else 5e-2
    np.testing.assert_allclose(got, _cpu_fp32(), atol=atol)
    bound = runner.bind(X)
    assert all(bound() > 0 for _ in range(5))
    np.testing.assert_allclose(bound.outputs()[0], got, atol=1e-6)
    assert runner.peak_memory_mb() > 0


def test_aoti_package_for_cuda_runs_on_the_gpu(tmp_path: Path) -> None:
    params = AotiFromTorch.Params(factory=MLP, inputs=(TensorSpec("x", "float32", ("batch", 8), -1.0, 1.0),),
                                  axes={}, seed=0, device="cuda")
    AotiFromTorch().run(params, StepContext(inputs={}, out=tmp_path))
    assert json.loads((tmp_path / "aoti.json").read_text())["device"] == "cuda"
    runner = make_runner("torch-aoti", tmp_path / "model.pt2", None, ["x"], ONE)
    np.testing.assert_allclose(runner.run(X)[0], _cpu_fp32(), atol=1e-4)
    assert runner.bind(X)() > 0 and runner.peak_memory_mb() > 0


def test_onnx_cuda_io_binding_equals_run(tmp_path: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (onnxruntime-gpu not installed)")
    runner = make_runner("onnx-cuda", onnx_mlp(tmp_path / "model.onnx"), None, ["x"], ONE)
    assert runner.session.get_providers()[0] == "CUDAExecutionProvider"
    (want,) = runner.run(X)
    bound = runner.bind(X)
    assert bound() > 0
    np.testing.assert_allclose(bound.outputs()[0], want, atol=1e-6)
    assert runner.peak_memory_mb() is not None
