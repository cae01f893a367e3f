"""Plan-time status of timed targets: a provisional measurement is stale, --remeasure re-runs only
timed targets, and neither the threshold nor remeasure enters a key (pure planner logic, fake store)."""

from __future__ import annotations

from pathlib import Path

from navbuild.planning.planner import expand
from navbuild.planning.status import plan_statuses
from navbuild.recipe.schema import InputConfig, Recipe, SourceConfig

PROVISIONAL = {"reason": "background load 1.8 cores during profile"}


class FakeMemo:
    def digest(self, path):
        return "d-" + str(path)


class FakeStore:
    """Every key is present; results are given per key (what the entry's meta.json holds)."""

    def __init__(self, results=None):
        self.memo = FakeMemo()
        self.results = results or {}

    def peek(self, key):
        return {"digest": "out-" + key[:8], "result": self.results.get(key, {})}


def recipe(**profile) -> Recipe:
    r = Recipe(name="mlp", source=SourceConfig(torch="tests.models:tiny_mlp"),
               inputs=[InputConfig(name="x", shape=["batch", 8])], outputs=["y"])
    for k, v in profile.items():
        setattr(r.profile, k, v)
    return r


def statuses(r: Recipe, store: FakeStore):
    return plan_statuses(expand(r, Path(".")), store, previous=None).by_id()


def test_a_provisional_profile_is_stale_and_nothing_else_is():
    plan = statuses(recipe(), FakeStore())
    assert {t.status for t in plan.values()} == {"cached"}
    store = FakeStore({plan["profile/onnx"].key: {"batches": {}, "provisional": PROVISIONAL}})
    again = statuses(recipe(), store)
    assert again["profile/onnx"].label == "stale: provisional measurement (background load 1.8 cores during profile)"
    assert {t for t, p in again.items() if p.status != "cached"} == {"profile/onnx"}


def test_a_provisional_conversion_result_is_served_all_the_same():
    # only timed steps are measured again: a conversion's result can never make it stale
    plan = statuses(recipe(), FakeStore())
    store = FakeStore({plan["onnx"].key: {"provisional": PROVISIONAL}})
    assert statuses(recipe(), store)["onnx"].status == "cached"


def test_remeasure_makes_only_timed_targets_stale():
    plan = statuses(recipe(remeasure=True), FakeStore())
    stale = {t for t, p in plan.items() if p.status == "stale"}
    assert stale == {"profile/torch", "profile/onnx", "profile/onnx-opt"}
    assert {p.reason for t, p in plan.items() if t in stale} == {"remeasure requested"}


def test_threshold_and_remeasure_are_in_no_key():
    base = {t: p.key for t, p in statuses(recipe(), FakeStore()).items()}
    other = {t: p.key for t, p in statuses(recipe(max_background_load=3.0, remeasure=True), FakeStore()).items()}
    assert base == other and all(base.values())
