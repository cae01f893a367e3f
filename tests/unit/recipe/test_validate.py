"""Recipe validation: every problem reported at once, with key paths and suggestions."""

from pathlib import Path

import numpy as np
import pytest

from navbuild.errors import RecipeError
from navbuild.recipe.schema import InputConfig, Recipe, SourceConfig
from navbuild.recipe.validate import check_key_path, check_semantics, check_structure


def good_recipe(**changes) -> Recipe:
    r = Recipe(name="t", source=SourceConfig(torch="navbuild.examples.models:mlp"),
               inputs=[InputConfig(name="x", dtype="float32", shape=["batch", 64])], outputs=["y"])
    for k, v in changes.items():
        setattr(r, k, v)
    return r


def test_typo_in_recipe_suggests_the_right_key():
    with pytest.raises(RecipeError, match=r"onnx\.opsett: unknown key \(did you mean 'opset'\?\)"):
        check_structure({"onnx": {"opsett": 18}})


def test_wrong_types_are_named_with_key_paths():
    with pytest.raises(RecipeError) as err:
        check_structure({"profile": {"batch_sizes": [1, "eight"]}, "keep_going": "yes", "inputs": {"x": 1}})
    text = str(err.value)
    assert "profile.batch_sizes[1]: expected an integer, got str 'eight'" in text
    assert "keep_going: expected true or false" in text
    assert "inputs: expected a list" in text
    assert len(err.value.problems) == 3


def test_interpolations_and_free_mappings_pass_structure():
    check_structure({"source": {"kwargs": {"anything": [1, 2]}}, "name": "${oc.env:USER}", "defaults": []})


def test_override_key_paths():
    assert check_key_path("profile.batch_sizes") is None
    assert check_key_path("source.kwargs.hidden") is None
    assert "did you mean 'batch_sizes'" in check_key_path("profile.batch_size")
    assert check_key_path("formatz").startswith("formatz: unknown key")


def test_semantics_report_every_problem_at_once(tmp_path: Path):
    recipe = good_recipe(formats=["torch", "onnx-opts"], precisions=["fp33"])
    recipe.profile.batch_sizes = [1, 8, -4]
    recipe.runtime.intra_op_threads = 0
    with pytest.raises(RecipeError) as err:
        check_semantics(recipe, tmp_path)
    text = str(err.value)
    assert "profile.batch_sizes[2]: -4 must be >= 1" in text
    assert "formats[1]: unknown value 'onnx-opts' (did you mean 'onnx-opt'?)" in text
    assert "precisions[0]: unknown value 'fp33'" in text
    assert "runtime.intra_op_threads: 0 must be >= 1" in text
    assert len(err.value.problems) == 4


def test_inputs_need_batch_first_and_sizes_for_dynamic_axes(tmp_path: Path):
    recipe = good_recipe(inputs=[InputConfig(name="ids", dtype="int64", shape=[8, "seq"]),
                                 InputConfig(name="ids", dtype="int65", shape=["batch", 0])])
    with pytest.raises(RecipeError) as err:
        check_semantics(recipe, tmp_path)
    text = str(err.value)
    assert "inputs[0].shape[0]: the first axis must be 'batch'" in text
    assert "inputs[0].shape[1]: dynamic axis 'seq' needs a size in samples.axes.seq" in text
    assert "inputs[1].name: duplicate input name 'ids'" in text
    assert "inputs[1].dtype: unknown value 'int65' (did you mean 'int64'?)" in text
    assert "inputs[1].shape[1]: 0 must be >= 1" in text


def test_missing_module_and_function_are_found_without_importing(tmp_path: Path):
    with pytest.raises(RecipeError, match=r"source.torch: module 'no_such_pkg_xyz' not found"):
        check_semantics(good_recipe(source=SourceConfig(torch="no_such_pkg_xyz:f")), tmp_path)
    (tmp_path / "usermodels.py").write_text("import torch\n\ndef make_model():\n    return None\n")
    with pytest.raises(RecipeError, match=r"function 'make_modle' not found in module 'usermodels'.*did you mean 'make_model'"):
        check_semantics(good_recipe(source=SourceConfig(torch="usermodels:make_modle")), tmp_path)
    check_semantics(good_recipe(source=SourceConfig(torch="usermodels:make_model")), tmp_path)


def test_source_must_be_exactly_one_and_onnx_must_exist(tmp_path: Path):
    with pytest.raises(RecipeError, match="set exactly one of source.torch"):
        check_semantics(good_recipe(source=SourceConfig()), tmp_path)
    with pytest.raises(RecipeError, match=r"source.onnx: file 'missing.onnx' does not exist"):
        check_semantics(good_recipe(source=SourceConfig(onnx="missing.onnx"), formats=["onnx"]), tmp_path)
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(RecipeError, match="formats\\[0\\]: 'torch' needs a torch source"):
        check_semantics(good_recipe(source=SourceConfig(onnx="m.onnx"), formats=["torch"]), tmp_path)


def test_samples_file_is_checked_against_declared_inputs(tmp_path: Path):
    np.savez(tmp_path / "s.npz", x=np.zeros((4, 32), dtype=np.float64))
    recipe = good_recipe()
    recipe.samples.file = "s.npz"
    with pytest.raises(RecipeError) as err:
        check_semantics(recipe, tmp_path)
    text = str(err.value)
    assert "array 'x' has dtype float64, inputs[0].dtype declares float32" in text
    assert "array 'x' dim 1 is 32, inputs[0].shape[1] declares 64" in text


def test_select_batch_size_must_be_profiled(tmp_path: Path):
    recipe = good_recipe()
    recipe.select.batch_size = 3
    with pytest.raises(RecipeError, match=r"select.batch_size: 3 is not one of profile.batch_sizes \[1, 8\]"):
        check_semantics(recipe, tmp_path)


def test_openvino_source_is_a_choice_and_torch_needs_a_torch_source(tmp_path: Path):
    from navbuild.recipe.schema import OpenVinoConfig

    with pytest.raises(RecipeError, match=r"openvino\.source: unknown value 'toch' \(did you mean 'torch'\?\)"):
        check_semantics(good_recipe(openvino=OpenVinoConfig(source="toch")), tmp_path)
    check_semantics(good_recipe(openvino=OpenVinoConfig(source="torch")), tmp_path)
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(RecipeError, match=r"openvino\.source: 'torch' converts the torch module, but this "
                                          r"recipe's source is an ONNX file; use 'onnx'"):
        check_semantics(good_recipe(source=SourceConfig(onnx="m.onnx"), formats=["openvino"],
                                    openvino=OpenVinoConfig(source="torch")), tmp_path)


def test_openvino_preset_is_a_choice_auto_included(tmp_path: Path):
    from navbuild.recipe.schema import OpenVinoConfig, OpenVinoQuantConfig

    for preset in ("auto", "performance", "mixed"):
        check_semantics(good_recipe(openvino=OpenVinoConfig(quantization=OpenVinoQuantConfig(preset=preset))), tmp_path)
    with pytest.raises(RecipeError, match=r"openvino\.quantization\.preset: unknown value 'mixd' \(did you mean 'mixed'\?\)"):
        check_semantics(good_recipe(openvino=OpenVinoConfig(quantization=OpenVinoQuantConfig(preset="mixd"))), tmp_path)


def test_max_background_load_must_not_be_negative(tmp_path: Path):
    recipe = good_recipe()
    recipe.profile.max_background_load = -1.0
    with pytest.raises(RecipeError, match=r"profile.max_background_load: -1.0 must be >= 0"):
        check_semantics(recipe, tmp_path)
    recipe.profile.max_background_load = 0.0  # strict, but allowed: anything busy is provisional
    check_semantics(recipe, tmp_path)
