"""Tests of the OpenVINO runner: f32 matches ONNX Runtime and torch, the bf16 hint, mode checks."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")

from navbuild.runners import make_runner  # noqa: E402
from navbuild.runners.openvino_runner import OpenVinoRunner, compile_config  # noqa: E402
from navbuild.runners.ort_runner import OrtRunner  # noqa: E402
from navbuild.runners.torch_runner import load_torch_model  # noqa: E402
from navbuild.steps.base import StepContext  # noqa: E402
from navbuild.runtime import TorchFactory  # noqa: E402
from navbuild.runtime import RuntimeOptions
from navbuild.steps.openvino_convert import OpenVinoFromOnnx  # noqa: E402

MLP = TorchFactory("tests.models:tiny_mlp", {})
F32 = RuntimeOptions(intra_op_threads=1)


def _feeds(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).uniform(-1, 1, (batch, 8)).astype(np.float32)}


def _torch(feeds: dict[str, np.ndarray]) -> np.ndarray:
    """tiny_mlp run eagerly in torch: the source the conversions must reproduce."""
    import torch

    with torch.no_grad():
        return load_torch_model(MLP)(torch.from_numpy(feeds["x"])).numpy()


@pytest.fixture(scope="module")
def ir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_mlp exported to ONNX with a dynamic batch axis, converted to IR; the IR folder."""
    import torch

    root = tmp_path_factory.mktemp("openvino_runner")
    onnx_path = root / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(load_torch_model(MLP), (torch.zeros(2, 8),), str(onnx_path), dynamo=False,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17)
    out = root / "ir"
    out.mkdir()
    OpenVinoFromOnnx().run(OpenVinoFromOnnx.Params(), StepContext(inputs={"onnx": onnx_path}, out=out))
    return out


@pytest.mark.parametrize("batch", [1, 4])
def test_f32_matches_ort_and_torch(ir: Path, batch: int) -> None:
    feeds = _feeds(batch)
    runner = OpenVinoRunner(ir, F32)
    assert runner.input_names == ["x"] and runner.output_names == ["y"]
    (got,) = runner.run(feeds)
    (ort,) = OrtRunner(ir.parent / "model.onnx", F32).run(feeds)
    eager = _torch(feeds)
    assert got.dtype == np.float32 and got.shape == (batch, 4)
    np.testing.assert_allclose(got, ort, atol=1e-4)
    np.testing.assert_allclose(got, eager, atol=1e-4)


def test_make_runner_takes_the_xml_file_and_casts_feeds(ir: Path) -> None:
    runner = make_runner("openvino", ir / "model.xml", None, ["x"], F32)
    feeds = _feeds(3)
    (want,) = runner.run(feeds)
    # float64 feeds are cast to the model's f32 input; extra names are ignored
    (got,) = runner.run({"x": feeds["x"].astype(np.float64), "unused": np.zeros(1)})
    np.testing.assert_array_equal(got, want)


def test_outputs_survive_the_next_call(ir: Path) -> None:
    # the infer request is reused: outputs must be copies, not views of its buffers
    runner = OpenVinoRunner(ir, F32)
    (first,) = runner.run(_feeds(2, seed=1))
    kept = first.copy()
    runner.run(_feeds(2, seed=2))
    np.testing.assert_array_equal(first, kept)


def test_missing_input_is_named(ir: Path) -> None:
    with pytest.raises(ValueError, match="needs input\\(s\\) x"):
        OpenVinoRunner(ir, F32).run({"y": np.zeros((1, 8), np.float32)})


def test_bf16_hint_runs_and_is_close(ir: Path) -> None:
    import openvino as ov

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no native bf16")
    feeds = _feeds(4)
    bf16 = OpenVinoRunner(ir, RuntimeOptions(intra_op_threads=1, mode="bf16"))
    assert bf16.compiled_for(feeds).get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16
    (got,) = bf16.run(feeds)
    (want,) = OpenVinoRunner(ir, F32).run(feeds)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=5e-2)


def test_f32_config_pins_precision_threads_and_one_stream(ir: Path) -> None:
    import openvino as ov

    runner = OpenVinoRunner(ir, RuntimeOptions(intra_op_threads=2))
    compiled = runner.compiled_for(_feeds(4))
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 2
    assert int(compiled.get_property("NUM_STREAMS")) == 1
    # one compiled specialization per input shape: a profile at one batch size runs static code
    runner.run(_feeds(4))
    runner.run(_feeds(1))
    assert len(runner._requests) == 2


def test_sharing_cores_turns_thread_pinning_off_even_after_a_run(ir: Path) -> None:
    runner = OpenVinoRunner(ir, RuntimeOptions(intra_op_threads=1))
    runner.run(_feeds(2))
    assert runner.compiled_for(_feeds(2)).get_property("ENABLE_CPU_PINNING") is True  # OpenVINO's default here
    runner.share_cores()
    assert runner.compiled_for(_feeds(2)).get_property("ENABLE_CPU_PINNING") is False
    (got,) = runner.run(_feeds(2))
    np.testing.assert_allclose(got, OpenVinoRunner(ir, F32).run(_feeds(2))[0], atol=1e-5)


def test_unknown_mode_raises(ir: Path) -> None:
    with pytest.raises(ValueError, match="OpenVINO has no runtime mode 'fp8'"):
        make_runner("openvino", ir, None, ["x"], RuntimeOptions(mode="fp8"))


def test_bf16_without_cpu_support_is_refused() -> None:
    class NoBf16Core:  # a CPU without native bf16, which this machine may not be
        def get_property(self, device: str, name: str) -> list[str]:
            return ["FP32", "INT8"]

    with pytest.raises(ValueError, match="mode 'bf16' needs a CPU with native bf16"):
        compile_config(RuntimeOptions(mode="bf16"), NoBf16Core())


def test_no_model_path() -> None:
    with pytest.raises(ValueError, match="needs a model path"):
        make_runner("openvino", None, None, ["x"], F32)
