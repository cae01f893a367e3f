"""The build graph: targets and leaves, topological order, dependents."""

from __future__ import annotations

from dataclasses import dataclass, field

from navbuild import formats
from navbuild.measure_conditions import MeasurePolicy
from navbuild.planning.target import Leaf, Target


@dataclass
class Graph:
    """Targets keyed by id, plus leaves; ``order`` is a topological order of target ids."""

    targets: dict[str, Target] = field(default_factory=dict)
    leaves: dict[str, Leaf] = field(default_factory=dict)
    #: variant -> id of the target (or leaf) that provides its model; None: it runs the source
    variant_models: dict[str, str | None] = field(default_factory=dict)
    #: what the plan changed from the recipe to fit the source, and why (shown with the plan)
    notes: list[str] = field(default_factory=list)
    #: how timed targets are treated (threshold, remeasure); a policy, never part of a key
    measure: MeasurePolicy = field(default_factory=MeasurePolicy)

    def add(self, node: Target | Leaf) -> str:
        if node.id in self.targets or node.id in self.leaves:
            raise ValueError(f"duplicate target id {node.id!r}")
        if isinstance(node, Leaf):
            self.leaves[node.id] = node
        else:
            for name, up in node.inputs.items():
                if up not in self.targets and up not in self.leaves:
                    raise ValueError(f"target {node.id!r} input {name!r} refers to unknown {up!r}")
            self.targets[node.id] = node
        return node.id

    @property
    def order(self) -> list[str]:
        """Targets in insertion order, which ``add`` guarantees is topological."""
        return list(self.targets)

    def dependents(self, node_id: str) -> list[str]:
        """Every target that (transitively) depends on ``node_id``."""
        out: list[str] = []
        frontier = {node_id}
        for tid in self.order:
            if frontier & set(self.targets[tid].inputs.values()):
                out.append(tid)
                frontier.add(tid)
        return out

    def variants(self) -> list[str]:
        """Variant names, simplest first (the order in which ties are broken)."""
        names = set(self.variant_models) | {t.variant for t in self.targets.values() if t.variant}
        return sorted(names, key=lambda v: (formats.simplicity(v), v))
