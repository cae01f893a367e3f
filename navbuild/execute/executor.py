"""Runs a graph: the driver's side of a build (cache lookups under per-key locks, skips, the build folder)."""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

from navbuild import formats
from navbuild.cache.fs import disk_full, writing
from navbuild.cache.keys import cache_key
from navbuild.errors import InputError
from navbuild.execute.backends.choice import open_backend
from navbuild.execute.backends.job import SIDE_FILES, Job, RunResult
from navbuild.execute.scheduler import schedule
from navbuild.executor_settings import ExecutorConfig
from navbuild.measure_conditions import MEASURED_AGAIN, MeasurePolicy, unservable_reason
from navbuild.planning.graph import Graph
from navbuild.planning.outcome import BUILT, CACHED, FAILED, SKIPPED, UNAVAILABLE, TargetOutcome, failed_check
from navbuild.planning.status import hardware_bound, leaf_digest, payload_for, unavailable_reason
from navbuild.planning.target import CORRECTNESS, PROFILE
from navbuild.report.events import Reporter
from navbuild.steps.base import load_step, params_to_dict

def execute(graph: Graph, store: Any, build_dir: Path, cwd: Path, reporter: Reporter,
            keep_going: bool = True, executor: ExecutorConfig | None = None) -> dict[str, TargetOutcome]:
    """Build every target of ``graph``, and those its generators add; return each target's outcome.

    Cache lookups, skips and the build folder stay here, in the driver; misses run on the
    backend ``executor`` names (this machine's child processes, or Ray tasks), up to its slots
    at once (see navbuild.execute.scheduler for the order, keep-going and timed targets). An
    ``InputError`` from a step (the user's model or samples do not fit the recipe) stops the
    build at once and is raised: nothing of it is published.
    """
    with open_backend(executor or ExecutorConfig(), store, cwd) as backend:
        driver = BuildDriver(graph, store, build_dir, cwd, reporter, backend)
        return schedule(graph, driver, backend, reporter, keep_going=keep_going)


class BuildDriver:
    """The driver's side of a build: leaf digests, keys, cache hits, locks, and the build folder."""

    def __init__(self, graph: Graph, store: Any, build_dir: Path, cwd: Path, reporter: Reporter,
                 backend: Any) -> None:
        self.graph, self.store, self.build_dir, self.cwd = graph, store, build_dir, cwd
        self.reporter, self.backend = reporter, backend
        self.digests: dict[str, str] = {}
        self.paths: dict[str, Path] = {}
        self.keys: dict[str, str] = {}  # built or served target -> its cache key
        self._pending: dict[str, tuple[TargetOutcome, contextlib.ExitStack, float]] = {}

    def refresh(self) -> None:
        for lid, leaf in self.graph.leaves.items():  # a generator may add leaves (the Triton server)
            if lid not in self.digests:
                self.digests[lid], self.paths[lid] = leaf_digest(leaf, self.store.memo), leaf.path

    def timed(self, target_id: str) -> bool:
        return load_step(self.graph.targets[target_id].step).timed

    def warnings(self) -> list[str]:
        notes = getattr(self.backend, "notes", [])  # e.g. where a cluster runs the profiles
        said, notes[:] = list(notes), []
        return said + _drain(self.store)

    def prepare(self, tid: str, outcomes: dict[str, TargetOutcome], stopped: bool) -> TargetOutcome | Job:
        """Serve, skip or mark unavailable one target; a miss becomes a job, its entry's lock held."""
        graph, digests = self.graph, self.digests
        target = graph.targets[tid]
        out = TargetOutcome(id=tid, kind=target.kind, variant=target.variant, status=SKIPPED,
                            path=self.build_dir / tid)
        if stopped:
            out.reason = "build stopped after a failure (keep_going is off)"
            return out
        if (why := unavailable_reason(target)):
            out.status, out.reason = UNAVAILABLE, why
            return out
        if (blocked := [up for up in target.inputs.values() if up not in digests]):
            up = blocked[0]
            up_status = outcomes[up].status if up in outcomes else "missing"
            out.reason = f"input {up} {up_status}"
            return out
        if target.kind == PROFILE and (why := failed_check(outcomes, target.variant)):
            out.reason = why
            return out
        upstream = {name: digests[up] for name, up in target.inputs.items()}
        step = load_step(target.step)
        bound = hardware_bound(target)  # a GPU target's key also holds its GPU
        out.payload = payload_for(target, upstream, hardware=self.backend.hardware if bound else None)
        out.key = cache_key(out.payload)
        start = time.perf_counter()
        policy = graph.measure
        found = self.store.lookup(out.key)
        entry = _servable(found, target, out, policy)
        if entry is None and (why := self.store.unwritable_reason()) is not None:
            # A cache that can be read but not written serves what it holds; a miss cannot be built.
            if found is None:
                out.status, out.reason = FAILED, f"not in the cache, and cannot be built into it: {why}"
                return out
            entry, out.reason = found, f"provisional measurement served: the cache cannot be written ({why})"
        if entry is not None:
            return self._served(out, entry, CACHED, start)
        lock = contextlib.ExitStack()
        lock.enter_context(self.store.lock(out.key, what=target.id,
                                           on_wait=lambda holder: self.reporter.waiting(target.id, holder)))
        try:
            found = self.store.lookup(out.key)  # another process may have built it while we waited
            entry = _servable(found, target, out, policy)
            if entry is not None:
                lock.close()
                return self._served(out, entry, CACHED, start)
            self.reporter.target_started(target.id, target.kind)
            staging = self.store.staging(out.key)
            job = Job(target_id=tid, step=step.name, kind=target.kind, params=params_to_dict(target.params),
                      key=out.key, payload=out.payload,
                      inputs={name: self.paths[up] for name, up in target.inputs.items()},
                      input_keys={name: self.keys[up] for name, up in target.inputs.items() if up in self.keys},
                      cwd=self.cwd, timed=step.timed, replace=found is not None, policy=policy, staging=staging,
                      cpus=_threads(target.params) if target.kind in (CORRECTNESS, PROFILE) else 1,
                      hardware_bound=bound, family_modules=tuple(formats.external_modules()))
            # a provisional (or --remeasure) measurement is replaced under the same key
            self.reporter.target_running(target.id, staging / "log.txt")
        except BaseException:
            lock.close()
            raise
        self._pending[tid] = (out, lock, start)
        return job

    def finish(self, job: Job, result: RunResult) -> TargetOutcome:
        """The outcome of a run: its verified entry placed in the build folder, or its failure kept there."""
        out, lock, start = self._pending.pop(job.target_id)
        with lock:
            self.store.discard(job.staging)  # left by a worker that made its own, or a failure
            if result.no_space is not None:
                raise disk_full(Path(job.staging or self.store.tmp_dir) / "out",
                                f"the output of target {job.target_id}", detail=result.no_space)
            if not result.ok:
                out.status, out.reason, out.log_tail = FAILED, result.message, result.log_tail
                with writing(out.path, f"the log of failed target {job.target_id} to the build folder"):
                    _keep_failure_files(result.files, out)
                out.seconds = time.perf_counter() - start
                if result.input_error:
                    raise InputError(f"{job.target_id}: {result.message} (log: {out.log_path})")
                return out
            entry = self.store.lookup(job.key)  # what the run published, verified here
            if entry is None or entry.digest != result.digest:
                out.status = FAILED
                out.reason = (f"the entry its run published ({(result.digest or '')[:12]}) is not in the cache "
                              f"{self.store.root}" + (f" (ran on {result.where})" if result.where else "")
                              + ("" if entry is None else f"; it holds {entry.digest[:12]}"))
                out.seconds = time.perf_counter() - start
                return out
            return self._served(out, entry, BUILT, start)

    def abandon(self, job: Job) -> None:
        pending = self._pending.pop(job.target_id, None)
        if pending is not None:
            pending[1].close()
        self.store.discard(job.staging)

    def _served(self, out: TargetOutcome, entry: Any, status: str, start: float) -> TargetOutcome:
        out.status = status
        out.seconds = time.perf_counter() - start
        out.digest = entry.digest
        out.out_dir = entry.out
        out.result = entry.result
        _place(self.store, entry, out)
        self.digests[out.id], self.paths[out.id], self.keys[out.id] = entry.digest, entry.out, entry.key
        return out


def _threads(params: Any) -> int:
    """The threads a check or profile runs its model with (RuntimeOptions.intra_op_threads), else 1."""
    return max(1, int(getattr(getattr(params, "runtime", None), "intra_op_threads", 1) or 1))


def _servable(entry: Any, target: Any, out: TargetOutcome, policy: MeasurePolicy) -> Any:
    """``entry`` unless it is a measurement this build must take again (the reason goes to ``out``)."""
    why = None if entry is None else unservable_reason(load_step(target.step).timed, entry.result, policy)
    if why is None:
        out.reason = ""  # another process measured it again while we waited for the lock
        return entry
    out.reason = f"{MEASURED_AGAIN}: {why}"
    return None


def _place(store: Any, entry: Any, out: TargetOutcome) -> None:
    """Put the entry's artifacts, result, log and reproduce script under the build dir."""
    import json

    dest = out.path
    assert dest is not None
    with writing(dest, f"the files of target {out.id} to the build folder"):
        store.materialize(entry, dest)
        for name in SIDE_FILES:
            src = entry.path / name
            if src.is_file():
                _link_or_copy(src, dest / name)
        if out.result:
            (dest / "result.json").write_text(json.dumps(out.result, indent=2, sort_keys=True))
    out.log_path = dest / "log.txt"
    out.reproduce = dest / "reproduce.sh"


def _keep_failure_files(files: dict[str, str], out: TargetOutcome) -> None:
    """A failed run's log, job and reproduce script, into the target's folder of the build."""
    dest = out.path
    assert dest is not None
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name, text in files.items():
        (dest / name).write_text(text)
    if (dest / "reproduce.sh").is_file():
        (dest / "reproduce.sh").chmod(0o755)
    out.log_path = dest / "log.txt"
    out.reproduce = dest / "reproduce.sh"


def _link_or_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() or dest.is_symlink():
        if dest.stat().st_ino == src.stat().st_ino:
            return
        dest.unlink()
    try:
        dest.hardlink_to(src)
    except OSError:
        shutil.copy2(src, dest)


def _drain(store: Any) -> list[str]:
    warnings = list(getattr(store, "warnings", []))
    if warnings:
        store.warnings.clear()
    return warnings
