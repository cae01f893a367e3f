"""The build graph: targets and leaves, topological order, dependents, and the generators of later phases."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from navbuild import formats
from navbuild.measure_conditions import MeasurePolicy
from navbuild.planning.target import Leaf, Target


@dataclass
class Expansion:
    """What a generator did when it ran: the value later generators and the summary read (e.g. the
    ranking), what it wants the user to know, the generators it declares (a next step that can only
    be known once what it added is settled, e.g. a search's next trial), and the targets it added
    (filled in by the graph)."""

    value: Any = None
    warnings: list[str] = field(default_factory=list)
    declares: tuple["Generator", ...] = ()
    added: tuple[str, ...] = ()


@dataclass(frozen=True)
class Generator:
    """A phase whose targets can only be known once others are settled (pydoit's ``create_after``).

    ``waits_for`` names targets and other generators; a generator is settled once it ran, every
    target it added is, and every generator it declared (``Expansion.declares``) is, transitively:
    a chain of generators (a bisection's trials) is settled when its last link is. ``expand(graph, outcomes)`` adds the phase's targets to ``graph``
    from the outcomes of what it waited for; it must be pure (a plan runs it on cached outcomes).
    ``shows`` is how the plan names what it will add (``finalists``, ``triton/*``), ``then``
    what it will do, said in the plan while it waits.
    """

    id: str
    shows: str
    waits_for: tuple[str, ...]
    expand: Callable[["Graph", Mapping[str, Any]], Expansion] = field(compare=False)
    then: str = ""


@dataclass
class Graph:
    """Targets keyed by id, plus leaves; ``order`` is a topological order of target ids.

    ``generators`` are the later phases, in the order they run; ``expansions`` what each did
    once it ran.
    """

    targets: dict[str, Target] = field(default_factory=dict)
    leaves: dict[str, Leaf] = field(default_factory=dict)
    #: variant -> id of the target (or leaf) that provides its model; None: it runs the source
    variant_models: dict[str, str | None] = field(default_factory=dict)
    #: what the plan changed from the recipe to fit the source, and why (shown with the plan)
    notes: list[str] = field(default_factory=list)
    #: how timed targets are treated (threshold, remeasure); a policy, never part of a key
    measure: MeasurePolicy = field(default_factory=MeasurePolicy)
    #: where the recipe's models run (navbuild.device.Device); None: a graph made without a recipe
    device: Any = None
    generators: dict[str, Generator] = field(default_factory=dict)
    expansions: dict[str, Expansion] = field(default_factory=dict)

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

    def declare(self, generator: Generator) -> str:
        """Add a later phase; what it waits for must already be in the graph."""
        if generator.id in self.generators:
            raise ValueError(f"duplicate generator id {generator.id!r}")
        for up in generator.waits_for:
            if up not in self.targets and up not in self.generators:
                raise ValueError(f"generator {generator.id!r} waits for unknown {up!r}")
        self.generators[generator.id] = generator
        return generator.id

    def copy(self) -> Graph:
        """A graph that can be expanded without changing this one (the plan's)."""
        return replace(self, targets=dict(self.targets), leaves=dict(self.leaves),
                       variant_models=dict(self.variant_models), notes=list(self.notes),
                       generators=dict(self.generators), expansions=dict(self.expansions))

    @property
    def order(self) -> list[str]:
        """Targets in insertion order, which ``add`` guarantees is topological."""
        return list(self.targets)

    def unexpanded(self) -> list[Generator]:
        """The generators that have not run yet, in declaration order."""
        return [g for gid, g in self.generators.items() if gid not in self.expansions]

    def ready(self, settled: Callable[[str], bool]) -> list[Generator]:
        """The generators that have not run and whose every wait is settled.

        ``settled(target_id)`` says whether a target is; a generator is settled as ``settled_generator`` says.
        """
        return [g for g in self.unexpanded()
                if all(self.settled_generator(w, settled) if w in self.generators else settled(w)
                       for w in g.waits_for)]

    def settled_generator(self, generator_id: str, settled: Callable[[str], bool]) -> bool:
        """Whether a generator ran, every target it added is settled and every generator it declared
        is settled, transitively."""
        e = self.expansions.get(generator_id)
        return (e is not None and all(settled(t) for t in e.added)
                and all(self.settled_generator(g.id, settled) for g in e.declares))

    def expand(self, generator: Generator, outcomes: Mapping[str, Any]) -> Expansion:
        """Run ``generator`` on the outcomes it waited for; record and return what it did, and
        declare the generators it declares."""
        before = set(self.targets)
        expansion = generator.expand(self, outcomes)
        expansion.added = tuple(t for t in self.targets if t not in before)
        self.expansions[generator.id] = expansion
        for chained in expansion.declares:
            self.declare(chained)
        return expansion

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
