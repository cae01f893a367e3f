"""The build loop: settles ready targets in graph order, up to a backend's slots at once, and expands later phases.

Pure logic over three parties: the graph, a driver that settles what is cheap (skips, cache
hits) and turns a miss into a job (``prepare``) and a finished job into an outcome
(``finish``), and a backend that runs jobs (``submit``, ``wait``, ``cancel``).
"""

from __future__ import annotations

from typing import Any, Protocol

from navbuild.planning.graph import Graph
from navbuild.planning.outcome import FAILED, TargetOutcome
from navbuild.report.events import Reporter


class Driver(Protocol):
    def refresh(self) -> None:
        """Digest the graph's leaves not seen yet (a later phase may add one)."""

    def timed(self, target_id: str) -> bool:
        """Whether the target measures time: it runs alone."""

    def prepare(self, target_id: str, outcomes: dict[str, TargetOutcome], stopped: bool) -> Any:
        """The target's outcome when it settles without running (skipped, unavailable, cached), else a job."""

    def finish(self, job: Any, result: Any) -> TargetOutcome:
        """The outcome of a job the backend ran (raises InputError: the build stops)."""

    def abandon(self, job: Any) -> None:
        """Give up a job that will not finish (the build stops): release what ``prepare`` took."""

    def warnings(self) -> list[str]:
        """What the cache said since the last call."""


class Backend(Protocol):
    #: how many jobs may run at once
    slots: int

    def submit(self, job: Any) -> None: ...

    def wait(self) -> list[tuple[Any, Any]]:
        """Jobs that finished with their results; at least one (blocks until one does)."""

    def cancel(self) -> None:
        """Stop every running job."""


def schedule(graph: Graph, driver: Driver, backend: Backend, reporter: Reporter,
             keep_going: bool = True) -> dict[str, TargetOutcome]:
    """Settle every target of ``graph``, and those its generators add; return each target's outcome.

    A target is ready once every upstream target is settled; ready targets start in graph order
    while the backend has a free slot. A timed target (a profile) runs alone: it starts only
    when nothing else runs, nothing starts beside it, and while it waits for the others to end
    nothing new starts. Once every target is settled, the generators whose waits are settled
expand and add theirs (the finalists, the Triton targets), and the loop goes on. A failing
    target does not stop its siblings (unless ``keep_going`` is false: then nothing more starts,
    what runs finishes, the rest is skipped and no generator expands). An ``InputError`` from
    ``finish`` cancels what runs and is raised.
    """
    outcomes: dict[str, TargetOutcome] = {}
    running: dict[str, Any] = {}  # target id -> job
    timed_running = False
    stop = False

    def settle(out: TargetOutcome) -> None:
        nonlocal stop
        outcomes[out.id] = out
        if out.status == FAILED and not keep_going:
            stop = True
        for w in driver.warnings():
            reporter.warning(w)
        reporter.target_finished(out)

    try:
        while True:
            driver.refresh()
            for tid in graph.order:
                if tid in outcomes or tid in running:
                    continue
                timed = False
                if not stop:
                    if any(up in graph.targets and up not in outcomes for up in graph.targets[tid].inputs.values()):
                        continue  # an input is not settled yet
                    timed = driver.timed(tid)
                    if len(running) >= backend.slots or timed_running or (timed and running):
                        break  # no free slot, or a timed target waits for the others to end
                prepared = driver.prepare(tid, outcomes, stopped=stop)
                if isinstance(prepared, TargetOutcome):
                    settle(prepared)
                    continue
                running[tid] = prepared
                timed_running = timed_running or timed
                backend.submit(prepared)
            if running:
                for job, result in backend.wait():
                    tid = job.target_id
                    del running[tid]
                    settle(driver.finish(job, result))
                timed_running = any(driver.timed(tid) for tid in running)
                continue
            # every target is settled: the later phases waiting for them add theirs
            ready = [] if stop else graph.ready(lambda tid: tid in outcomes)
            if not ready:
                return outcomes
            for generator in ready:
                for w in graph.expand(generator, outcomes).warnings:
                    reporter.warning(w)
            reporter.targets_total(len(graph.targets), final=not graph.unexpanded())
    except BaseException:
        backend.cancel()
        for job in running.values():
            driver.abandon(job)
        raise
