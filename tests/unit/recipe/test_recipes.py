"""Every recipe shipped in recipes/ composes, validates and plans; overrides and names resolve."""

from pathlib import Path

import pytest

from navbuild.api import load_recipe, prepare
from navbuild.errors import RecipeError
from navbuild.planning.status import plan_statuses
from navbuild.recipe.load import find_recipe, package_data_dir

RECIPES = sorted(package_data_dir("recipes").glob("*.yaml"))


def test_the_packaged_recipes_are_the_documented_ones():
    assert {p.stem for p in RECIPES} >= {"mlp", "minilm", "bert"}


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_composes_validates_and_plans(path: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("NAVBUILD_CACHE_DIR", str(tmp_path / "cache"))
    recipe, found = load_recipe(path.stem, cwd=tmp_path)
    assert found == path and recipe.name == path.stem
    prep = prepare(recipe, found, cwd=tmp_path)
    plan = plan_statuses(prep.graph, prep.store, None)
    ids = [t.id for t in plan.targets]
    assert "reference" in ids and any(i.startswith("profile/") for i in ids)
    assert all(t.status in ("missing", "unavailable") for t in plan.targets)
    assert prep.build_dir == (tmp_path / "build" / path.stem).resolve()


#: overrides whose outcome (a recipe, or the error's text) both ways of composing must agree on
OVERRIDES = [[], ["onnx.opset=18", "profile.batch_sizes=[1,2]"], ["onnx.opset=abc"], ["~onnx"],
             ["+onnx.opset=16"], ["++onnx.opset=16"], ["source.kwargs.hidden=8"], ["samples.count=x"]]


@pytest.mark.parametrize("overrides", OVERRIDES, ids=lambda o: " ".join(o) or "none")
@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_merging_over_the_schema_gives_what_hydra_composes(path: Path, overrides: list[str], tmp_path: Path):
    """A plain recipe is merged over the schema without Hydra's composition; a hydra.* override
    sends it through Hydra's compose API: the recipe, or the error, is the same either way."""
    def outcome(extra: list[str]):
        try:
            return load_recipe(path.stem, [*overrides, *extra], cwd=tmp_path)
        except RecipeError as err:
            return str(err)

    assert outcome([]) == outcome(["hydra.job.chdir=false"])


def test_a_recipe_by_path_and_with_extension(tmp_path: Path):
    assert find_recipe("mlp.yaml", tmp_path).name == "mlp.yaml"
    target = tmp_path / "elsewhere" / "mine.yaml"
    target.parent.mkdir()
    target.write_text((package_data_dir("recipes") / "mlp.yaml").read_text())
    recipe, found = load_recipe("elsewhere/mine.yaml", cwd=tmp_path)
    assert recipe.name == "mine" and found == target


def test_overrides_reach_the_recipe(tmp_path: Path):
    recipe, _ = load_recipe("mlp", ["onnx.opset=18", "profile.batch_sizes=[1,4]", "formats=[onnx]"], cwd=tmp_path)
    assert recipe.onnx.opset == 18 and recipe.profile.batch_sizes == [1, 4] and recipe.formats == ["onnx"]


def test_a_bad_override_value_is_a_recipe_error(tmp_path: Path):
    with pytest.raises(RecipeError, match="onnx.opset") as err:
        load_recipe("mlp", ["onnx.opset=seventeen"], cwd=tmp_path)
    # one problem, named by key path and override, without OmegaConf's template or Python's int() error
    assert err.value.problems == ["onnx.opset: Value 'seventeen' of type 'str' could not be converted to Integer "
                                  "(override onnx.opset=seventeen)"]
    with pytest.raises(RecipeError, match=r"several recipes given"):
        load_recipe("mlp,bert", cwd=tmp_path)
