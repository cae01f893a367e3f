"""The accuracy-aware search's logic on fake trial figures: the bisection's choice of k, the cap, the budget."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from navbuild.planning.accuracy_search import (Budget, SearchPlan, decide, declare_search, judge, ranked_layers,
                                              searches)
from navbuild.planning.graph import Graph
from navbuild.planning.outcome import BUILT, CACHED, FAILED, TargetOutcome
from navbuild.planning.target import Target
from navbuild.steps.correctness import MetricSpec

LAYERS = [f"MatMul_{i}" for i in range(20)]


def run_decide(layers: int, cap: int, passes_at) -> tuple[tuple[int, ...], int | None]:
    """Drive ``decide`` as the chain does: measure each k it asks for, until it ends."""
    measured: dict[int, bool] = {}
    while True:
        d = decide(layers, cap, measured)
        if d.next_k is None:
            return d.trials, d.chosen
        measured[d.next_k] = passes_at(d.next_k)


@pytest.mark.parametrize("needed", [0, 1, 3, 5, 13, 20])
def test_monotone_budget_gets_the_fewest_layers(needed: int) -> None:
    trials, chosen = run_decide(20, 20, lambda k: k >= needed)
    assert chosen == needed
    assert trials[0] == 0 and len(set(trials)) == len(trials)


def test_the_search_gallops_then_halves() -> None:
    trials, chosen = run_decide(20, 8, lambda k: k >= 5)
    assert trials == (0, 1, 2, 4, 8, 6, 5) and chosen == 5


def test_full_int8_that_passes_is_one_trial() -> None:
    assert run_decide(20, 8, lambda k: True) == ((0,), 0)


def test_non_monotone_figures_still_end_on_a_passing_k() -> None:
    passing = {4, 8, 9, 10}  # 4 passes, 5..7 do not: the bisection needs only a passing high end
    trials, chosen = run_decide(20, 8, lambda k: k in passing)
    assert chosen in passing and chosen == 4
    passing = {8, 3}  # 3 passes but the gallop steps from 2 to 4: bisection between 4 and 8 misses it
    trials, chosen = run_decide(20, 8, lambda k: k in passing)
    assert chosen == 8 and 3 not in trials


def test_the_cap_keeps_the_best_passing_trial_found() -> None:
    trials, chosen = run_decide(20, 5, lambda k: k >= 5)
    assert trials == (0, 1, 2, 4, 8) and chosen == 8
    trials, chosen = run_decide(20, 3, lambda k: k >= 5)
    assert trials == (0, 1, 2) and chosen is None


def test_no_k_meets_the_budget() -> None:
    trials, chosen = run_decide(6, 8, lambda k: False)
    assert trials == (0, 1, 2, 4, 6) and chosen is None


def _report(max_abs: float, cosine: float) -> dict:
    return {"batches": {"1": {"y": {"max_abs": max_abs, "scale": 10.0, "cosine_min": cosine}}}}


def test_judge_uses_the_range_and_the_cosine_floor() -> None:
    budget = Budget(tolerance={"atol": 0.0, "range_rtol": 0.1, "cosine_min": 0.99})
    assert judge(_report(0.5, 0.999), budget).passes
    assert judge(_report(0.5, 0.999), budget).figure == pytest.approx(0.5)  # 0.5 of 0.1 x 10
    assert not judge(_report(2.0, 0.999), budget).passes
    assert not judge(_report(0.5, 0.98), budget).passes and judge(_report(0.5, 0.98), budget).figure == pytest.approx(2)
    per_output = dataclasses.replace(budget, outputs={"y": {"range_rtol": 0.3}})
    assert judge(_report(2.0, 0.999), per_output).passes


def test_judge_uses_the_metric_when_the_recipe_has_one() -> None:
    spec = MetricSpec(function="m:f", name="cos", min=0.999, max=None, replaces_tolerance=True)
    result = {"metric": {"per_batch": {"1": {"cos": 0.9995}, "8": {"cos": 0.9991}}}, "batches": {}}
    got = judge(result, Budget(metric=spec))
    assert got.passes and got.figure == pytest.approx(0.9991)
    assert not judge(result, Budget(metric=dataclasses.replace(spec, min=0.9993))).passes


@dataclass
class Search:
    """A search over LAYERS driven to its end on fake figures: k layers kept in fp32 give error ratio
    ``error(k)`` (max_abs on a range of 10 with range_rtol 0.1)."""

    budget: Budget
    max_trials: int = 8

    def run(self, error) -> tuple[Graph, dict[str, TargetOutcome]]:
        graph = Graph()
        graph.add(Target("reference", "Ref", None))
        graph.add(Target("drift/onnx-int8-static", "Drift", None))
        start = Target("onnx-int8-aa", "Quant", (), {"reference": "reference"})
        measure = Target("onnx-int8-aa/accuracy", "Measure", "figures", {"model": "onnx-int8-aa",
                                                                           "reference": "reference"})
        finish = lambda g: g.add(Target("correctness/onnx-int8-aa", "Check", None, {"model": "onnx-int8-aa"}))
        declare_search(graph, SearchPlan("onnx-int8-aa", "onnx-int8-aa", start, lambda p, names: names, measure,
                                         "drift/onnx-int8-static", self.budget, self.max_trials, finish))
        layers = [{"name": n, "op_type": "MatMul"} for n in LAYERS]
        outcomes = {"reference": TargetOutcome("reference", "reference", None, CACHED),
                    "drift/onnx-int8-static": TargetOutcome("drift/onnx-int8-static", "drift", None, CACHED,
                                                            result={"layers": layers})}
        while (ready := graph.ready(lambda t: t in outcomes)):
            for gen in ready:
                graph.expand(gen, outcomes)
            for tid, t in graph.targets.items():
                if tid not in outcomes:
                    kept = graph.targets[t.inputs["model"]].params if t.step == "Measure" else ()
                    figure = error(len(kept)) if t.step == "Measure" else 0.0
                    if figure is None:  # the measurement itself failed
                        outcomes[tid] = TargetOutcome(tid, t.kind, t.variant, FAILED, reason="bf16 needs a CPU with it")
                        continue
                    result = _report(figure, 1.0) if t.step == "Measure" else {}
                    outcomes[tid] = TargetOutcome(tid, t.kind, t.variant, BUILT, result=result)
        return graph, outcomes


def test_the_chain_adds_trials_then_the_chosen_model_and_its_check() -> None:
    graph, _ = Search(Budget(tolerance={"atol": 0.0, "range_rtol": 0.1})).run(lambda k: 2.0 if k < 3 else 0.5)
    assert graph.targets["onnx-int8-aa"].params == tuple(LAYERS[:3])
    assert graph.targets["aa/onnx-int8-aa/keep-3"].params == tuple(LAYERS[:3])  # same step + params: same key
    assert "correctness/onnx-int8-aa" in graph.targets
    found = searches(graph)["onnx-int8-aa"]
    assert found["kept_fp32"] == LAYERS[:3] and found["chosen_trial"] == "aa/onnx-int8-aa/keep-3"
    assert [t["keep"] for t in found["trials"]] == [0, 1, 2, 4, 3]


def test_another_budget_reuses_the_same_trials() -> None:
    error = lambda k: 4.0 / (k + 1)  # ratio 2 / (k + 1) at range_rtol 0.1: passes from k = 1 (wide) or 3 (narrow)
    narrow, _ = Search(Budget(tolerance={"range_rtol": 0.1})).run(error)
    wide, _ = Search(Budget(tolerance={"range_rtol": 0.2})).run(error)
    trials = lambda g: {tid: (t.step, t.params, dict(t.inputs)) for tid, t in g.targets.items() if tid.startswith("aa/")}
    assert trials(wide).items() <= trials(narrow).items()  # every trial of the wide search is one of the narrow's
    assert searches(wide)["onnx-int8-aa"]["kept_fp32"] == LAYERS[:1]
    assert searches(narrow)["onnx-int8-aa"]["kept_fp32"] == LAYERS[:3]


def test_a_search_that_misses_the_budget_says_its_best_figure_and_trials() -> None:
    graph, _ = Search(Budget(tolerance={"range_rtol": 0.1}), max_trials=3).run(lambda k: 4.0 - k)
    found = searches(graph)["onnx-int8-aa"]
    assert "onnx-int8-aa" not in graph.targets and found["kept_fp32"] is None
    assert "within 3 trial(s) (k = 0, 1, 2)" in found["message"]
    assert "best: error ratio 2 keeping 2 layer(s)" in found["message"]


def test_a_trial_that_cannot_be_measured_stops_the_search_with_its_reason() -> None:
    graph, _ = Search(Budget(tolerance={"range_rtol": 0.1})).run(lambda k: None)
    found = searches(graph)["onnx-int8-aa"]
    assert found["done"] and found["kept_fp32"] is None and [t["keep"] for t in found["trials"]] == [0]
    assert "onnx-int8-aa" not in graph.targets
    assert found["message"] == ("onnx-int8-aa: the search stopped: aa/onnx-int8-aa/keep-0/accuracy failed: "
                                "bf16 needs a CPU with it")


def test_the_layers_to_keep_are_those_where_the_error_grows_never_all() -> None:
    def drift(*layers):
        return TargetOutcome("drift/v", "drift", "v", CACHED, result={"layers": [
            {"name": n, "op_type": op, "growth": g} for n, op, g in layers]})

    assert ranked_layers(drift(("fc2", "Gemm", 0.8), ("q", "QuantizeLinear", 0.5), ("fc1", "Gemm", 0.01),
                               ("fc3", "Gemm", -0.4))) == ["fc2", "fc1"]
    # after the growing layers, the other quantized ones in ranking order: a Q/DQ pair's error may be
    # credited to another reader of the same activation, so they are candidates too (last)
    assert ranked_layers(drift(("fc2", "Gemm", 0.8), ("fc1", "Gemm", -0.1), ("fc3", "Gemm", 0.0),
                               ("fc4", "Gemm", 0.3))) == ["fc2", "fc4", "fc1"]
    # where the drift measured each layer's own quantization error, that orders them (growth cannot
    # tell: in a fully quantized graph every layer reads inputs that are already wrong)
    local = drift(("fc2", "Gemm", 0.8), ("fc1", "Gemm", -0.1), ("fc3", "Gemm", 0.0), ("fc4", "Gemm", 0.3))
    for row, error in zip(local.result["layers"], (0.01, 0.5, 0.02, 0.03)):
        row["local_error"] = error
    assert ranked_layers(local) == ["fc1", "fc4", "fc3"]
    # every layer grows: the last stays int8 (all in fp32 would be the fp32 model)
    assert ranked_layers(drift(("fc2", "Gemm", 0.8), ("fc1", "Gemm", 0.01))) == ["fc2"]
    assert ranked_layers(TargetOutcome("drift/v", "drift", "v", CACHED, result={})) == []
    # only the op types the trials quantize (quantization.static.op_types) are worth keeping in fp32
    assert ranked_layers(drift(("add", "Add", 0.9), ("fc2", "Gemm", 0.8), ("mm", "MatMul", 0.5), ("fc1", "Gemm", 0.1)),
                         ("MatMul", "Gemm")) == ["fc2", "mm"]
    marked = drift(("scores", "MatMul", 0.9), ("fc2", "Gemm", 0.8), ("fc1", "Gemm", 0.1))
    marked.result["layers"][0]["quantized"] = False  # an activation x activation MatMul int8 leaves in float
    assert ranked_layers(marked) == ["fc2"]
