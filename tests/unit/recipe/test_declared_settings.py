"""Every recipe setting's choices and doc come from its one declaration: validation and the reference."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from navbuild.errors import RecipeError
from navbuild.recipe.reference import describe, reference
from navbuild.recipe.schema import InputConfig, Recipe, SourceConfig
from navbuild.recipe.validate import check_semantics
from navbuild.settings import choices_of


def _declared_choices(cls: type = Recipe, prefix: str = "") -> list[tuple[str, tuple]]:
    """(key path, choices) of every field of the schema that declares choices; ``[0]`` for list items."""
    found = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        inner = hint if dataclasses.is_dataclass(hint) else (args[0] if len(args) == 1 else None)
        if choices_of(cls, f.name):
            found.append((f"{prefix}{f.name}", choices_of(cls, f.name)))
        elif inner is not None and dataclasses.is_dataclass(inner):
            found += _declared_choices(inner, f"{prefix}{f.name}{'[0]' if typing.get_origin(hint) is list else ''}.")
    return found


CHOICES = _declared_choices()
#: settings whose declaration words its own message (kept as it always read)
OWN_WORDING = {"openvino.quantization.model_type": "'{typo}' must be null or 'transformer'"}


def _recipe() -> Recipe:
    r = Recipe(name="t", source=SourceConfig(torch="navbuild.examples.models:mlp"),
               inputs=[InputConfig(name="x", dtype="float32", shape=["batch", 64])], outputs=["y"])
    r.triton.enabled = True
    r.formats = ["onnx"]
    return r


def _at(obj: object, path: str) -> tuple[object, str]:
    """The object holding the last key of ``path`` (e.g. ``inputs[0].dtype``) and that key."""
    *parents, last = path.split(".")
    for part in parents:
        name, _, index = part.partition("[")
        obj = getattr(obj, name)
        if index:
            obj = obj[int(index.rstrip("]"))]
    return obj, last


def test_the_schema_declares_the_choices_each_section_checks():
    paths = {p for p, _ in CHOICES}
    assert {"onnx.exporter", "onnx_opt.level", "onnx_opt.fusion", "torchscript.method", "inputs[0].dtype",
            "quantization.dynamic.weight_type", "quantization.static.weight_type",
            "quantization.static.activation_type", "quantization.static.calibration", "openvino.source",
            "openvino.quantization.preset", "openvino.weight_compression", "runtime.graph_level",
            "select.objective", "select.percentile", "triton.objective", "triton.protocols",
            "triton.search.instance_kind"} <= paths


@pytest.mark.parametrize("path, choices", CHOICES, ids=[p for p, _ in CHOICES])
def test_a_typo_in_any_declared_choice_is_reported_with_did_you_mean(path, choices):
    r = _recipe()
    typo = choices[-1][:-1] + "~"
    holder, key = _at(r, path)
    is_list = isinstance(getattr(holder, key), list)
    setattr(holder, key, [typo] if is_list else typo)
    with pytest.raises(RecipeError) as err:
        check_semantics(r, Path.cwd())
    where = path + "[0]" if is_list else path
    expected = OWN_WORDING.get(path, "unknown value '{typo}' (did you mean '{best}'?); choose one of {choices}").format(
        typo=typo, best=choices[-1], choices=", ".join(choices))
    expected = f"{where}: {expected}"
    assert expected in err.value.problems, err.value.problems


def test_a_switched_off_triton_section_is_not_checked():
    r = _recipe()
    r.triton.enabled = False
    r.triton.objective = "fastest"
    r.triton.top = 0
    check_semantics(r, Path.cwd())


def test_the_reference_names_every_key_with_its_type_default_and_choices():
    rows = dict(reference())
    for path, choices in CHOICES:
        key = path.replace("[0]", "[]")
        assert key in rows and f"one of {', '.join(choices)}" in rows[key], key
    assert rows["onnx.opset"].startswith("int = 17; >= 7 and <= 25")
    assert rows["quantization.static.max_samples"] == "int = 64; >= 1; calibration rows taken from the reference samples"
    assert rows["openvino.quantization.preset"].startswith("str = 'auto'; one of auto, performance, mixed")


def _every_key(cls: type = Recipe, prefix: str = "") -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        keys.append(prefix + f.name)
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        origin = typing.get_origin(hint)
        if dataclasses.is_dataclass(hint):
            keys += _every_key(hint, f"{prefix}{f.name}.")
        elif origin is list and args and dataclasses.is_dataclass(args[0]):
            keys += _every_key(args[0], f"{prefix}{f.name}[].")
        elif origin is dict and len(args) == 2 and dataclasses.is_dataclass(args[1]):
            keys += _every_key(args[1], f"{prefix}{f.name}.<name>.")
        elif origin is typing.Union and len(args) == 1 and dataclasses.is_dataclass(args[0]):
            keys += _every_key(args[0], f"{prefix}{f.name}.")
    return keys


def test_the_reference_has_one_line_per_key():
    text = describe()
    lines = text.splitlines()
    assert [line.split(":")[0] for line in lines] == _every_key()
    assert "onnx_opt.fusion: str | null = null; one of bert, bart" in text
