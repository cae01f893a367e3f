"""Each conversion step's Params are made from its recipe section: the same fields, defaults and choices."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from navbuild.recipe.schema import Recipe
from navbuild.steps.base import load_step

#: step -> the recipe key of the section its Params are made from
SECTIONS = {
    "OnnxFromTorch": "onnx",
    "OrtOptimizedFromOnnx": "onnx_opt",
    "TorchScriptFromTorch": "torchscript",
    "OrtQuantizedDynamic": "quantization.dynamic",
    "OrtQuantizedStatic": "quantization.static",
    "OnnxFp16FromOnnx": "fp16",
    "OpenVinoQuantized": "openvino.quantization",
    "OpenVinoWeightCompressed": "openvino",
    "ProfilePerformance": "profile",
    "CompareFinalists": "profile",
}
#: steps that read only part of their section
PARTIAL = {"ProfilePerformance", "OpenVinoWeightCompressed", "CompareFinalists"}


def _section_class(key: str) -> type:
    cls = Recipe
    for part in key.split("."):
        hint = typing.get_type_hints(cls)[part]
        cls = next((a for a in typing.get_args(hint) if a is not type(None)), hint)  # Optional[X] -> X
    return cls


@pytest.mark.parametrize("step_name, key", SECTIONS.items())
def test_params_hold_the_fields_of_the_recipe_section(step_name, key):
    params = load_step(step_name).Params
    section = _section_class(key)
    assert params.section is section  # the class the recipe itself declares
    own = {f.name: f for f in dataclasses.fields(params)}
    declared = {f.name: f for f in dataclasses.fields(section)}
    for name, from_section in params.section_fields.items():
        assert from_section in declared and name in own
        assert own[name].metadata == declared[from_section].metadata  # choices and doc
        default = declared[from_section].default
        if default is dataclasses.MISSING:
            default = tuple(declared[from_section].default_factory())
        assert own[name].default == default


@pytest.mark.parametrize("step_name, key", [(s, k) for s, k in SECTIONS.items() if s not in PARTIAL])
def test_a_conversion_reads_its_whole_section(step_name, key):
    params = load_step(step_name).Params
    assert sorted(params.section_fields.values()) == sorted(f.name for f in dataclasses.fields(params.section))


def test_the_partial_sections_say_which_fields():
    weights = load_step("OpenVinoWeightCompressed").Params
    assert weights.section_fields == {"mode": "weight_compression"}
    profile = load_step("ProfilePerformance").Params
    # the finalists' settings and the measurement policy are not a profile's params
    assert not {"finalists", "max_background_load", "remeasure"} & set(profile.section_fields.values())
    finalists = load_step("CompareFinalists").Params
    assert finalists.section_fields == {"rounds": "finalist_rounds", "iters": "finalist_iters", "pin_cores": "pin_cores",
                                        "warmup": "finalist_warmup_iters"}


def test_a_user_metric_is_passed_to_its_check_as_declared():
    from navbuild.steps.correctness import MetricSpec

    assert MetricSpec.section is _section_class("correctness.metric")
    assert [f.name for f in dataclasses.fields(MetricSpec)] == [f.name for f in dataclasses.fields(MetricSpec.section)]
    with pytest.raises(TypeError):
        MetricSpec()  # function and name are required, as in the recipe
