"""TensorRT optimization profiles derived from the recipe: the batch and every dynamic axis from the sizes navbuild runs."""

from __future__ import annotations

import pytest

from navbuild.errors import RecipeError
from navbuild.formats.tensorrt_profiles import (EngineProfile, ShapeRange, derive_profiles, profile_for, recipe_sizes)
from navbuild.formats.common import tensor_specs
from navbuild.recipe.schema import InputConfig, Recipe, SourceConfig


def recipe(batch_sizes=(1, 8, 32), **inputs) -> Recipe:
    r = Recipe(name="t", source=SourceConfig(torch="navbuild.examples.models:mlp"),
               inputs=[InputConfig(name="x", shape=["batch", 64])], outputs=["y"])
    r.profile.batch_sizes = list(batch_sizes)
    return r


def bert_like() -> Recipe:
    r = recipe(batch_sizes=(1, 4))
    r.inputs = [InputConfig(name="input_ids", dtype="int64", shape=["batch", "seq"]),
                InputConfig(name="mask", dtype="int64", shape=["batch", "seq"])]
    r.samples.axes = {"seq": 128}
    return r


def test_one_profile_covers_every_batch_navbuild_runs_tuned_for_the_largest_profiled() -> None:
    r = recipe()
    sizes = recipe_sizes(r)
    # profiled 1, 8, 32; probes: batch 3 (1 is profiled already) and their rows (3)
    assert sizes.batches == (1, 3, 8, 32) and sizes.opt_batch == 32
    (profile,) = derive_profiles(tensor_specs(r), sizes, "single")
    assert profile == EngineProfile((ShapeRange("x", (1, 64), (32, 64), (32, 64)),))
    assert profile.max_batch == 32


def test_a_dynamic_axis_spans_its_probe_sizes_and_is_tuned_for_the_samples_size() -> None:
    r = bert_like()
    (profile,) = derive_profiles(tensor_specs(r), recipe_sizes(r), "single")
    # seq: the samples' 128 and the automatic probes 65 and 193; batch: 1, 3 (probe), 4
    assert profile.inputs == (ShapeRange("input_ids", (1, 65), (4, 128), (4, 193)),
                              ShapeRange("mask", (1, 65), (4, 128), (4, 193)))
    r.correctness.probe.axes = {"seq": [16, 512]}
    (profile,) = derive_profiles(tensor_specs(r), recipe_sizes(r), "single")
    assert profile.inputs[0] == ShapeRange("input_ids", (1, 16), (4, 128), (4, 512))


def test_without_probes_only_the_profiled_sizes_and_the_samples_are_covered() -> None:
    r = bert_like()
    r.correctness.probe.enabled = False
    (profile,) = derive_profiles(tensor_specs(r), recipe_sizes(r), "single")
    assert profile.inputs[0] == ShapeRange("input_ids", (1, 128), (4, 128), (4, 128))


def test_per_batch_size_makes_a_shape_bucket_per_profiled_batch_that_together_cover_every_batch() -> None:
    r = recipe(batch_sizes=(1, 8, 32))
    r.correctness.probe.batch_sizes = [3, 40]
    profiles = derive_profiles(tensor_specs(r), recipe_sizes(r), "per_batch_size")
    assert [(p.inputs[0].min[0], p.inputs[0].opt[0], p.inputs[0].max[0]) for p in profiles] == [
        (1, 1, 1), (2, 8, 8), (9, 32, 40)]
    for batch in (1, 2, 3, 8, 9, 32, 40):  # every size is served, by exactly one bucket
        assert sum(p.covers({"x": (batch, 64)}) for p in profiles) == 1
    assert profile_for(profiles, {"x": (3, 64)}) == 1 and profile_for(profiles, {"x": (40, 64)}) == 2


def test_a_shape_no_profile_covers_is_named_with_the_profiles_and_how_to_add_it() -> None:
    r = recipe(batch_sizes=(8,))
    profiles = derive_profiles(tensor_specs(r), recipe_sizes(r), "single")
    with pytest.raises(ValueError, match=r"no optimization profile of the engine covers x\[64, 64\].*"
                                         r"#0 x\[1, 64\]\.\.\[8, 64\] opt \[8, 64\].*profile.batch_sizes"):
        profile_for(profiles, {"x": (64, 64)})


def test_an_axis_whose_size_the_plan_cannot_know_is_a_recipe_error_naming_the_setting() -> None:
    r = bert_like()
    r.samples.axes = {}
    with pytest.raises(RecipeError, match=r"axis 'seq' is not known at plan time.*set samples.axes.seq"):
        recipe_sizes(r)


def test_an_unknown_profiles_mode_is_refused() -> None:
    r = recipe()
    with pytest.raises(ValueError, match="tensorrt.profiles: 'buckets' is not one of single, per_batch_size"):
        derive_profiles(tensor_specs(r), recipe_sizes(r), "buckets")
