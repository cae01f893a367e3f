"""Cache keys of targets and their plan-time status: cached, stale (why), missing, unavailable."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from navbuild.cache.keys import cache_key, canonical_json, explain_change, key_payload, tool_versions
from navbuild.device import gpu_fingerprint, gpu_problem
from navbuild.hardware import fingerprint
from navbuild.measure_conditions import unservable_reason
from navbuild.planning.graph import Generator, Graph
from navbuild.planning.outcome import SKIPPED, TargetOutcome, failed_check
from navbuild.planning.target import PROFILE, Leaf, Target
from navbuild.steps.base import load_step, params_to_dict

CACHED, STALE, MISSING, UNAVAILABLE = "cached", "stale", "missing", "unavailable"
#: a later phase whose targets are not known yet (they appear once what it waits for is built)
PENDING = "pending"


def leaf_digest(leaf: Leaf, memo: Any) -> str:
    """Content digest of a leaf: its files' digests (not their paths) and its facts."""
    files = [memo.digest(f) for f in leaf.files]
    return hashlib.sha256(canonical_json({"files": files, "facts": dict(leaf.facts)}).encode()).hexdigest()


def hardware_bound(target: Target) -> bool:
    """Whether the target's output depends on the machine: its step says so for its params, or it
    runs on a GPU (a check too: fp16 kernels differ from one GPU to another)."""
    return target.gpu is not None or load_step(target.step).depends_on_hardware(target.params)


def payload_for(target: Target, upstream: dict[str, str], hardware: dict | None = None,
                gpu: dict | None = None) -> dict:
    """The key payload: step, version, params read, upstream content digests, tools, hardware.

    ``hardware``: the fingerprint of the machines a hardware-dependent target runs on (the
    executor's backend says which); default: this machine's. A target on a GPU adds that GPU's
    fingerprint as ``hardware["gpu"]`` (``gpu``; default: read here, navbuild.device), so neither a
    CPU measurement nor another GPU model's serves its key.
    """
    step = load_step(target.step)
    if not hardware_bound(target):
        hardware = None
    else:
        hardware = fingerprint() if hardware is None else hardware
        if target.gpu is not None:
            hardware = {**hardware, "gpu": gpu_fingerprint(target.gpu) if gpu is None else gpu}
    return key_payload(step=step.name, step_version=step.version, params=params_to_dict(target.params),
                       inputs=upstream, tools=tool_versions(step.tools_for(target.params)), hardware=hardware)


def unavailable_reason(target: Target) -> str | None:
    """Why the target cannot run here (None when it can): its source, no usable GPU, a missing package."""
    if target.unavailable:
        return target.unavailable
    step = load_step(target.step)
    if target.gpu is not None and (why := gpu_problem(step.requirements(target.params))):
        return why
    if target.gpu is not None and (why := step.gpu_refusal(target.params, gpu_fingerprint(target.gpu))):
        return why
    missing = step.missing_requirements(target.params)
    return f"{', '.join(missing)} not installed" if missing else None


@dataclass
class TargetPlan:
    """One target's plan-time status, with the key when it can be known before building."""

    id: str
    status: str
    reason: str = ""
    key: str | None = None
    payload: dict | None = None
    kind: str = ""
    variant: str | None = None

    @property
    def label(self) -> str:
        return f"{self.status}: {self.reason}" if self.reason and self.status != CACHED else self.status


@dataclass
class Plan:
    targets: list[TargetPlan] = field(default_factory=list)
    #: what the plan says besides the targets' statuses: sizes fitted to the source (Graph.notes),
    #: a source whose dependencies are not discovered yet
    notes: list[str] = field(default_factory=list)
    #: the later phases not expanded yet (status ``pending``, the reason says what they wait for)
    pending: list[TargetPlan] = field(default_factory=list)
    #: what the later phases the plan expanded will warn about when the build runs them
    warnings: list[str] = field(default_factory=list)

    def by_id(self) -> dict[str, TargetPlan]:
        return {t.id: t for t in self.targets}


def plan_statuses(graph: Graph, store: Any, previous: dict | None) -> Plan:
    """Status of every target without running anything (reads only the cache's metadata).

    A later phase (a generator of the graph) is expanded, in a copy of the graph, when all it
    waits for is settled from the cache alone, exactly as the build would settle it: its
    targets then get their statuses like any other. Otherwise it is listed in ``pending``
    with what it waits for.
    """
    graph = graph.copy()  # expanding a generator must not change the caller's graph
    prev_targets = (previous or {}).get("targets", {})
    digests: dict[str, str | None] = {}
    pending: dict[str, str] = {}  # target id -> why its digest is unknown
    settled: dict[str, TargetOutcome] = {}  # what the build would make of each target without running one
    plan = Plan(notes=[*graph.notes, *(f"{lid}: {leaf.note}" for lid, leaf in graph.leaves.items() if leaf.note)])
    while True:
        for lid, leaf in graph.leaves.items():
            if lid not in digests:
                digests[lid] = leaf_digest(leaf, store.memo)
        for tid in graph.order:
            if tid not in digests:
                plan.targets.append(_status(graph, graph.targets[tid], store, prev_targets, digests, pending, settled))
        ready = graph.ready(lambda tid: tid in settled)
        if not ready:
            break
        for generator in ready:
            plan.warnings.extend(graph.expand(generator, settled).warnings)
    plan.pending = [TargetPlan(id=g.shows, status=PENDING, kind=PENDING,
                               reason=f"waits for {_waits(graph, g, settled)}" + (f"; then {g.then}" if g.then else ""))
                    for g in graph.unexpanded()]
    return plan


def _status(graph: Graph, target: Target, store: Any, prev_targets: dict, digests: dict[str, str | None],
            pending: dict[str, str], settled: dict[str, TargetOutcome]) -> TargetPlan:
    """One target's plan-time status; what the build would settle it as (when known) goes to ``settled``."""
    tid = target.id
    tp = TargetPlan(id=tid, status=MISSING, kind=target.kind, variant=target.variant)
    digests[tid] = None

    def settle(status: str, reason: str = "", result: dict | None = None) -> None:
        settled[tid] = TargetOutcome(id=tid, kind=target.kind, variant=target.variant, status=status,
                                     reason=reason, result=result or {})

    why = unavailable_reason(target)
    if why:
        tp.status, tp.reason = UNAVAILABLE, why
        pending[tid] = "unavailable"
        settle(UNAVAILABLE, why)
        return tp
    blocked = [(name, up) for name, up in target.inputs.items() if digests.get(up) is None]
    if blocked:
        # an unavailable input explains more than one that merely waits to be built
        name, up = min(blocked, key=lambda b: pending.get(b[1]) != "unavailable")
        if pending.get(up) == "unavailable":
            tp.status, tp.reason = UNAVAILABLE, f"input {up} is unavailable"
        elif tid in prev_targets:
            tp.status, tp.reason = STALE, f"input {up} will be rebuilt"
        pending[tid] = "rebuild"
        if all(u in settled for _, u in blocked):  # the build skips it without building anything
            settle(SKIPPED, f"input {blocked[0][1]} {settled[blocked[0][1]].status}")
        return tp
    tp.payload = payload_for(target, {name: digests[up] for name, up in target.inputs.items()})
    tp.key = cache_key(tp.payload)
    skipped = failed_check(settled, target.variant) if target.kind == PROFILE else None
    if skipped:
        settle(SKIPPED, skipped)
    meta = store.peek(tp.key)
    again = None if meta is None else unservable_reason(load_step(target.step).timed, meta.get("result"),
                                                        graph.measure)
    if meta is not None and again is None:
        tp.status = CACHED
        digests[tid] = meta.get("digest")
        if not skipped:
            settle(CACHED, result=meta.get("result"))
        return tp
    if again is not None:  # a timed target measured again: provisional before, or --remeasure
        tp.status, tp.reason = STALE, again
        pending[tid] = "rebuild"
        return tp
    pending[tid] = "rebuild"
    old = prev_targets.get(tid, {}).get("payload")
    if old is None:
        return tp  # missing: never built here
    reasons = _root_causes(explain_change(old, tp.payload), target, graph)
    tp.status = STALE
    tp.reason = "; ".join(reasons) if reasons else "cache entry is gone (pruned or corrupt)"
    return tp


def _waits(graph: Graph, generator: Generator, settled: dict[str, TargetOutcome]) -> str:
    """What a pending phase still waits for: its unsettled profiles (else the other targets), or earlier phases."""
    phases = [graph.generators[w].shows for w in generator.waits_for if w in graph.generators]
    targets = [w for w in generator.waits_for if w in graph.targets and w not in settled]
    shown = [t for t in targets if graph.targets[t].kind == PROFILE] or targets
    if len(shown) > _SHOWN:
        shown = [*shown[:_SHOWN], f"{len(shown) - _SHOWN} more"]
    return ", ".join(phases + shown) or "nothing (it runs first thing in the build)"


_SHOWN = 6  # waits listed by name in a pending row; the rest are counted


def _root_causes(reasons: list[str], target: Target, graph: Graph) -> list[str]:
    """``input source changed`` replaced by what changed in that leaf (a module, a checkpoint)."""
    out: list[str] = []
    for reason in reasons:
        leaf = next((graph.leaves[up] for name, up in target.inputs.items()
                     if up in graph.leaves and reason == f"input {name} changed"), None)
        out.extend(leaf.changes if leaf is not None and leaf.changes else (reason,))
    return out
