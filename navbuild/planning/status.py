"""Cache keys of targets and their plan-time status: cached, stale (why), missing, unavailable."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from navbuild.cache.keys import cache_key, canonical_json, explain_change, key_payload, tool_versions
from navbuild.hardware import fingerprint
from navbuild.measure_conditions import unservable_reason
from navbuild.planning.graph import Graph
from navbuild.planning.target import Leaf, Target
from navbuild.steps.base import load_step, params_to_dict

CACHED, STALE, MISSING, UNAVAILABLE = "cached", "stale", "missing", "unavailable"


def leaf_digest(leaf: Leaf, memo: Any) -> str:
    """Content digest of a leaf: its files' digests (not their paths) and its facts."""
    files = [memo.digest(f) for f in leaf.files]
    return hashlib.sha256(canonical_json({"files": files, "facts": dict(leaf.facts)}).encode()).hexdigest()


def payload_for(target: Target, upstream: dict[str, str]) -> dict:
    """The key payload: step, version, params read, upstream content digests, tools, hardware."""
    step = load_step(target.step)
    return key_payload(step=step.name, step_version=step.version, params=params_to_dict(target.params),
                       inputs=upstream, tools=tool_versions(step.tools_for(target.params)),
                       hardware=fingerprint() if step.depends_on_hardware(target.params) else None)


def unavailable_reason(target: Target) -> str | None:
    if target.unavailable:
        return target.unavailable
    missing = load_step(target.step).missing_requirements(target.params)
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

    def by_id(self) -> dict[str, TargetPlan]:
        return {t.id: t for t in self.targets}


def plan_statuses(graph: Graph, store: Any, previous: dict | None) -> Plan:
    """Status of every target without running anything (reads only the cache's metadata)."""
    prev_targets = (previous or {}).get("targets", {})
    digests: dict[str, str | None] = {lid: leaf_digest(leaf, store.memo) for lid, leaf in graph.leaves.items()}
    pending: dict[str, str] = {}  # target id -> why its digest is unknown
    plan = Plan(notes=[*graph.notes, *(f"{lid}: {leaf.note}" for lid, leaf in graph.leaves.items() if leaf.note)])
    for tid in graph.order:
        target = graph.targets[tid]
        tp = TargetPlan(id=tid, status=MISSING, kind=target.kind, variant=target.variant)
        plan.targets.append(tp)
        digests[tid] = None
        why = unavailable_reason(target)
        if why:
            tp.status, tp.reason = UNAVAILABLE, why
            pending[tid] = "unavailable"
            continue
        blocked = [(name, up) for name, up in target.inputs.items() if digests.get(up) is None]
        if blocked:
            # an unavailable input explains more than one that merely waits to be built
            name, up = min(blocked, key=lambda b: pending.get(b[1]) != "unavailable")
            if pending.get(up) == "unavailable":
                tp.status, tp.reason = UNAVAILABLE, f"input {up} is unavailable"
            elif tid in prev_targets:
                tp.status, tp.reason = STALE, f"input {up} will be rebuilt"
            pending[tid] = "rebuild"
            continue
        tp.payload = payload_for(target, {name: digests[up] for name, up in target.inputs.items()})
        tp.key = cache_key(tp.payload)
        meta = store.peek(tp.key)
        again = None if meta is None else unservable_reason(load_step(target.step).timed, meta.get("result"),
                                                            graph.measure)
        if meta is not None and again is None:
            tp.status = CACHED
            digests[tid] = meta.get("digest")
            continue
        if again is not None:  # a timed target measured again: provisional before, or --remeasure
            tp.status, tp.reason = STALE, again
            pending[tid] = "rebuild"
            continue
        pending[tid] = "rebuild"
        old = prev_targets.get(tid, {}).get("payload")
        if old is None:
            continue  # missing: never built here
        reasons = _root_causes(explain_change(old, tp.payload), target, graph)
        tp.status = STALE
        tp.reason = "; ".join(reasons) if reasons else "cache entry is gone (pruned or corrupt)"
    return plan


def _root_causes(reasons: list[str], target: Target, graph: Graph) -> list[str]:
    """``input source changed`` replaced by what changed in that leaf (a module, a checkpoint)."""
    out: list[str] = []
    for reason in reasons:
        leaf = next((graph.leaves[up] for name, up in target.inputs.items()
                     if up in graph.leaves and reason == f"input {name} changed"), None)
        out.extend(leaf.changes if leaf is not None and leaf.changes else (reason,))
    return out
