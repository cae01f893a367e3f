"""OpenVinoFromTorch: the torch module converted straight to IR by OpenVINO's PyTorch frontend, for real."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")
torch = pytest.importorskip("torch")

from navbuild.model_io import TensorSpec  # noqa: E402
from navbuild.runners.openvino_runner import OpenVinoRunner  # noqa: E402
from navbuild.runners.torch_runner import flatten_outputs  # noqa: E402
from navbuild.samples import generate_samples  # noqa: E402
from navbuild.steps.base import StepContext, params_from_dict, params_to_dict  # noqa: E402
from navbuild.runtime import TorchFactory  # noqa: E402
from navbuild.runtime import RuntimeOptions
from navbuild.steps.openvino_from_torch import OpenVinoFromTorch  # noqa: E402

X_SPEC = (TensorSpec("x", "float32", ("batch", 8), low=-1.0, high=1.0),)

BERT_INPUTS = (TensorSpec("input_ids", "int64", ("batch", "seq"), low=0, high=1000),
               TensorSpec("attention_mask", "int64", ("batch", "seq"), low=1, high=2))
F32 = RuntimeOptions(intra_op_threads=1)


def factory(name: str) -> TorchFactory:
    return TorchFactory(f"tests.models:{name}", {})


def _convert(tmp_path: Path, model: str, inputs: tuple[TensorSpec, ...] = X_SPEC,
             outputs: tuple[str, ...] = ("y",), axes: dict | None = None, name: str = "ir") -> tuple[Path, dict]:
    params = OpenVinoFromTorch.Params(factory=factory(model), inputs=inputs, outputs=outputs,
                                      axes=axes or {}, seed=0)
    out = tmp_path / name
    out.mkdir()
    return out, OpenVinoFromTorch().run(params, StepContext(inputs={}, out=out))


def _eager(model: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    from navbuild.runners.torch_runner import load_torch_model

    module = load_torch_model(factory(model), None)
    with torch.no_grad():
        _, outs = flatten_outputs(module(**{k: torch.from_numpy(v) for k, v in feeds.items()}))
    return [o.numpy() for o in outs]


def test_mlp_ir_matches_eager_at_a_batch_it_never_saw(tmp_path: Path) -> None:
    out, result = _convert(tmp_path, "tiny_mlp")
    assert (out / "model.xml").is_file() and (out / "model.bin").is_file() and result["ops"] > 0
    runner = OpenVinoRunner(out, F32)
    assert runner.input_names == ["x"] and runner.output_names == ["y"]
    feeds = generate_samples(X_SPEC, 5, seed=7, axes={})
    np.testing.assert_allclose(runner.run(feeds)[0], _eager("tiny_mlp", feeds)[0], atol=1e-5, rtol=1e-4)


def test_bert_ir_keeps_batch_and_seq_dynamic(tmp_path: Path) -> None:
    out, _ = _convert(tmp_path, "tiny_bert", BERT_INPUTS, ("last_hidden_state",), axes={"seq": 8})
    runner = OpenVinoRunner(out, F32)
    assert sorted(runner.input_names) == ["attention_mask", "input_ids"]
    assert runner.output_names == ["last_hidden_state"]
    for batch, seq in ((1, 8), (4, 13)):
        feeds = generate_samples(BERT_INPUTS, batch, seed=batch, axes={"seq": seq})
        got = runner.run(feeds)[0]
        assert got.shape == (batch, seq, 32)
        np.testing.assert_allclose(got, _eager("tiny_bert", feeds)[0], atol=1e-4, rtol=1e-3)


def test_two_outputs_are_named_in_declared_order(tmp_path: Path) -> None:
    out, _ = _convert(tmp_path, "two_outputs", outputs=("first", "second"))
    runner = OpenVinoRunner(out, F32)
    assert runner.output_names == ["first", "second"]
    feeds = generate_samples(X_SPEC, 3, seed=1, axes={})
    for got, want in zip(runner.run(feeds), _eager("two_outputs", feeds)):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)


def test_wrong_output_count_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"has 1 output\(s\) but the recipe declares 2 \(y, z\)"):
        _convert(tmp_path, "tiny_mlp", outputs=("y", "z"))


def test_a_conversion_that_bakes_the_batch_fails_its_check(tmp_path: Path) -> None:
    # batch_one_only slices with a Python int taken from the example batch (2): right at 2, wrong at 3
    with pytest.raises(RuntimeError, match=r"does not reproduce the model at batch 3: output 0 has shape"):
        _convert(tmp_path, "batch_one_only")


def test_converting_twice_gives_identical_bytes(tmp_path: Path) -> None:
    a, _ = _convert(tmp_path, "tiny_mlp", name="a")
    b, _ = _convert(tmp_path, "tiny_mlp", name="b")
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(a.iterdir())}
    assert digest == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(b.iterdir())}


def test_params_round_trip_through_json() -> None:
    params = OpenVinoFromTorch.Params(factory=factory("tiny_bert"), inputs=BERT_INPUTS,
                                      outputs=("last_hidden_state",), axes={"seq": 8}, seed=3)
    assert params_from_dict(OpenVinoFromTorch.Params, params_to_dict(params)) == params
