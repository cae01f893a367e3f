"""Tests of the torch runner's runtime modes, the TorchScript / exported-program runners, and the compile cache's place."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from navbuild.runners import make_runner
from navbuild.runners.torch_runner import TORCH_MODES, serialized_model_path
from navbuild.runtime import SERIALIZED_SOURCE, RuntimeOptions, TorchFactory

MLP = TorchFactory("tests.models:tiny_mlp", {})
X = {"x": np.random.default_rng(0).uniform(-1, 1, (5, 8)).astype(np.float32)}


def _eager(feeds: dict[str, np.ndarray] = X) -> np.ndarray:
    return make_runner("torch", None, MLP, ["x"], RuntimeOptions(intra_op_threads=1)).run(feeds)[0]


@pytest.mark.parametrize("mode, atol, rtol", [
    ("", 1e-5, 0.0),
    ("autocast-bf16", 5e-2, 5e-2),
    ("cast-bf16", 5e-2, 5e-2),
    ("dynamic-int8", 1e-2, 5e-2),
])
def test_eager_modes_match_fp32(mode: str, atol: float, rtol: float) -> None:
    runner = make_runner("torch", None, MLP, ["x"], RuntimeOptions(intra_op_threads=1, mode=mode))
    for batch in (1, 5):
        feeds = {"x": X["x"][:batch]}
        (got,) = runner.run(feeds)
        assert got.dtype == np.float32 and got.shape == (batch, 4)
        np.testing.assert_allclose(got, _eager(feeds), atol=atol, rtol=rtol)


def test_bf16_modes_change_the_numbers() -> None:
    # guards against a mode that silently runs fp32: bf16 cannot match fp32 to 1e-6 on this MLP
    for mode in ("autocast-bf16", "cast-bf16", "dynamic-int8"):
        (got,) = make_runner("torch", None, MLP, ["x"], RuntimeOptions(intra_op_threads=1, mode=mode)).run(X)
        assert np.abs(got - _eager()).max() > 1e-6, mode


def test_cast_bf16_keeps_integer_inputs() -> None:
    runner = make_runner("torch", None, TorchFactory("tests.models:two_inputs", {}), ["x", "mask"],
                         RuntimeOptions(intra_op_threads=1, mode="cast-bf16"))
    feeds = {"x": np.ones((2, 3, 8), np.float32), "mask": np.array([[1, 0, 1], [0, 1, 1]], np.int64)}
    (got,) = runner.run(feeds)
    assert got.dtype == np.float32 and got.shape == (2, 3, 8)
    assert np.all(got[0, 1] == 0) and np.all(got[1, 0] == 0)  # the int mask still masks


def test_unknown_mode_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"torch runtime mode 'fp8' is unknown; known modes: '', 'autocast-bf16'"):
        make_runner("torch", None, MLP, ["x"], RuntimeOptions(mode="fp8"))
    assert "compile-bf16" in TORCH_MODES


def _traced_mlp(path: Path) -> Path:
    import torch

    from navbuild.runners.torch_runner import load_torch_model

    with torch.no_grad():
        torch.jit.trace(load_torch_model(MLP), example_kwarg_inputs={"x": torch.zeros(2, 8)}).save(str(path))
    return path


def test_modes_that_need_modules_refuse_a_torchscript_source(tmp_path: Path) -> None:
    source = _traced_mlp(tmp_path / "m.pt")
    factory = TorchFactory(SERIALIZED_SOURCE, {})
    with pytest.raises(ValueError, match="dynamic-int8': the model has no torch.nn.Linear"):
        make_runner("torch", None, factory, ["x"], RuntimeOptions(mode="dynamic-int8"), source=source)
    with pytest.raises(ValueError, match="TorchScript source cannot be compiled"):
        make_runner("torch", None, factory, ["x"], RuntimeOptions(mode="compile"), source=source)
    (got,) = make_runner("torch", None, factory, ["x"], RuntimeOptions(mode="cast-bf16"), source=source).run(X)
    np.testing.assert_allclose(got, _eager(), atol=5e-2, rtol=5e-2)


def test_torchscript_runner_by_name_and_positional_fallback(tmp_path: Path) -> None:
    path = _traced_mlp(tmp_path / "model.pt")
    runner = make_runner("torchscript", tmp_path, None, ["x"], RuntimeOptions(intra_op_threads=1))
    np.testing.assert_allclose(runner.run(X)[0], _eager(), atol=1e-5)
    assert runner.output_names is None and runner.no_grad
    # a feed name the module's schema does not know goes positionally
    renamed = make_runner("torchscript", path, None, ["features"], RuntimeOptions(intra_op_threads=1))
    np.testing.assert_allclose(renamed.run({"features": X["x"]})[0], _eager(), atol=1e-5)


def test_serialized_model_path(tmp_path: Path) -> None:
    path = _traced_mlp(tmp_path / "model.pt")
    assert serialized_model_path(tmp_path, "model.pt") == path
    assert serialized_model_path(path, "model.pt") == path
    # correctness/profile pass model_file(dir), the ONNX default name, for every format
    assert serialized_model_path(tmp_path / "model.onnx", "model.pt") == path
    with pytest.raises(FileNotFoundError, match="no model.pt2 at"):
        serialized_model_path(tmp_path, "model.pt2")


@pytest.mark.parametrize("fmt", ["torchscript", "torch-export"])
def test_serialized_runners_have_no_modes(tmp_path: Path, fmt: str) -> None:
    with pytest.raises(ValueError, match=f"the {fmt} runner has no runtime mode 'cast-bf16'"):
        make_runner(fmt, tmp_path, None, ["x"], RuntimeOptions(mode="cast-bf16"))


def _inductor_tmp_listing() -> dict[str, int]:
    """Every path under $TMPDIR/torchinductor_* with its mtime: new or touched entries show a leak."""
    listing = {}
    for top in Path(tempfile.gettempdir()).glob("torchinductor_*"):
        for p in [top, *top.rglob("*")]:
            try:
                listing[str(p)] = p.stat().st_mtime_ns
            except OSError:
                pass
    return listing


def test_compile_mode_in_a_child_keeps_its_cache_in_the_store(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """One torch.compile: correct to 1e-4 at two batch sizes, and nothing written to $TMPDIR/torchinductor_*."""
    from navbuild.execute.isolation import run_child, write_job
    from navbuild.model_io import TensorSpec
    from navbuild.steps.base import StepContext, params_to_dict
    from navbuild.steps.correctness import CheckCorrectness
    from navbuild.steps.reference import ReferenceFromSource

    spec = (TensorSpec("x", "float32", ("batch", 8), low=-1.0, high=1.0),)
    reference = tmp_path / "reference"
    reference.mkdir()
    ReferenceFromSource().run(ReferenceFromSource.Params(
        source_format="torch", factory=MLP, inputs=spec, outputs=("y",), count=3, seed=0, axes={},
        batch_sizes=(1, 3), threads=1), StepContext(inputs={}, out=reference))

    store = tmp_path / "store"
    staging = store / "tmp" / "job"
    (staging / "out").mkdir(parents=True)
    params = CheckCorrectness.Params(variant_format="torch", factory=MLP, outputs=(), batch_sizes=(1, 3),
                                     atol=1e-4, rtol=1e-4, runtime=RuntimeOptions(1, 1, "all", "compile"))
    write_job(staging, "correctness/torch-compile", "CheckCorrectness", params_to_dict(params),
              {"reference": reference}, Path(__file__).resolve().parents[3])
    for name in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):  # a user's own setting would win
        monkeypatch.delenv(name, raising=False)
    before = _inductor_tmp_listing()
    try:
        outcome = run_child(staging, Path(__file__).resolve().parents[3], timeout=300)
        assert outcome.ok, outcome.log_tail
        assert outcome.result["verdict"] == "pass", outcome.result
        cache = store / "compile-cache" / "inductor"
        assert any(cache.rglob("*.so")), "compiled kernels should be cached in the store"
        assert any((cache / "precompiled_headers").iterdir())  # headers follow the cache dir too
        assert _inductor_tmp_listing() == before
        assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ  # set for the child only
    finally:
        import shutil

        # precompiled headers are ~150 MB: do not leave them in pytest's kept tmp dirs
        shutil.rmtree(store / "compile-cache", ignore_errors=True)
