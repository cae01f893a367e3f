"""Tests of navbuild.runners: loading torch factories, output normalization, ORT sessions, make_runner."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from navbuild.errors import InputError
from navbuild.runners import make_runner
from navbuild.runners.ort_runner import OrtRunner, session_options
from navbuild.runners.torch_runner import TorchRunner, flatten_outputs, load_torch_model
from navbuild.runtime import RuntimeOptions, TorchFactory

X = {"x": np.random.default_rng(0).uniform(-1, 1, (3, 8)).astype(np.float32)}


def _export(model, path: Path) -> Path:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(X["x"]),), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17)
    return path


def test_load_torch_model_is_in_eval_mode() -> None:
    model = load_torch_model(TorchFactory("tests.models:tiny_mlp", {"hidden": 5}))
    assert not model.training
    assert model.body[0].out_features == 5


@pytest.mark.parametrize("factory, message", [
    ("tests.nope:tiny_mlp", r"source.torch: module 'tests.nope' not found"),
    ("tests.models:nope", r"source.torch: function 'nope' not found in module 'tests.models'"),
    ("tests.models:not_a_module", r"did not return a torch.nn.Module \(got dict\)"),
    ("tests.models", r"must be 'package.module:function'"),
])
def test_load_torch_model_errors(factory: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_torch_model(TorchFactory(factory, {}))


def test_flatten_outputs_shapes() -> None:
    import torch

    t = torch.zeros(2)
    assert flatten_outputs(t) == (None, [t])
    assert flatten_outputs((t, [t, None]))[1] == [t, t]
    names, values = flatten_outputs({"a": t, "skip": None, "b": t})
    assert names == ["a", "b"] and len(values) == 2


def test_flatten_outputs_model_output() -> None:
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    out = BaseModelOutputWithPooling(last_hidden_state=torch.zeros(1, 2, 3), pooler_output=None)
    names, values = flatten_outputs(out)
    assert names == ["last_hidden_state"] and values[0].shape == (1, 2, 3)


def test_torch_runner_runs_by_name() -> None:
    model = load_torch_model(TorchFactory("tests.models:two_inputs", {}))
    runner = TorchRunner(model, ["x", "mask"], threads=1)
    feeds = {"x": np.ones((2, 3, 8), np.float32), "mask": np.ones((2, 3), np.int64)}
    (out,) = runner.run(feeds)
    assert isinstance(out, np.ndarray) and out.shape == (2, 3, 8)
    assert runner.output_names is None


def test_ort_runner_matches_torch(tmp_path: Path) -> None:
    model = load_torch_model(TorchFactory("tests.models:tiny_mlp", {}))
    path = _export(model, tmp_path / "m.onnx")
    ort_runner = OrtRunner(path, RuntimeOptions(intra_op_threads=1, graph_level="basic"))
    assert ort_runner.input_names == ["x"] and ort_runner.output_names == ["y"]
    (got,) = ort_runner.run({**X, "unused": np.zeros(1)})  # extra feeds are ignored
    (want,) = TorchRunner(model, ["x"], threads=1).run(X)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_ort_session_flushes_denormals_only_when_asked() -> None:
    key = "session.set_denormal_as_zero"
    assert session_options(RuntimeOptions(flush_denormals=True)).get_session_config_entry(key) == "1"
    plain = session_options(RuntimeOptions())
    with pytest.raises(RuntimeError, match="does not have configuration"):  # never set
        plain.get_session_config_entry(key)


def test_ort_runner_rejects_unknown_level(tmp_path: Path) -> None:
    path = _export(load_torch_model(TorchFactory("tests.models:tiny_mlp", {})), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="graph level 'max' is not one of"):
        OrtRunner(path, RuntimeOptions(graph_level="max"))


def test_make_runner(tmp_path: Path) -> None:
    factory = TorchFactory("tests.models:tiny_mlp", {})
    path = _export(load_torch_model(factory), tmp_path / "m.onnx")
    options = RuntimeOptions(intra_op_threads=1)
    assert isinstance(make_runner("torch", None, factory, ["x"], options), TorchRunner)
    assert isinstance(make_runner("onnx", path, None, ["x"], options), OrtRunner)
    with pytest.raises(ValueError, match="no runner for variant format 'trt'"):
        make_runner("trt", path, None, ["x"], options)


def test_ort_runner_with_openvino_ep_runs_it_or_says_which_wheel_it_needs(tmp_path: Path) -> None:
    """Real either way: with onnxruntime-openvino the EP runs the model and matches torch; with the
    plain onnxruntime wheel the runner refuses and names the wheel to install."""
    import onnxruntime as ort

    model = load_torch_model(TorchFactory("tests.models:tiny_mlp", {}))
    path = _export(model, tmp_path / "m.onnx")
    options = RuntimeOptions(intra_op_threads=1, graph_level="disable", mode="openvino-ep")
    if "OpenVINOExecutionProvider" in ort.get_available_providers():
        runner = make_runner("onnx", path, None, ["x"], options)
        assert runner.session.get_providers()[0] == "OpenVINOExecutionProvider"
        (got,) = runner.run(X)
        (want,) = TorchRunner(model, ["x"], threads=1).run(X)
        np.testing.assert_allclose(got, want, atol=1e-4)
    else:
        with pytest.raises(RuntimeError, match=r"has no OpenVINOExecutionProvider: install onnxruntime-openvino "
                                               r"in place of onnxruntime"):
            make_runner("onnx", path, None, ["x"], options)
    with pytest.raises(ValueError, match=r"ONNX Runtime has no runtime mode 'dynamic-int8' \(known: '', 'openvino-ep'\)"):
        OrtRunner(path, RuntimeOptions(mode="dynamic-int8"))
