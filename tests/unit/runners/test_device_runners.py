"""Tests of the GPU runners' code run for real with device "cpu" (torch-cuda's modes and bind,
ONNX Runtime's IO binding); the CUDA-only calls are in tests/unit/runners/test_gpu_runners.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from navbuild.errors import MissingTool
from navbuild.runners.device_timing import Bound, TorchDeviceRunner
from navbuild.runners.ort_cuda_runner import OrtDeviceRunner, device_providers
from navbuild.runners.ort_runner import OrtRunner
from navbuild.runners.torch_cuda_runner import TORCH_CUDA_MODES, on_device
from navbuild.runtime import RuntimeOptions, TorchFactory
from tests.models import onnx_mlp

MLP = TorchFactory("tests.models:tiny_mlp", {})
X = {"x": np.random.default_rng(0).uniform(-1, 1, (5, 8)).astype(np.float32)}


def _fp32() -> np.ndarray:
    return on_device("cpu", MLP, ["x"], "", 1).run(X)[0]


@pytest.mark.parametrize("mode, atol", [("", 0.0), ("cast-fp16", 5e-3), ("autocast-fp16", 5e-3),
                                        ("cast-bf16", 5e-2), ("autocast-bf16", 5e-2)])
def test_torch_device_modes_run_and_bind_gives_the_same_outputs(mode: str, atol: float) -> None:
    runner = on_device("cpu", MLP, ["x"], mode, 1)
    assert isinstance(runner, TorchDeviceRunner) and runner.device == "cpu"
    (got,) = runner.run(X)
    assert got.dtype == np.float32 and got.shape == (5, 4)
    np.testing.assert_allclose(got, _fp32(), atol=atol, rtol=0)
    bound = runner.bind(X)
    times = [bound() for _ in range(3)]
    assert all(t > 0 for t in times)
    np.testing.assert_array_equal(bound.outputs()[0], got)
    assert runner.peak_memory_mb() is None  # torch's CUDA counters only


def test_reduced_precision_modes_really_lower_the_precision() -> None:
    # guards against a mode that silently runs fp32 on the device path
    for mode in ("cast-fp16", "autocast-bf16"):
        assert np.abs(on_device("cpu", MLP, ["x"], mode, 1).run(X)[0] - _fp32()).max() > 1e-6, mode


def test_compile_with_cuda_graphs_mode_compiles_on_the_cpu_path_too() -> None:
    runner = on_device("cpu", MLP, ["x"], "compile-cudagraphs", 1)
    np.testing.assert_allclose(runner.run(X)[0], _fp32(), atol=1e-5)
    bound = runner.bind({"x": X["x"][:2]})
    bound()
    np.testing.assert_allclose(bound.outputs()[0], _fp32()[:2], atol=1e-5)


def test_a_cpu_only_mode_is_refused_with_the_known_modes() -> None:
    with pytest.raises(ValueError, match="'dynamic-int8' is unknown; known modes: '', 'cast-fp16'"):
        on_device("cpu", MLP, ["x"], "dynamic-int8", 1)
    assert "compile-bf16" not in TORCH_CUDA_MODES


def test_ort_io_binding_on_the_cpu_provider_equals_run(tmp_path: Path) -> None:
    path = onnx_mlp(tmp_path / "model.onnx")
    runner = OrtDeviceRunner(path, RuntimeOptions(intra_op_threads=1), "cpu")
    assert runner.session.get_providers() == ["CPUExecutionProvider"]
    expected = OrtRunner(path, RuntimeOptions(intra_op_threads=1)).run(X)[0]
    np.testing.assert_array_equal(runner.run(X)[0], expected)
    bound = runner.bind(X)
    assert isinstance(bound, Bound)
    assert all(bound() > 0 for _ in range(3))
    np.testing.assert_array_equal(bound.outputs()[0], expected)
    # a second binding at another batch size is independent of the first
    small = runner.bind({"x": X["x"][:1]})
    small()
    np.testing.assert_array_equal(small.outputs()[0], expected[:1])
    assert runner.peak_memory_mb() is None


def test_onnx_cuda_without_onnxruntime_gpu_says_what_to_install() -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(MissingTool, match=r"onnxruntime-gpu is not installed \(this onnxruntime .* offers: .*"
                                          r"CPUExecutionProvider"):
        device_providers("cuda")


def test_onnx_cuda_has_no_runtime_modes(tmp_path: Path) -> None:
    from navbuild.runners import make_runner

    with pytest.raises(ValueError, match="the onnx-cuda runner has no runtime mode 'openvino-ep' \\(only ''\\)"):
        make_runner("onnx-cuda", onnx_mlp(tmp_path / "model.onnx"), None, ["x"],
                    RuntimeOptions(intra_op_threads=1, mode="openvino-ep"))
