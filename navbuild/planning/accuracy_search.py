"""The accuracy-aware search of a variant (onnx-int8-aa) as a chain of generators: each trial keeps the top k
drift-ranked layers in fp32 and is two cached targets; the next k is known once the last trial is measured.

The search is a bisection on k (0: the full int8 model, the largest: every layer across which the error
grows in fp32, never all of them, see ``ranked_layers``): it
gallops k = 0, 1, 2, 4, ... until a trial meets the budget, then halves the gap between the largest
failing k and the smallest passing one, since a handful of layers usually carry most of the error.
``decide`` replays that from the trials measured so far, so each link of the chain is pure and a plan
replays the whole search from the cache. A trial's measurement holds no budget (navbuild/steps/accuracy.py):
``judge`` compares it with the budget here, so another budget reuses every trial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

from navbuild.planning.graph import Expansion, Generator, Graph
from navbuild.planning.outcome import BUILT, CACHED, FAILED
from navbuild.planning.target import CONVERT, Target
from navbuild.steps.correctness import MetricSpec, budget_ratio, judge_metric
from navbuild.steps.drift import DRIFT_FILE, read_report

#: op types of a quantized graph's own quantization nodes: never a layer to keep in fp32
_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
#: the accuracy target of a trial, under the trial's id
ACCURACY = "accuracy"


@dataclass(frozen=True)
class Budget:
    """What a trial must meet: the recipe's metric when it has one, else the precision's tolerance
    (atol, range_rtol, cosine_min) with the recipe's per-output overrides."""

    metric: MetricSpec | None = None
    tolerance: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def describe(self) -> str:
        if self.metric is not None:
            bounds = [f">= {self.metric.min:g}" if self.metric.min is not None else "",
                      f"<= {self.metric.max:g}" if self.metric.max is not None else ""]
            return f"{self.metric.name} {' and '.join(b for b in bounds if b)}"
        return "worst error ratio <= 1 (max abs error within atol + range_rtol x range, cosine within its floor)"


@dataclass(frozen=True)
class Judged:
    """A trial against the budget: whether it meets it, its figure (the metric's worst value, or the worst
    error ratio: <= 1 within budget) and that figure in words."""

    passes: bool
    figure: float
    text: str


def judge(result: Mapping[str, Any], budget: Budget) -> Judged:
    """A trial's measurement (MeasureAccuracy's result) against ``budget``, with the correctness check's rules."""
    if budget.metric is not None:
        values = (result.get("metric") or {}).get("per_batch") or {}
        report, problem = judge_metric(budget.metric, values, {b: f"batch {b}" for b in values})
        worst = report.get("worst")
        figure = float("nan") if worst is None else float(worst)
        return Judged(problem is None, figure, f"{budget.metric.name} {figure:.6g}" + (f" ({problem})" if problem
                                                                                      else ""))
    ratio = 0.0
    for report in (result.get("batches") or {}).values():
        for name, m in (report or {}).items():
            tol = {**budget.tolerance, **budget.outputs.get(name, {})}
            ratio = max(ratio, budget_ratio(m, float(tol.get("atol", 0.0)), float(tol.get("range_rtol", 0.0)),
                                            tol.get("cosine_min")))
    if not result.get("batches"):
        ratio = math.inf
    return Judged(ratio <= 1.0, ratio, f"error ratio {ratio:.3g}")


@dataclass(frozen=True)
class Decision:
    """The search's state: ``next_k`` to try (None: it ended), the trials run in order, and once it ended
    the chosen k (None: no trial met the budget)."""

    trials: tuple[int, ...]
    next_k: int | None = None
    chosen: int | None = None


def decide(layers: int, max_trials: int, passes: Mapping[int, bool]) -> Decision:
    """Replay the bisection on k in [0, ``layers``] through the trials measured (``passes``: k -> met the
    budget): the next k to try, or the end (the smallest passing k found, once it neighbours a failing one
    or the trial cap is spent). A non-monotone budget curve still ends on a passing k."""
    tried: list[int] = []
    low, high = -1, None  # the largest failing k and the smallest passing k seen so far
    k = 0
    while True:
        if k not in passes:
            if len(tried) >= max_trials:
                return Decision(tuple(tried), chosen=high)
            return Decision(tuple(tried), next_k=k)
        tried.append(k)
        if passes[k]:
            high = k if high is None else min(high, k)
        else:
            low = max(low, k)
        if high is None:
            if k >= layers:
                return Decision(tuple(tried))  # every ranked layer in fp32 still misses the budget
            k = min(layers, 1 if k == 0 else 2 * k)
        elif high - low <= 1:
            return Decision(tuple(tried), chosen=high)
        else:
            k = (low + high) // 2


@dataclass(frozen=True)
class SearchPlan:
    """What every link of one variant's search needs: the variant and its model's target id, the starting
    conversion (its step, params, inputs), how a trial keeps names in fp32, the trial's measurement, the
    drift target that ranks the layers, the budget, the cap, and ``finish(graph)``, which adds the variant's
    correctness and profile targets once its model target is in the graph."""

    variant: str
    model: str
    start: Target
    keep: Callable[[Any, tuple[str, ...]], Any]
    measure: Target  # its inputs name the model as "model"; the trial's id replaces it
    drift: str
    budget: Budget
    max_trials: int
    finish: Callable[[Graph], None]
    op_types: tuple[str, ...] = ()  # the op types the trials quantize (empty: any): only those are kept in fp32

    @property
    def prefix(self) -> str:
        return f"aa/{self.variant}"

    def trial(self, k: int) -> str:
        return f"{self.prefix}/keep-{k}"

    def accuracy(self, k: int) -> str:
        return f"{self.trial(k)}/{ACCURACY}"


@dataclass
class SearchState:
    """What the search did so far (a search link's Expansion value): the trials with their figures, and
    once it ended the layers kept in fp32 (None: it failed) and why."""

    variant: str
    trials: list[dict] = field(default_factory=list)
    done: bool = False
    kept: list[str] | None = None
    chosen: str | None = None
    message: str = ""

    def to_json(self) -> dict:
        return {"trials": self.trials, "done": self.done, "kept_fp32": self.kept, "chosen_trial": self.chosen,
                "message": self.message}


def declare_search(graph: Graph, plan: SearchPlan) -> str:
    """The first link of the search: it waits for the drift ranking (and the trials need the starting
    conversion's inputs, already in the graph). Without a drift target in the graph it runs at once and
    says so: the layers cannot be ordered."""
    return graph.declare(_link(plan, 0, (plan.drift,) if plan.drift in graph.targets else ()))


def _link(plan: SearchPlan, n: int, waits: tuple[str, ...]) -> Generator:
    gid = plan.prefix if n == 0 else f"{plan.prefix}/{n}"
    return Generator(gid, plan.variant, waits, partial(_advance, plan, n),
                     then=f"searches how many of the layers {plan.drift} ranks first stay fp32 "
                          f"({plan.prefix}/keep-<k> and its /{ACCURACY}, at most {plan.max_trials} trials), "
                          f"then {plan.model}")


def ranked_layers(drift: Any, op_types: tuple[str, ...] = ()) -> list[str]:
    """The node names a drift outcome ranks that the search may keep in fp32: by each layer's own
    quantization error (``local_error``) where the drift measured it, else those across which the
    error grows (largest growth first), then the other quantized ones in ranking order, of the ``op_types``
    quantized (empty: any), without quantization nodes and repeats, and never all of them (every one in fp32 is the fp32 model, which the int8
    conversion refuses). Read from the drift target's result, else from its ``drift.json``."""
    data = drift.result if drift.result.get("layers") is not None else None
    if data is None and drift.out_dir is not None and (Path(drift.out_dir) / DRIFT_FILE).is_file():
        data = read_report(Path(drift.out_dir))
    # a layer the drift step marks as not quantized (``"quantized": false``) is no candidate either
    layers = [layer for layer in (data or {}).get("layers", []) if layer.get("op_type") not in _QDQ_OPS
              and (not op_types or layer.get("op_type") in op_types) and layer.get("quantized", True)]
    every = list(dict.fromkeys(layer["name"] for layer in layers))
    local = {layer["name"]: layer["local_error"] for layer in layers if layer.get("local_error") is not None}
    if local:
        # the drift measured each layer's own quantization error: the worst first, then the rest
        ordered = sorted(local, key=lambda name: -local[name]) + [name for name in every if name not in local]
        return ordered[:max(0, len(every) - 1)]
    growing = list(dict.fromkeys(layer["name"] for layer in layers if layer.get("growth", 1.0) > 0))
    # then the quantized layers the ranking did not see the error grow across: where a Q/DQ pair
    # feeds several layers the drift may credit its error to one of them, and on MiniLM keeping
    # every growing layer in fp32 still missed 0.999 while 26 more quantized MatMuls stayed int8
    rest = [name for name in every if name not in growing]
    return (growing + rest)[:max(0, len(every) - 1)]


def _advance(plan: SearchPlan, n: int, graph: Graph, outcomes: Mapping[str, Any]) -> Expansion:
    """One link: judge the trials measured so far, then add the next trial (and the link that waits for it),
    or the variant's model (the chosen trial's conversion: the same key, served from the cache) and checks."""
    state = SearchState(plan.variant)
    drift = outcomes.get(plan.drift)
    if drift is None or drift.status not in (BUILT, CACHED):
        why = (f"{plan.drift} {drift.status}" if drift is not None else
               f"the build has no {plan.drift} target (drift.enabled is false, or the variant it ranks is not "
               "selected: select it too)")
        state.done, state.message = True, f"{plan.variant}: no search: {why}, so the layers cannot be ordered"
        return Expansion(value=state, warnings=[state.message])
    layers = ranked_layers(drift, plan.op_types)
    passes: dict[int, bool] = {}
    judged: dict[int, Judged] = {}
    for k in range(len(layers) + 1):
        got = outcomes.get(plan.accuracy(k))
        if got is None:
            continue
        judged[k] = (judge(got.result, plan.budget) if got.status in (BUILT, CACHED)
                     else Judged(False, math.inf, f"{got.status}: {got.reason}"))
        passes[k] = judged[k].passes
    broken = next((k for k in sorted(judged) if outcomes[plan.accuracy(k)].status == FAILED), None)
    if broken is not None:
        # a trial that could not be measured (the runtime refused the model or its mode): the others run
        # the same way, so the search stops rather than spend its trials on the same failure
        state.trials = [{"keep": k, "layers": layers[:k], "passes": judged[k].passes, "figure": judged[k].figure,
                         "text": judged[k].text} for k in sorted(judged)]
        state.done, state.message = True, (f"{plan.variant}: the search stopped: {plan.accuracy(broken)} "
                                           f"{judged[broken].text}")
        return Expansion(value=state, warnings=[state.message])
    decision = decide(len(layers), plan.max_trials, passes)
    state.trials = [{"keep": k, "layers": layers[:k], "passes": judged[k].passes, "figure": judged[k].figure,
                     "text": judged[k].text} for k in decision.trials]
    if decision.next_k is not None:
        k = decision.next_k
        if plan.trial(k) not in graph.targets:
            graph.add(replace(plan.start, id=plan.trial(k), params=plan.keep(plan.start.params, tuple(layers[:k])),
                              kind=CONVERT, variant=None))
            graph.add(replace(plan.measure, id=plan.accuracy(k),
                              inputs={**plan.measure.inputs, "model": plan.trial(k)}))
        return Expansion(value=state, declares=(_link(plan, n + 1, (plan.accuracy(k),)),))
    state.done = True
    spent = f"{len(decision.trials)} trial(s) (k = {', '.join(map(str, decision.trials))})"
    if decision.chosen is None:
        best = min(decision.trials, key=lambda k: _badness(judged[k], plan.budget), default=None)
        reached = f"best: {judged[best].text} keeping {best} layer(s) in fp32" if best is not None else "no trial"
        state.message = (f"{plan.variant}: no trial meets the budget ({plan.budget.describe()}) within "
                         f"{spent} of {len(layers)} ranked layer(s); {reached}; raise "
                         "quantization.accuracy_aware.max_trials or widen the budget")
        return Expansion(value=state, warnings=[state.message])
    k = decision.chosen
    state.kept, state.chosen = list(layers[:k]), plan.trial(k)
    state.message = (f"{len(state.kept)} layer(s) kept in fp32 ({', '.join(state.kept) or 'none'}); "
                     f"{judged[k].text}; {spent}")
    graph.add(replace(plan.start, params=plan.keep(plan.start.params, tuple(layers[:k]))))
    plan.finish(graph)
    return Expansion(value=state)


def _badness(judged: Judged, budget: Budget) -> float:
    """How far a trial is from the budget (lower is better), to name the best figure a failed search reached."""
    if math.isnan(judged.figure):
        return math.inf
    if budget.metric is not None and budget.metric.min is not None:
        return -judged.figure
    return judged.figure


def searches(graph: Graph) -> dict[str, dict]:
    """Each searched variant's search as far as it went (the last link that ran), as JSON."""
    out: dict[str, dict] = {}
    for expansion in graph.expansions.values():
        if isinstance(expansion.value, SearchState):
            out[expansion.value.variant] = expansion.value.to_json()
    return out


__all__ = ["Budget", "Judged", "judge", "Decision", "decide", "SearchPlan", "SearchState", "declare_search",
           "ranked_layers", "searches"]
