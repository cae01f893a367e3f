"""Runs a graph: cache lookups under per-key locks, child processes, atomic publish, keep-going."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from navbuild.cache.fs import disk_full, ran_out_of_space, writing
from navbuild.cache.keys import cache_key
from navbuild.errors import InputError
from navbuild.execute.isolation import run_child, write_job
from navbuild.measure_conditions import MeasurePolicy, judge, unservable_reason
from navbuild.planning.graph import Graph
from navbuild.planning.outcome import BUILT, CACHED, FAILED, SKIPPED, UNAVAILABLE, TargetOutcome, failed_check
from navbuild.planning.status import leaf_digest, payload_for, unavailable_reason
from navbuild.planning.target import PROFILE
from navbuild.report.events import Reporter
from navbuild.steps.base import load_step, params_to_dict

_SIDE_FILES = ("log.txt", "reproduce.sh", "job.json")


def execute(graph: Graph, store: Any, build_dir: Path, cwd: Path, reporter: Reporter,
            keep_going: bool = True) -> dict[str, TargetOutcome]:
    """Build every target of ``graph`` in order, and those its generators add; return each target's outcome.

    One loop: once what a generator waits for is settled, it runs and adds its targets (the
    finalists, the Triton targets), and the loop goes on until no target is left to build.
    A failing target does not stop its siblings (unless ``keep_going`` is false: then nothing
    more runs and no generator is expanded); its dependents are skipped. An ``InputError``
    from a step (the user's model or samples do not fit the recipe) stops the build at once
    and is raised: nothing of it is published.
    """
    digests: dict[str, str] = {}
    paths: dict[str, Path] = {}
    outcomes: dict[str, TargetOutcome] = {}
    stop = False
    while True:
        for lid, leaf in graph.leaves.items():  # a generator may add leaves (the Triton server)
            if lid not in digests:
                digests[lid], paths[lid] = leaf_digest(leaf, store.memo), leaf.path
        for tid in graph.order:
            if tid in outcomes:
                continue
            outcomes[tid] = out = _settle(graph, tid, outcomes, digests, paths, store, build_dir, cwd, reporter,
                                          stopped=stop)
            if out.status == FAILED and not keep_going:
                stop = True
            for w in _drain(store):
                reporter.warning(w)
            reporter.target_finished(out)
        ready = [] if stop else graph.ready(lambda tid: tid in outcomes)
        if not ready:
            return outcomes
        for generator in ready:
            for w in graph.expand(generator, outcomes).warnings:
                reporter.warning(w)
        reporter.targets_total(len(graph.targets), final=not graph.unexpanded())


def _settle(graph: Graph, tid: str, outcomes: dict[str, TargetOutcome], digests: dict[str, str],
            paths: dict[str, Path], store: Any, build_dir: Path, cwd: Path, reporter: Reporter,
            stopped: bool) -> TargetOutcome:
    """Serve, build, skip or mark unavailable one target; a settled one's digest and folder join ``digests``/``paths``."""
    target = graph.targets[tid]
    out = TargetOutcome(id=tid, kind=target.kind, variant=target.variant, status=SKIPPED, path=build_dir / tid)
    if stopped:
        out.reason = "build stopped after a failure (keep_going is off)"
    elif (why := unavailable_reason(target)):
        out.status, out.reason = UNAVAILABLE, why
    elif (blocked := [up for up in target.inputs.values() if up not in digests]):
        up = blocked[0]
        up_status = outcomes[up].status if up in outcomes else "missing"
        out.reason = f"input {up} {up_status}"
    elif target.kind == PROFILE and (why := failed_check(outcomes, target.variant)):
        out.reason = why
    else:
        upstream = {name: digests[up] for name, up in target.inputs.items()}
        out.payload = payload_for(target, upstream)
        out.key = cache_key(out.payload)
        inputs = {name: paths[up] for name, up in target.inputs.items()}
        entry = _build_one(target, out, inputs, store, cwd, reporter, graph.measure)
        if entry is not None:
            digests[tid] = entry.digest
            paths[tid] = entry.out
    return out


def _build_one(target: Any, out: TargetOutcome, inputs: dict[str, Path], store: Any, cwd: Path,
               reporter: Reporter, policy: MeasurePolicy = MeasurePolicy()) -> Any:
    start = time.perf_counter()
    found = store.lookup(out.key)
    entry = _servable(found, target, out, policy)
    if entry is None and (why := store.unwritable_reason()) is not None:
        # A cache that can be read but not written serves what it holds; a miss cannot be built.
        if found is None:
            out.status, out.reason = FAILED, f"not in the cache, and cannot be built into it: {why}"
            return None
        entry, out.reason = found, f"provisional measurement served: the cache cannot be written ({why})"
    if entry is None:
        with store.lock(out.key, what=target.id, on_wait=lambda holder: reporter.waiting(target.id, holder)):
            found = store.lookup(out.key)  # another process may have built it while we waited
            entry = _servable(found, target, out, policy)
            if entry is None:
                reporter.target_started(target.id, target.kind)
                # a provisional (or --remeasure) measurement is replaced under the same key
                entry = _run_and_publish(target, out, inputs, store, cwd, reporter, policy,
                                         replace=found is not None)
                if entry is None:
                    out.seconds = time.perf_counter() - start
                    return None
                out.status = BUILT
    if out.status != BUILT:
        out.status = CACHED
    out.seconds = time.perf_counter() - start
    out.digest = entry.digest
    out.out_dir = entry.out
    out.result = entry.result
    _place(store, entry, out)
    return entry


def _servable(entry: Any, target: Any, out: TargetOutcome, policy: MeasurePolicy) -> Any:
    """``entry`` unless it is a measurement this build must take again (the reason goes to ``out``)."""
    why = None if entry is None else unservable_reason(load_step(target.step).timed, entry.result, policy)
    if why is None:
        out.reason = ""  # another process measured it again while we waited for the lock
        return entry
    out.reason = f"measured again: {why}"
    return None


def _run_and_publish(target: Any, out: TargetOutcome, inputs: dict[str, Path], store: Any, cwd: Path,
                     reporter: Reporter | None = None, policy: MeasurePolicy = MeasurePolicy(),
                     replace: bool = False):
    staging = store.staging(out.key)
    try:
        # Ctrl-C (or any error) anywhere until the commit rename must not leave the staging
        # folder behind: gc only trusts a staging folder to be dead after an hour.
        step = load_step(target.step)
        with writing(staging, f"the job files of target {target.id}"):
            write_job(staging, target.id, step.name, params_to_dict(target.params), inputs, cwd)
        started = time.time()
        if reporter is not None:
            reporter.target_running(target.id, staging / "log.txt")
        with writing(staging / "log.txt", f"the log of target {target.id}"):
            child = run_child(staging, cwd)
        if not child.ok:
            if ran_out_of_space(staging, f"{child.message}\n{child.log_tail}"):
                # The step's own words may be opaque ("basic_ios::clear: iostream error").
                said = "" if child.message.startswith("child process") else f"the step said: {child.message}"
                raise disk_full(staging / "out", f"the output of target {target.id}", detail=said)
            out.status, out.reason, out.log_tail = FAILED, child.message, child.log_tail
            with writing(out.path or staging, f"the log of failed target {target.id} to the build folder"):
                _keep_failure_files(staging, out)
            store.discard(staging)
            if child.input_error:
                raise InputError(f"{target.id}: {child.message} (log: {out.log_path})")
            return None
        info = {"target_id": target.id, "seconds": round(time.time() - started, 3), "created": time.time()}
        result = judge(child.result, target.kind, policy) if step.timed else child.result
        return store.publish(out.key, staging, payload=out.payload, result=result, info=info, replace=replace)
    except BaseException:
        store.discard(staging)  # a no-op once publish has renamed it into place
        raise


def _place(store: Any, entry: Any, out: TargetOutcome) -> None:
    """Put the entry's artifacts, result, log and reproduce script under the build dir."""
    import json

    dest = out.path
    assert dest is not None
    with writing(dest, f"the files of target {out.id} to the build folder"):
        store.materialize(entry, dest)
        for name in _SIDE_FILES:
            src = entry.path / name
            if src.is_file():
                _link_or_copy(src, dest / name)
        if out.result:
            (dest / "result.json").write_text(json.dumps(out.result, indent=2, sort_keys=True))
    out.log_path = dest / "log.txt"
    out.reproduce = dest / "reproduce.sh"


def _keep_failure_files(staging: Path, out: TargetOutcome) -> None:
    dest = out.path
    assert dest is not None
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in _SIDE_FILES:
        if (staging / name).is_file():
            shutil.copy2(staging / name, dest / name)
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
