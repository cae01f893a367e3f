"""Tests of ReferenceFromSource on real tiny torch and ONNX sources."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from navbuild.errors import InputError
from navbuild.model_io import TensorSpec
from navbuild.samples import generate_samples, read_npz, save_npz, take_batch
from navbuild.steps.base import StepContext
from navbuild.runtime import TorchFactory
from navbuild.steps.reference import ReferenceFromSource

X = (TensorSpec("x", "float32", ("batch", 8), low=-1.0, high=1.0),)


def _params(**overrides):
    base = dict(source_format="torch", factory=TorchFactory("tests.models:tiny_mlp", {}), inputs=X,
                outputs=("y",), count=3, seed=0, axes={}, batch_sizes=(1, 4), threads=1)
    base.update(overrides)
    return ReferenceFromSource.Params(**base)


def _run(tmp_path: Path, params, inputs: dict | None = None, name: str = "ref") -> tuple[Path, dict]:
    out = tmp_path / name
    out.mkdir()
    return out, ReferenceFromSource().run(params, StepContext(inputs=inputs or {}, out=out))


def test_torch_source_writes_samples_and_each_batch(tmp_path: Path) -> None:
    from navbuild.runners.torch_runner import load_torch_model

    out, result = _run(tmp_path, _params())
    assert sorted(p.name for p in out.iterdir()) == ["reference_b1.npz", "reference_b4.npz", "samples.npz"]
    samples = read_npz(out / "samples.npz")
    assert samples["x"].shape == (3, 8)
    ref4 = read_npz(out / "reference_b4.npz")
    assert list(ref4) == ["y"] and ref4["y"].shape == (4, 4)
    import torch

    model = load_torch_model(TorchFactory("tests.models:tiny_mlp", {}))
    with torch.no_grad():
        want = model(x=torch.from_numpy(take_batch(samples, 4)["x"])).numpy()
    np.testing.assert_allclose(ref4["y"], want, atol=1e-6)
    flops = result.pop("flops")
    assert flops["1"] > 0 and flops["4"] == 4 * flops["1"]  # linear layers: FLOPs scale with the batch
    assert result == {"inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 8]}],
                      "outputs": [{"name": "y", "dtype": "float32",
                                   "shape_at_batch": {"1": [1, 4], "4": [4, 4]}}],
                      "count": 3}


def test_rerun_is_byte_identical(tmp_path: Path) -> None:
    a, _ = _run(tmp_path, _params(), name="a")
    b, _ = _run(tmp_path, _params(), name="b")
    for f in ("samples.npz", "reference_b1.npz", "reference_b4.npz"):
        assert (a / f).read_bytes() == (b / f).read_bytes()


def test_onnx_source(tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    onnx_dir = make_onnx()
    out, result = _run(tmp_path, _params(source_format="onnx", factory=None),
                       inputs={"source": onnx_dir / "model.onnx"})
    torch_out, _ = _run(tmp_path, _params(), name="torch_ref")
    np.testing.assert_allclose(read_npz(out / "reference_b4.npz")["y"],
                               read_npz(torch_out / "reference_b4.npz")["y"], atol=1e-5)
    assert result["outputs"][0]["shape_at_batch"] == {"1": [1, 4], "4": [4, 4]}


def test_onnx_source_wrong_output_name(tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    onnx_dir = make_onnx()
    with pytest.raises(InputError, match=r"outputs: the model returns 1 output \(y\), "
                                         r"the recipe declares 1 output \(logits\)"):
        _run(tmp_path, _params(source_format="onnx", factory=None, outputs=("logits",)),
             inputs={"source": onnx_dir})


def test_tuple_outputs_count_mismatch(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"outputs: the model returns 2 outputs, "
                                         r"the recipe declares 1 output \(y\)"):
        _run(tmp_path, _params(factory=TorchFactory("tests.models:two_outputs", {})))


def test_undeclared_outputs_are_numbered(tmp_path: Path) -> None:
    out, result = _run(tmp_path, _params(factory=TorchFactory("tests.models:two_outputs", {}), outputs=()))
    assert [o["name"] for o in result["outputs"]] == ["output_0", "output_1"]
    assert list(read_npz(out / "reference_b1.npz")) == ["output_0", "output_1"]


def test_dict_outputs_by_name(tmp_path: Path) -> None:
    model = TorchFactory("tests.models:dict_outputs", {})
    out, result = _run(tmp_path, _params(factory=model, outputs=("norm", "logits")))
    ref = read_npz(out / "reference_b1.npz")
    assert list(ref) == ["norm", "logits"] and ref["norm"].shape == (1, 1)
    with pytest.raises(InputError, match=r"returns 2 outputs \(logits, norm\), "
                                         r"the recipe declares 2 outputs \(logits, scores\)"):
        _run(tmp_path, _params(factory=model, outputs=("logits", "scores")), name="bad")


def test_model_that_raises(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"source: the model raised on the recipe's inputs "
                                         r"\(x float32 \(1, 8\)\) at batch 1: RuntimeError: mat1 and mat2"):
        _run(tmp_path, _params(factory=TorchFactory("tests.models:raises_on_input", {})))


def test_samples_file_is_used(tmp_path: Path) -> None:
    samples = generate_samples(X, 2, seed=42, axes={})
    save_npz(tmp_path / "data.npz", samples)
    out, result = _run(tmp_path, _params(), inputs={"samples_file": tmp_path / "data.npz"})
    np.testing.assert_array_equal(read_npz(out / "samples.npz")["x"], samples["x"])
    assert result["count"] == 2


def test_samples_file_wrong_dtype(tmp_path: Path) -> None:
    np.savez(tmp_path / "data.npz", x=np.zeros((2, 8), np.float64))
    with pytest.raises(InputError, match=r"samples file data.npz: input 'x' has dtype float64, "
                                         r"the recipe declares float32"):
        _run(tmp_path, _params(), inputs={"samples_file": tmp_path / "data.npz"})


def test_onnx_source_undeclared_input(tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    onnx_dir = make_onnx()
    wrong = (TensorSpec("features", "float32", ("batch", 8)),)
    with pytest.raises(InputError, match=r"inputs: model.onnx has input\(s\) x that the recipe does "
                                         r"not declare \(it declares features\)"):
        _run(tmp_path, _params(source_format="onnx", factory=None, inputs=wrong),
             inputs={"source": onnx_dir})


def test_a_sample_generator_makes_the_samples(tmp_path: Path) -> None:
    out, result = _run(tmp_path, _params(generator="tests.models:counting_samples",
                                         generator_kwargs={"scale": 2.0}, count=4))
    samples = read_npz(out / "samples.npz")
    assert samples["x"].shape == (4, 8) and samples["x"][3, 0] == 6.0
    assert result["count"] == 4


def test_a_generator_with_the_wrong_dtype_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="dtype float64.*float32"):
        _run(tmp_path, _params(generator="tests.models:wrong_dtype_samples"))
    with pytest.raises(InputError, match="samples.generator: cannot load 'tests.models:nope'"):
        _run(tmp_path, _params(generator="tests.models:nope"), name="ref2")
