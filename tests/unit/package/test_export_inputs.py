"""Bad input through the Python API: one clear NavbuildError (exit code 2) naming what and where,
the recipe validated before anything is written, ragged samples refused."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

import navbuild
from navbuild.errors import InputError, RecipeError
from navbuild.package.samples_infer import infer_samples


@pytest.fixture
def places(tmp_path, monkeypatch) -> dict[str, Path]:
    """A private cache, working folder and temp folder: every place an export could write to."""
    out = {name: tmp_path / name for name in ("cache", "work", "systmp")}
    out["work"].mkdir()
    out["systmp"].mkdir()
    monkeypatch.setenv("NAVBUILD_CACHE_DIR", str(out["cache"]))
    monkeypatch.setattr(tempfile, "tempdir", str(out["systmp"]))
    monkeypatch.chdir(out["work"])
    return out


def nothing_written(places: dict[str, Path]) -> None:
    assert not places["cache"].exists()
    assert not list(places["work"].iterdir()) and not list(places["systmp"].iterdir())


@pytest.mark.parametrize("call, match", [
    (lambda: navbuild.build(42), r"(?s)navbuild\.build has 1 problem.*recipe: expected a recipe name.*got int 42"),
    (lambda: navbuild.plan(None), r"(?s)navbuild\.plan has 1 problem.*recipe: expected .* got NoneType None"),
    (lambda: navbuild.build("mlp", "onnx.opset=18"), r"overrides: expected a list of 'key=value' strings, got str"),
    (lambda: navbuild.build({"name": "x"}, cwd=3), r"cwd: expected a folder path, got int 3"),
])
def test_build_and_plan_refuse_arguments_of_the_wrong_kind(places, call, match):
    with pytest.raises(RecipeError, match=match) as info:
        call()
    assert info.value.exit_code == 2
    assert not places["cache"].exists()


def test_load_refuses_a_path_of_the_wrong_kind():
    with pytest.raises(InputError, match=r"navbuild\.load: path: expected a \.nav file path, got int 42") as info:
        navbuild.load(42)
    assert info.value.exit_code == 2


def test_export_refuses_what_is_not_a_model(places):
    with pytest.raises(InputError, match=r"navbuild\.export: model: expected a torch\.nn\.Module, got str 'not a model'") as info:
        navbuild.export("not a model", {"input": torch.zeros(2, 8)})
    assert info.value.exit_code == 2
    nothing_written(places)


@pytest.mark.parametrize("kwargs, match", [
    ({"formats": "onnx"}, r"formats: expected a list of strings, got str 'onnx'"),
    ({"path": "model.zip"}, r"path: expected a file name ending in \.nav"),
    ({"max_samples": 0}, r"max_samples: expected an integer >= 1"),
    ({"recipe": 7}, r"recipe: expected a mapping of recipe keys or a Recipe, got int 7"),
])
def test_export_refuses_arguments_of_the_wrong_kind(places, kwargs, match):
    with pytest.raises(InputError, match=match):
        navbuild.export(torch.nn.Linear(8, 4), {"input": torch.zeros(2, 8)}, **kwargs)
    nothing_written(places)


def test_export_validates_the_recipe_before_writing_anything(places):
    with pytest.raises(RecipeError, match=r"(?s)navbuild\.export recipe has 1 problem.*formats\[1\]: unknown value 'nope'") as info:
        navbuild.export(torch.nn.Linear(8, 4), {"input": torch.zeros(2, 8)}, formats=["onnx", "nope"])
    assert info.value.exit_code == 2
    nothing_written(places)
    with pytest.raises(RecipeError, match=r"profile\.batch_sizes\[0\]: -1 must be >= 1"):
        navbuild.export(torch.nn.Linear(8, 4), {"input": torch.zeros(2, 8)}, recipe={"profile": {"batch_sizes": [-1]}})
    nothing_written(places)


def test_export_refuses_a_model_that_fails_on_its_own_samples(places):
    with pytest.raises(InputError, match=r"model: fails on samples\[0\] \(RuntimeError: mat1 and mat2"):
        navbuild.export(torch.nn.Linear(64, 4), {"input": torch.zeros(2, 32)})
    nothing_written(places)


def test_export_refuses_ragged_samples(places):
    batches = [torch.randn(4, 64), torch.randn(4, 64), torch.randn(4, 32)]
    with pytest.raises(InputError, match=r"samples\[2\]: input 'input' has shape \[4, 32\] where samples\[0\] has "
                                         r"\[4, 64\], and the model fails on it .*ragged samples are refused") as info:
        navbuild.export(torch.nn.Linear(64, 4), batches)
    assert info.value.exit_code == 2
    nothing_written(places)


class MeanOverSequence(torch.nn.Module):
    def forward(self, ids):
        return ids.float().mean(dim=1, keepdim=True)


def test_a_dimension_the_model_takes_at_any_size_stays_dynamic():
    model = MeanOverSequence()
    batches = [torch.ones(2, 5, dtype=torch.int64), torch.ones(2, 7, dtype=torch.int64)]
    from navbuild.export_package import _fails_on

    arrays, specs, axes = infer_samples(batches, model, accepts=lambda row: _fails_on(model, row))
    assert specs[0]["shape"] == ["batch", "ids_dim1"] and axes == {"ids_dim1": 5}
    refused = lambda row: "ValueError: no"  # noqa: E731 - a model that takes no other size
    with pytest.raises(InputError, match=r"samples\[1\]: input 'ids' has shape \[2, 7\] .* \(ValueError: no\)"):
        infer_samples(batches, model, accepts=refused)
