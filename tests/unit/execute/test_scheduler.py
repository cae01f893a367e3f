"""The build loop's logic on fake targets: order, slots, timed targets alone, keep-going, later phases, stops."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from navbuild.errors import InputError
from navbuild.execute.scheduler import schedule
from navbuild.planning.graph import Expansion, Generator, Graph
from navbuild.planning.outcome import BUILT, CACHED, FAILED, SKIPPED, TargetOutcome
from navbuild.planning.target import Leaf, Target
from navbuild.report.events import CollectingReporter


@dataclass
class FakeJob:
    target_id: str


class FakeDriver:
    """Targets named in ``cached`` settle in the driver; the others become jobs; ``failing`` fail,
    ``input_error`` raises; ``timed`` ones measure time."""

    def __init__(self, graph: Graph, *, cached=(), failing=(), timed=(), input_error=()) -> None:
        self.graph = graph
        self.cached, self.failing, self.timed_ids, self.input_error = set(cached), set(failing), set(timed), \
            set(input_error)
        self.abandoned: list[str] = []

    def refresh(self) -> None:
        pass

    def timed(self, tid: str) -> bool:
        return tid in self.timed_ids

    def prepare(self, tid, outcomes, stopped):
        if stopped:  # what it waits for may still run
            return TargetOutcome(id=tid, kind="convert", variant=None, status=SKIPPED, reason="stopped")
        bad = [up for up in self.graph.targets[tid].inputs.values()
               if up in self.graph.targets and outcomes[up].status not in (BUILT, CACHED)]
        if bad:
            return TargetOutcome(id=tid, kind="convert", variant=None, status=SKIPPED,
                                 reason=f"input {bad[0]} {outcomes[bad[0]].status}")
        if tid in self.cached:
            return TargetOutcome(id=tid, kind="convert", variant=None, status=CACHED)
        return FakeJob(tid)

    def finish(self, job, result) -> TargetOutcome:
        if job.target_id in self.input_error:
            raise InputError(f"{job.target_id}: samples do not fit")
        status = FAILED if job.target_id in self.failing else BUILT
        return TargetOutcome(id=job.target_id, kind="convert", variant=None, status=status)

    def abandon(self, job) -> None:
        self.abandoned.append(job.target_id)

    def warnings(self) -> list[str]:
        return []


class FakeBackend:
    """Jobs end in the order they started; records what ran beside what."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.running: list[str] = []
        self.started: list[tuple[str, tuple[str, ...]]] = []  # (job, what ran when it started)
        self.cancelled = False

    def submit(self, job) -> None:
        self.started.append((job.target_id, tuple(self.running)))
        self.running.append(job.target_id)

    def wait(self):
        tid = self.running.pop(0)
        return [(FakeJob(tid), None)]

    def cancel(self) -> None:
        self.cancelled = True


def graph_of(edges: dict[str, tuple[str, ...]]) -> Graph:
    g = Graph()
    g.add(Leaf("src", Path("src.txt"), ()))
    for tid, ups in edges.items():
        g.add(Target(tid, "Fake", None, {u: u for u in ups} or {"src": "src"}))
    return g


def run(graph: Graph, driver: FakeDriver, backend: FakeBackend, keep_going: bool = True):
    return schedule(graph, driver, backend, CollectingReporter(), keep_going=keep_going)


def test_two_slots_run_independent_targets_together_and_dependents_after_their_inputs():
    g = graph_of({"a": (), "b": (), "c": ("a",), "d": ("b", "c")})
    backend = FakeBackend(slots=2)
    outcomes = run(g, FakeDriver(g), backend)
    assert {k: o.status for k, o in outcomes.items()} == dict.fromkeys("abcd", BUILT)
    assert backend.started == [("a", ()), ("b", ("a",)), ("c", ("b",)), ("d", ())]


def test_one_slot_runs_in_graph_order_one_at_a_time():
    g = graph_of({"a": (), "b": (), "c": ("a",)})
    backend = FakeBackend(slots=1)
    run(g, FakeDriver(g), backend)
    assert backend.started == [("a", ()), ("b", ()), ("c", ())]


def test_a_timed_target_runs_alone_and_waits_for_the_others_to_end():
    g = graph_of({"a": (), "b": (), "p": ("a",), "c": (), "e": ()})
    backend = FakeBackend(slots=3)
    run(g, FakeDriver(g, timed={"p"}), backend)
    # p is ready once a ends, but b and c still run: e (after p in graph order) does not start
    # beside them; p starts once they ended, alone; e after it
    assert backend.started == [("a", ()), ("b", ("a",)), ("c", ("a", "b")), ("p", ()), ("e", ())]


def test_cache_hits_settle_in_the_driver_without_a_slot():
    g = graph_of({"a": (), "b": ("a",), "c": ()})
    backend = FakeBackend(slots=1)
    outcomes = run(g, FakeDriver(g, cached={"a", "b"}), backend)
    assert [o.status for o in outcomes.values()] == [CACHED, CACHED, BUILT]
    assert backend.started == [("c", ())]


def test_keep_going_skips_the_dependents_of_a_failure_and_builds_its_siblings():
    g = graph_of({"a": (), "b": (), "c": ("a",), "d": ("b",)})
    outcomes = run(g, FakeDriver(g, failing={"a"}), FakeBackend(slots=2))
    assert {k: o.status for k, o in outcomes.items()} == {"a": FAILED, "b": BUILT, "c": SKIPPED, "d": BUILT}
    assert outcomes["c"].reason == "input a failed"


def test_with_keep_going_off_a_failure_lets_what_runs_finish_and_starts_nothing_more():
    g = graph_of({"a": (), "b": (), "c": (), "d": ("b",)})
    backend = FakeBackend(slots=2)
    outcomes = run(g, FakeDriver(g, failing={"a"}), backend, keep_going=False)
    assert {k: o.status for k, o in outcomes.items()} == {"a": FAILED, "b": BUILT, "c": SKIPPED, "d": SKIPPED}
    assert [s[0] for s in backend.started] == ["a", "b"]


def test_later_phases_expand_once_every_target_is_settled():
    g = graph_of({"a": (), "b": ()})
    seen: list[list[str]] = []

    def add_c(graph: Graph, outcomes) -> Expansion:
        seen.append(sorted(outcomes))
        graph.add(Target("c", "Fake", None, {"a": "a"}))
        return Expansion()

    g.declare(Generator("later", "c", ("a",), add_c))
    backend = FakeBackend(slots=2)
    outcomes = run(g, FakeDriver(g), backend)
    assert seen == [["a", "b"]] and outcomes["c"].status == BUILT
    assert backend.started[-1] == ("c", ())


def test_an_input_error_cancels_what_runs_and_stops_the_build():
    g = graph_of({"a": (), "b": (), "c": ()})
    backend = FakeBackend(slots=2)
    driver = FakeDriver(g, input_error={"a"})
    with pytest.raises(InputError, match="a: samples do not fit"):
        run(g, driver, backend)
    assert backend.cancelled and driver.abandoned == ["b"]
