"""navbuild.settings: one declaration per setting gives its check, its doc and its step's Params."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass
from typing import Dict, List, Optional

import pytest

from navbuild.settings import (check_choice, check_settings, choices_of, describe_setting, doc_of, params_of,
                               regex_problem, setting, unknown)
from navbuild.steps.base import params_from_dict, params_to_dict


@dataclass
class Leaf:
    """A toy section."""

    mode: str = setting("fast", choices=("fast", "exact"), doc="how to run")
    count: int = setting(2, minimum=1)
    ratio: float = setting(0.5, minimum=0, maximum=1)
    timeout: Optional[float] = setting(None, above=0, note="or null for none")
    heads: int = setting(0, minimum=0, note="0 = detect")
    tags: List[str] = setting(factory=list, choices=("a", "b"))
    sizes: Dict[str, int] = setting(factory=dict, minimum=1)
    free: str = "anything"


@dataclass
class Root:
    leaf: Leaf = setting(factory=Leaf)
    many: List[Leaf] = setting(factory=list)
    off: Leaf = setting(factory=Leaf)


@dataclass(frozen=True)
class Upstream:
    model: str


LeafParams = params_of(Leaf, "LeafParams", __name__, bases=(Upstream,), only=("mode", "count", "tags"),
                       rename={"count": "n"})


def test_a_setting_carries_its_choices_and_doc_and_keeps_its_default():
    assert choices_of(Leaf, "mode") == ("fast", "exact") and doc_of(Leaf, "mode") == "how to run"
    assert choices_of(Leaf, "free") == () and Leaf().mode == "fast" and Leaf().tags == []
    assert Leaf().tags is not Leaf().tags  # a factory, not a shared list


def test_a_bad_choice_is_named_with_its_path_and_a_suggestion():
    assert check_settings(Root(leaf=Leaf(mode="fats"))) == [
        "leaf.mode: unknown value 'fats' (did you mean 'fast'?); choose one of fast, exact"]
    assert check_choice("zzz", ("fast", "exact"), "x") == "x: unknown value 'zzz'; choose one of fast, exact"
    assert unknown("fsat", ("fast",), "x", word="key") == "x: unknown key 'fsat' (did you mean 'fast'?); choose one of fast"


def test_every_item_of_lists_and_mappings_is_checked_and_sections_are_entered():
    problems = check_settings(Root(leaf=Leaf(tags=["a", "c"], sizes={"seq": 0}), many=[Leaf(), Leaf(count=0)]))
    assert problems == ["leaf.tags[1]: unknown value 'c'; choose one of a, b", "leaf.sizes.seq: 0 must be >= 1",
                        "many[1].count: 0 must be >= 1"]


@pytest.mark.parametrize("change, expected", [
    ({"count": 0}, "leaf.count: 0 must be >= 1"),
    ({"ratio": 1.5}, "leaf.ratio: 1.5 must be between 0 and 1"),
    ({"timeout": 0.0}, "leaf.timeout: 0.0 must be > 0 (or null for none)"),
    ({"heads": -1}, "leaf.heads: -1 must be >= 0 (0 = detect)"),
])
def test_bounds_are_checked_with_the_usual_wording(change, expected):
    assert check_settings(Root(leaf=Leaf(**change))) == [expected]


def test_null_values_and_skipped_sections_are_not_checked():
    assert check_settings(Root(leaf=Leaf(timeout=None))) == []
    assert check_settings(Root(off=Leaf(mode="bad")), skip=("off",)) == []
    assert check_settings(Root(off=Leaf(mode="bad"))) != []


def test_the_doc_of_a_setting_names_type_default_choices_bounds():
    fields = {f.name: f for f in dataclasses.fields(Leaf)}
    assert describe_setting(fields["mode"], str) == "str = 'fast'; one of fast, exact; how to run"
    assert describe_setting(fields["heads"], int) == "int = 0; >= 0 (0 = detect)"
    assert describe_setting(fields["timeout"], Optional[float]) == "float | null = null; > 0 (or null for none)"
    assert describe_setting(fields["tags"], List[str]) == "list[str] = []; one of a, b"


def test_params_are_frozen_and_made_of_the_section_fields_after_their_bases():
    names = [f.name for f in dataclasses.fields(LeafParams)]
    assert names == ["model", "mode", "n", "tags"]
    assert LeafParams.section is Leaf and LeafParams.section_fields == {"mode": "mode", "n": "count", "tags": "tags"}
    p = LeafParams(model="m")
    assert (p.mode, p.n, p.tags) == ("fast", 2, ())  # the section's defaults, lists as tuples
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.mode = "exact"  # type: ignore[misc]
    assert choices_of(LeafParams, "mode") == ("fast", "exact")


def test_params_are_built_from_a_section_and_what_the_planner_resolves():
    p = LeafParams.from_section(Leaf(mode="exact", count=3, tags=["a"]), model="m")
    assert p == LeafParams(model="m", mode="exact", n=3, tags=("a",))
    assert LeafParams.from_section(Leaf(), model="m", mode="exact").mode == "exact"  # an explicit resolution wins
    assert params_from_dict(LeafParams, params_to_dict(p)) == p
    assert pickle.loads(pickle.dumps(p)) == p  # child processes get them by name


@dataclass
class Patterns:
    exclude: List[str] = setting(factory=list, check=regex_problem)
    spread: float = setting(0.1, minimum=0, check=lambda v: None if 0 < v < 1 else f"{v} must be between 0 and 1")


def test_a_declared_check_speaks_for_the_field_with_its_path():
    assert check_settings(Patterns(exclude=["ok", "(x"], spread=0.0)) == [
        "exclude[1]: '(x' is not a regular expression (missing ), unterminated subpattern at position 0)",
        "spread: 0.0 must be between 0 and 1"]  # the check replaces the bound's own message
