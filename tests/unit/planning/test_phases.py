"""Later phases as generators of the graph: when they expand, in a plan (from the cache) and in the executor's loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from navbuild.execute.scheduler import schedule
from navbuild.planning.graph import Expansion, Generator, Graph
from navbuild.planning.outcome import BUILT, FAILED, TargetOutcome
from navbuild.planning.phases import declare_later_phases
from navbuild.planning.planner import expand
from navbuild.planning.status import plan_statuses
from navbuild.planning.target import Leaf, Target
from navbuild.recipe.schema import InputConfig, Recipe, SourceConfig
from navbuild.report.events import CollectingReporter

PROFILES = ["profile/torch", "profile/onnx", "profile/onnx-opt"]


class FakeMemo:
    def digest(self, path: Path) -> str:
        return "d-" + Path(path).name


class FakeStore:
    """Entries are the keys in ``results``; a key's output digest derives from it."""

    def __init__(self) -> None:
        self.memo = FakeMemo()
        self.results: dict[str, dict] = {}

    def peek(self, key: str) -> dict | None:
        if key not in self.results:
            return None
        return {"digest": "out-" + key[:8], "result": self.results[key]}


def recipe(**changes) -> Recipe:
    r = Recipe(name="t", source=SourceConfig(torch="navbuild.examples.models:mlp"),
               inputs=[InputConfig(name="x", shape=["batch", 64])], outputs=["y"])
    for k, v in changes.items():
        setattr(r, k, v)
    return r


def planned(r: Recipe) -> Graph:
    graph = expand(r, Path("."))
    declare_later_phases(graph, r, Path("."))
    return graph


def figures(latency_ms: float) -> dict:
    return {"throughput": 1000 / latency_ms, "latency_ms": {"p50": latency_ms, "p90": latency_ms,
                                                           "p99": latency_ms}, "spread": 0.0}


def result_of(tid: str) -> dict:
    """A plausible cached result: checks pass, onnx-opt profiles fastest, the finalists confirm it."""
    if tid.startswith("correctness/"):
        return {"verdict": "pass"}
    if tid.startswith("profile/"):
        ms = {"profile/torch": 3.0, "profile/onnx": 2.0, "profile/onnx-opt": 1.0}[tid]
        return {"batches": {"1": figures(ms), "8": figures(ms * 4)}}
    if tid == "finalists":
        return {"batch_size": 8, "rounds": 3, "variants": {
            "onnx-opt": {"latency_ms": 4.0, "throughput": 2000.0, "rounds_ms": [4.0, 4.0, 4.0], "spread": 0.0},
            "onnx": {"latency_ms": 8.0, "throughput": 1000.0, "rounds_ms": [8.0, 8.0, 8.0], "spread": 0.0}}}
    return {}


def cache_everything(graph: Graph, store: FakeStore, results=result_of) -> object:
    """Put every target the plan can key into the store, until the plan expands no more."""
    while True:
        plan = plan_statuses(graph, store, None)
        missing = [t for t in plan.targets if t.key and t.key not in store.results]
        if not missing:
            return plan
        for t in missing:
            store.results[t.key] = results(t.id)


def test_a_fresh_plan_lists_the_later_phases_as_pending_with_what_they_wait_for():
    graph = planned(recipe(triton=_triton_on()))
    plan = plan_statuses(graph, FakeStore(), None)
    assert [t.id for t in plan.targets] == graph.order  # nothing expanded: nothing is settled
    assert [(t.id, t.label) for t in plan.pending] == [
        ("finalists", f"pending: waits for {', '.join(PROFILES)}"),
        ("triton/*", "pending: waits for finalists; then searches the top 1 correct variant(s) with a native backend "
                     "(triton/model, triton/measure/<config>, triton/search, triton/validate)")]


def test_a_cached_plan_expands_the_finalists_then_triton_and_leaves_the_graph_alone():
    graph = planned(recipe(triton=_triton_on()))
    order = graph.order
    store = FakeStore()
    plan = cache_everything(graph, store)
    ids = [t.id for t in plan.targets]
    assert ids[:len(order)] == order and ids[len(order)] == "finalists"
    # the finalists' winner (onnx-opt) is the variant deployed
    assert {"triton/model/onnx-opt", "triton/search/onnx-opt", "triton/validate/onnx-opt"} <= set(ids)
    assert not any(i.startswith("triton/") and "onnx-opt" not in i for i in ids)
    assert {t.status for t in plan.targets} == {"cached"} and plan.pending == []
    assert graph.order == order and not graph.expansions  # the plan expanded a copy


def test_the_plan_waits_for_what_is_not_settled_and_names_only_that():
    graph = planned(recipe())
    store = FakeStore()
    cache_everything(graph, store)
    # forget the onnx profile: the finalists wait for it alone
    key = plan_statuses(graph, store, None).by_id()["profile/onnx"].key
    del store.results[key]
    plan = plan_statuses(graph, store, None)
    assert [(t.id, t.label) for t in plan.pending] == [("finalists", "pending: waits for profile/onnx")]
    assert "finalists" not in plan.by_id()


def test_a_failed_check_settles_its_profile_and_one_correct_variant_has_no_finalists():
    graph = planned(recipe(triton=_triton_on()))
    plan = cache_everything(graph, FakeStore(), lambda tid: {"verdict": "fail", "reason": "too far"}
                            if tid.startswith("correctness/") else result_of(tid))
    # the build skips the profiles of failing variants: the ranking runs (torch alone is correct) and adds
    # no finalists; torch has no native backend, so nothing is deployed and the plan says so
    assert plan.pending == [] and "finalists" not in plan.by_id()
    assert plan.warnings == ["triton: no correct variant with a native Triton backend to deploy"]


def test_fewer_than_two_finalists_show_the_pending_phase_as_the_ranking():
    r = recipe()
    r.profile.finalists = 0
    plan = plan_statuses(planned(r), FakeStore(), None)
    assert [t.id for t in plan.pending] == ["ranking"]


def _triton_on():
    t = recipe().triton
    t.enabled = True
    return t


# -- the graph's generators and the executor's loop, with fake targets ------------------------------

def fake_graph(calls: list[str]) -> Graph:
    """a, b; a generator adding c once both are settled; another adding d once c is."""
    g = Graph()
    g.add(Leaf("src", Path("src.txt"), ()))
    g.add(Target("a", "Fake", None, {"src": "src"}))
    g.add(Target("b", "Fake", None, {"src": "src"}))

    def first(graph: Graph, outcomes) -> Expansion:
        calls.append(f"first sees {sorted(outcomes)}")
        graph.add(Target("c", "Fake", None, {"a": "a"}))
        return Expansion(value="ranked", warnings=["first ran"])

    def second(graph: Graph, outcomes) -> Expansion:
        calls.append(f"second sees {sorted(outcomes)}")
        graph.add(Target("d", "Fake", None, {"c": "c"}))
        return Expansion()

    g.declare(Generator("first", "c", ("a", "b"), first))
    g.declare(Generator("second", "d", ("first",), second))
    return g


class FakeDriver:
    """Targets settle without steps or cache: built, or failed when named in ``failing``."""

    def __init__(self, graph: Graph, failing: set[str]) -> None:
        self.graph, self.failing = graph, failing

    def refresh(self) -> None:
        pass

    def timed(self, tid: str) -> bool:
        return False

    def prepare(self, tid, outcomes, stopped):
        blocked = [up for up in self.graph.targets[tid].inputs.values()
                   if up in self.graph.targets and outcomes[up].status != BUILT]
        status = "skipped" if stopped or blocked else FAILED if tid in self.failing else BUILT
        return TargetOutcome(id=tid, kind="convert", variant=None, status=status)

    def warnings(self) -> list[str]:
        return []


class NoBackend:
    """Nothing runs: every target settles in the driver."""

    slots = 1

    def cancel(self) -> None:
        pass


@pytest.fixture
def fake_settle():
    """The names of the targets that fail; ``run`` builds a graph with the executor's loop."""
    return set()


def run(graph: Graph, failing: set[str], reporter=None, keep_going: bool = True):
    return schedule(graph, FakeDriver(graph, failing), NoBackend(), reporter or CollectingReporter(),
                    keep_going=keep_going)


def test_generators_must_wait_for_what_is_in_the_graph():
    g = fake_graph([])
    with pytest.raises(ValueError, match="waits for unknown 'nowhere'"):
        g.declare(Generator("third", "x", ("nowhere",), lambda graph, outcomes: Expansion()))
    with pytest.raises(ValueError, match="duplicate generator id 'first'"):
        g.declare(Generator("first", "x", (), lambda graph, outcomes: Expansion()))


def test_one_loop_runs_the_generators_once_what_they_wait_for_is_settled(fake_settle, tmp_path):
    calls: list[str] = []
    graph = fake_graph(calls)
    reporter = CollectingReporter()
    outcomes = run(graph, fake_settle, reporter)
    assert list(outcomes) == ["a", "b", "c", "d"]
    assert calls == ["first sees ['a', 'b']", "second sees ['a', 'b', 'c']"]
    events = [(kind, e.id if kind == "finished" else e) for kind, e in reporter.events]
    assert events == [("finished", "a"), ("finished", "b"), ("warning", "first ran"), ("total", (3, False)),
                      ("finished", "c"), ("total", (4, True)), ("finished", "d")]
    assert graph.expansions["first"].value == "ranked" and graph.expansions["first"].added == ("c",)


def test_a_failure_with_keep_going_off_stops_the_build_before_any_later_phase(fake_settle, tmp_path):
    fake_settle.add("a")
    calls: list[str] = []
    graph = fake_graph(calls)
    outcomes = run(graph, fake_settle, keep_going=False)
    assert {k: o.status for k, o in outcomes.items()} == {"a": "failed", "b": "skipped"}
    assert calls == [] and [g.id for g in graph.unexpanded()] == ["first", "second"]


def test_with_keep_going_a_failure_still_lets_the_later_phases_run(fake_settle, tmp_path):
    fake_settle.add("a")
    calls: list[str] = []
    outcomes = run(fake_graph(calls), fake_settle)
    assert {k: o.status for k, o in outcomes.items()} == {"a": "failed", "b": "built", "c": "skipped", "d": "skipped"}
    assert len(calls) == 2


def _aa_results(tid: str) -> dict:
    """Cached results of an onnx-int8-aa build: drift ranks three layers; keeping two in fp32 meets the budget."""
    if tid == "drift/onnx-int8-static":
        return {"layers": [{"name": f"/fc{i}/Gemm", "op_type": "Gemm", "growth": 1.0 / i} for i in (2, 1, 3, 4)]}
    if tid.startswith("aa/") and tid.endswith("/accuracy"):
        k = int(tid.split("/keep-")[1].split("/")[0])
        return {"batches": {"8": {"y": {"max_abs": 1.0 if k < 2 else 0.01, "scale": 1.0, "cosine_min": 0.9999}}}}
    if tid.startswith("profile/"):
        return {"batches": {"8": figures(2.0)}}
    return result_of(tid) if tid.startswith("correctness/") else {}


def test_the_search_is_pending_on_a_fresh_cache_and_expanded_from_a_cached_one():
    r = recipe(variants=["torch", "onnx-int8-static", "onnx-int8-aa"], precisions=["fp32", "int8"])
    r.profile.finalists = 0
    graph = planned(r)
    fresh = plan_statuses(graph, FakeStore(), None)
    rows = {t.id: t.label for t in fresh.pending}
    assert rows["onnx-int8-aa"].startswith("pending: waits for drift/onnx-int8-static; then searches how many of "
                                           "the layers drift/onnx-int8-static ranks first stay fp32")
    assert "onnx-int8-aa" in rows["ranking"]  # the ranking waits for the search
    assert "onnx-int8-aa" not in fresh.by_id()
    plan = cache_everything(graph, FakeStore(), _aa_results)
    ids = [t.id for t in plan.targets]
    assert [i for i in ids if i.startswith("aa/") and not i.endswith("/accuracy")] == [
        "aa/onnx-int8-aa/keep-0", "aa/onnx-int8-aa/keep-1", "aa/onnx-int8-aa/keep-2"]
    assert {"onnx-int8-aa", "correctness/onnx-int8-aa", "profile/onnx-int8-aa"} <= set(ids)
    by_id = plan.by_id()
    assert by_id["onnx-int8-aa"].key == by_id["aa/onnx-int8-aa/keep-2"].key  # the chosen trial's model
    assert by_id["aa/onnx-int8-aa/keep-0"].key == by_id["onnx-int8-static"].key  # full int8 is onnx-int8-static
    assert plan.pending == [] and not graph.expansions  # the plan expanded a copy


def _ov_aa_results(tid: str) -> dict:
    """Cached results of an openvino-int8-aa build: the drift measured each MatMul's own int8 error
    (fc2's largest, growth says otherwise); keeping one in float meets the budget."""
    if tid == "drift/openvino-int8":
        return {"layers": [{"name": n, "op_type": op, "growth": g, **({"local_error": e} if e is not None else {})}
                           for n, op, g, e in (("/fc1/MatMul", "MatMul", 0.9, 0.01), ("/relu", "Relu", 0.5, None),
                                               ("/fc2/MatMul", "MatMul", 0.1, 0.4),
                                               ("/fc3/MatMul", "MatMul", -0.2, 0.02))]}
    if tid.startswith("aa/") and tid.endswith("/accuracy"):
        k = int(tid.split("/keep-")[1].split("/")[0])
        return {"batches": {"8": {"y": {"max_abs": 1.0 if k < 1 else 0.01, "scale": 1.0, "cosine_min": 0.9999}}}}
    if tid.startswith("profile/"):
        return {"batches": {"8": figures(2.0)}}
    return result_of(tid) if tid.startswith("correctness/") else {}


def test_openvino_int8_aa_searches_openvino_int8_ignoring_the_layers_with_the_largest_own_error():
    r = recipe(variants=["torch", "openvino-int8", "openvino-int8-aa"], precisions=["fp32", "int8"])
    r.profile.finalists = 0
    graph = planned(r)
    rows = {t.id: t.label for t in plan_statuses(graph, FakeStore(), None).pending}
    assert rows["openvino-int8-aa"].startswith("pending: waits for drift/openvino-int8; then searches")
    plan = cache_everything(graph, FakeStore(), _ov_aa_results)
    by_id = plan.by_id()
    assert [i for i in by_id if i.startswith("aa/") and not i.endswith("/accuracy")] == [
        "aa/openvino-int8-aa/keep-0", "aa/openvino-int8-aa/keep-1"]
    assert by_id["aa/openvino-int8-aa/keep-0"].key == by_id["openvino-int8"].key  # full int8 is openvino-int8
    assert by_id["openvino-int8-aa"].key == by_id["aa/openvino-int8-aa/keep-1"].key
    # the kept layer reaches NNCF as an anchored, escaped ignored-scope pattern, after the recipe's own
    assert by_id["openvino-int8-aa"].payload["params"]["ignored_patterns"] == ["^/fc2/MatMul$"]
    assert {"correctness/openvino-int8-aa", "profile/openvino-int8-aa"} <= set(by_id)
