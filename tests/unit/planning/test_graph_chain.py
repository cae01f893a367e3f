"""Generators that declare further generators: a chain is settled only when its last link is."""

from __future__ import annotations

from navbuild.planning.graph import Expansion, Generator, Graph
from navbuild.planning.target import Target


def _chain(links: int, n: int = 0, waits: tuple[str, ...] = ()) -> Generator:
    """Link ``n`` adds target t<n>; all but the last declare the next link, which waits for t<n>."""

    def expand(g: Graph, outcomes: dict) -> Expansion:
        g.add(Target(f"t{n}", "Step", None))
        return Expansion(declares=(_chain(links, n + 1, (f"t{n}",)),) if n + 1 < links else ())

    return Generator(f"g{n}", "chain", waits, expand)


def test_a_generator_is_settled_only_when_every_generator_it_declared_is() -> None:
    graph = Graph()
    graph.add(Target("a", "Step", None))
    graph.declare(_chain(3))
    graph.declare(Generator("after", "later", ("g0",), lambda g, o: Expansion()))
    settled: set[str] = {"a"}
    ran: list[str] = []
    while (ready := graph.ready(lambda t: t in settled)):
        for gen in ready:
            graph.expand(gen, {})
            ran.append(gen.id)
        settled |= set(graph.targets)  # every target added settles before the next round
    assert ran == ["g0", "g1", "g2", "after"]


def test_an_unsettled_link_keeps_the_first_generator_unsettled() -> None:
    graph = Graph()
    graph.declare(_chain(2))
    graph.declare(Generator("after", "later", ("g0",), lambda g, o: Expansion()))
    graph.expand(graph.generators["g0"], {})
    # g0 ran and its target t0 is settled, but g1 (declared by g0) has not run yet
    assert graph.settled_generator("g0", lambda t: True) is False
    assert [g.id for g in graph.ready(lambda t: True)] == ["g1"]
    graph.expand(graph.generators["g1"], {})
    assert graph.settled_generator("g0", lambda t: t != "t1") is False  # g1's own target is not settled
    assert graph.settled_generator("g0", lambda t: True) is True
    assert [g.id for g in graph.ready(lambda t: True)] == ["after"]
