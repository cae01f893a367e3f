"""Plans for inputs navbuild takes instead of failing: TorchScript sources, fixed-dimension and
IR < 4 ONNX files (tiny real files; the planner reads only their headers)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from navbuild.cache.digest import DigestMemo
from navbuild.errors import RecipeError
from navbuild.planning.planner import expand
from navbuild.planning.status import leaf_digest, plan_statuses
from navbuild.recipe.schema import InputConfig, Recipe, SourceConfig
from tests.models import onnx_mlp


class _Memo:
    def digest(self, path: Path) -> str:
        return "d-" + Path(path).name


class _EmptyStore:
    memo = _Memo()

    def peek(self, key):
        return None


def _recipe(source: SourceConfig, **changes) -> Recipe:
    r = Recipe(name="t", source=source, inputs=[InputConfig(name="x", shape=["batch", 8])], outputs=["y"])
    for k, v in changes.items():
        setattr(r, k, v)
    return r


def _statuses(recipe: Recipe, cwd: Path) -> dict[str, str]:
    return {t.id: t.label for t in plan_statuses(expand(recipe, cwd), _EmptyStore(), None).targets}


# TorchScript sources ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["torch-compile", "torch-compile-bf16", "torch-int8-dynamic"])
def test_a_torchscript_source_makes_runtime_modes_it_cannot_run_unavailable_saying_why(tmp_path: Path,
                                                                                          name: str) -> None:
    (tmp_path / "m.pt").write_bytes(b"a TorchScript archive")
    recipe = _recipe(SourceConfig(torchscript="m.pt"), variants=["torch", name])
    plan = _statuses(recipe, tmp_path)
    assert plan["profile/torch"] == "missing"
    why = {"torch-compile": "torch.compile cannot compile a TorchScript module",
           "torch-compile-bf16": "torch.compile cannot compile a TorchScript module",
           "torch-int8-dynamic": "dynamic int8 quantizes nn.Linear modules, which a TorchScript module does not expose"}
    for tid in (f"correctness/{name}", f"profile/{name}"):
        assert plan[tid] == f"unavailable: {why[name]} (the source is m.pt)"


def test_a_torchscript_source_cannot_be_torch_exported_and_its_checks_say_so(tmp_path: Path) -> None:
    (tmp_path / "m.pt").write_bytes(b"a TorchScript archive")
    plan = _statuses(_recipe(SourceConfig(torchscript="m.pt"), formats=["torch-export", "onnx"]), tmp_path)
    for tid in ("torch-export", "correctness/torch-export", "profile/torch-export"):
        assert plan[tid] == "unavailable: torch.export cannot export a TorchScript module (the source is m.pt)"
    assert plan["onnx"] == "missing" and plan["correctness/onnx"] == "missing"


def test_an_exported_program_source_only_loses_dynamic_int8(tmp_path: Path) -> None:
    (tmp_path / "m.pt2").write_bytes(b"an exported program")
    plan = _statuses(_recipe(SourceConfig(torchscript="m.pt2"), variants=["torch-compile", "torch-int8-dynamic"]),
                     tmp_path)
    assert plan["profile/torch-compile"] == "missing"
    assert plan["profile/torch-int8-dynamic"].startswith(
        "unavailable: dynamic int8 quantizes nn.Linear modules, which an exported program does not have")


def test_a_torch_factory_source_keeps_every_variant(tmp_path: Path) -> None:
    recipe = _recipe(SourceConfig(torch="navbuild.examples.models:mlp"), variants=["torch-compile", "torch-export"])
    assert "unavailable" not in " ".join(_statuses(recipe, tmp_path).values())


# ONNX files: fixed sizes, weights listed as inputs ----------------------------------------


def _onnx_recipe(**changes) -> Recipe:
    return _recipe(SourceConfig(onnx="m.onnx"), **{"formats": ["onnx", "onnx-opt"], **changes})


@pytest.mark.parametrize("batch", [1, 2])
def test_an_onnx_file_with_a_fixed_batch_is_checked_calibrated_and_profiled_at_that_batch(tmp_path: Path,
                                                                                           batch: int) -> None:
    from navbuild.recipe.schema import ProfileConfig

    onnx_mlp(tmp_path / "m.onnx", batch=batch)
    recipe = _onnx_recipe(profile=ProfileConfig(batch_sizes=[1, 4, 8]), precisions=["fp32", "int8"])
    graph = expand(recipe, tmp_path)
    assert graph.targets["reference"].params.batch_sizes == (batch,)
    for tid in ("correctness/onnx", "correctness/onnx-opt", "profile/onnx", "profile/onnx-int8-static"):
        assert graph.targets[tid].params.batch_sizes == (batch,)
    static = graph.targets["onnx-int8-static"].params
    assert static.batch_size == batch and static.max_samples % batch == 0
    assert len(graph.notes) == 1
    assert re.fullmatch(rf"source.onnx: m.onnx fixes the batch at {batch}: checks, calibration and profiles run "
                        rf"at batch {batch} only \(profile.batch_sizes asked for 1, 4, 8\)", graph.notes[0])
    plan = plan_statuses(graph, _EmptyStore(), None)
    assert plan.notes == graph.notes
    assert recipe.profile.batch_sizes == [1, 4, 8]  # the recipe itself is left as written


def test_an_onnx_file_with_a_fixed_feature_axis_gets_samples_of_that_size(tmp_path: Path) -> None:
    onnx_mlp(tmp_path / "m.onnx")
    recipe = _onnx_recipe()
    recipe.inputs = [InputConfig(name="x", shape=["batch", "features"])]
    recipe.samples.axes = {"features": 5}
    graph = expand(recipe, tmp_path)
    assert graph.targets["reference"].params.axes == {"features": 8}
    assert graph.targets["reference"].params.batch_sizes == (1, 8)
    assert graph.notes == ["source.onnx: m.onnx fixes axis 'features' at 8: the samples use 8 "
                           "(samples.axes asked for 5)"]


def test_an_onnx_file_with_a_dynamic_batch_keeps_the_recipes_sizes(tmp_path: Path) -> None:
    onnx_mlp(tmp_path / "m.onnx")
    graph = expand(_onnx_recipe(), tmp_path)
    assert graph.targets["reference"].params.batch_sizes == (1, 8) and graph.notes == []
    assert "onnx-sanitized" not in graph.targets


def test_an_ir3_onnx_file_with_weights_as_inputs_is_sanitized_before_conversions(tmp_path: Path) -> None:
    onnx_mlp(tmp_path / "m.onnx", ir_version=3, opset=8, weights_as_inputs=True)
    graph = expand(_onnx_recipe(precisions=["fp32", "int8"], formats=["onnx", "onnx-opt", "openvino"]), tmp_path)
    assert graph.targets["onnx-sanitized"].inputs == {"onnx": "source"}
    for tid in ("onnx-opt", "onnx-int8-dynamic", "onnx-int8-static", "openvino"):
        assert graph.targets[tid].inputs["onnx"] == "onnx-sanitized"
    # the onnx variant itself runs the file as given
    assert graph.targets["correctness/onnx"].inputs["model"] == "source"
    assert graph.notes == ["source.onnx: m.onnx lists 3 weight(s) as graph inputs (IR version 3): conversions "
                           "read its normalised copy, target onnx-sanitized"]
    plan = {t.id: t.label for t in plan_statuses(graph, _EmptyStore(), None).targets}
    assert plan["onnx-sanitized"] == "missing"


def test_an_ir3_onnx_file_run_only_as_the_onnx_variant_needs_no_sanitizing(tmp_path: Path) -> None:
    onnx_mlp(tmp_path / "m.onnx", ir_version=3, opset=8, weights_as_inputs=True)
    graph = expand(_onnx_recipe(formats=["onnx"]), tmp_path)
    assert "onnx-sanitized" not in graph.targets and graph.notes == []


# ONNX files with external data -----------------------------------------------------------

def _with_external_weights(path: Path) -> None:
    import onnx

    onnx_mlp(path)
    proto = onnx.load(str(path))
    onnx.save(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location=path.name + ".data", size_threshold=0)


def test_an_onnx_files_external_weights_are_part_of_its_source_digest(tmp_path: Path) -> None:
    _with_external_weights(tmp_path / "m.onnx")
    graph = expand(_onnx_recipe(), tmp_path)
    source = graph.leaves["source"]
    assert source.files == (tmp_path / "m.onnx", tmp_path / "m.onnx.data")
    memo = DigestMemo(tmp_path / "memo.json")
    before = leaf_digest(source, memo)
    data = tmp_path / "m.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[0] ^= 0xFF  # retrained weights, same graph file
    data.write_bytes(bytes(raw))
    assert leaf_digest(expand(_onnx_recipe(), tmp_path).leaves["source"], memo) != before


def test_an_onnx_file_whose_external_weights_are_missing_is_a_recipe_error(tmp_path: Path) -> None:
    _with_external_weights(tmp_path / "m.onnx")
    (tmp_path / "m.onnx.data").unlink()
    with pytest.raises(RecipeError, match=r"source.onnx: 'm.onnx' keeps weights in external data file "
                                          r"'m.onnx.data', which does not exist"):
        expand(_onnx_recipe(), tmp_path)
