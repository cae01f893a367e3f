"""Runs a graph: cache lookups under per-key locks, child processes, atomic publish, keep-going."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from navbuild.cache.keys import cache_key
from navbuild.errors import InputError
from navbuild.execute.isolation import run_child, write_job
from navbuild.planning.graph import Graph
from navbuild.planning.status import leaf_digest, payload_for, unavailable_reason
from navbuild.planning.target import CORRECTNESS, PROFILE
from navbuild.report.events import Reporter
from navbuild.steps.base import load_step, params_to_dict

BUILT, CACHED, FAILED, SKIPPED, UNAVAILABLE = "built", "cached", "failed", "skipped", "unavailable"
_SIDE_FILES = ("log.txt", "reproduce.sh", "job.json")


@dataclass
class TargetOutcome:
    """What happened to one target in a build."""

    id: str
    kind: str
    variant: str | None
    status: str
    key: str | None = None
    payload: dict | None = None
    digest: str | None = None
    seconds: float = 0.0
    result: dict = field(default_factory=dict)
    reason: str = ""
    path: Path | None = None  # the target's folder under the build dir
    out_dir: Path | None = None  # the cache entry's out/ folder (what dependents read)
    log_path: Path | None = None
    reproduce: Path | None = None
    log_tail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "variant": self.variant, "status": self.status,
                "key": self.key, "digest": self.digest, "seconds": round(self.seconds, 3),
                "reason": self.reason, "path": str(self.path) if self.path else None,
                "log": str(self.log_path) if self.log_path else None}


def execute(graph: Graph, store: Any, build_dir: Path, cwd: Path, reporter: Reporter,
            keep_going: bool = True, done: dict[str, TargetOutcome] | None = None) -> dict[str, TargetOutcome]:
    """Build every target of ``graph`` in order; return each target's outcome.

    A failing target does not stop its siblings (unless ``keep_going`` is false); its
    dependents are skipped. An ``InputError`` from a step (the user's model or samples do
    not fit the recipe) stops the build at once and is raised: nothing of it is published.
    """
    digests: dict[str, str] = {lid: leaf_digest(leaf, store.memo) for lid, leaf in graph.leaves.items()}
    paths: dict[str, Path] = {lid: leaf.path for lid, leaf in graph.leaves.items()}
    outcomes: dict[str, TargetOutcome] = {}
    stop = False
    for tid in graph.order:
        if done and tid in done:  # settled earlier in this build (a second phase adds targets)
            outcomes[tid] = done[tid]
            if done[tid].digest is not None and done[tid].out_dir is not None:
                digests[tid], paths[tid] = done[tid].digest, done[tid].out_dir
            continue
        target = graph.targets[tid]
        out = TargetOutcome(id=tid, kind=target.kind, variant=target.variant, status=SKIPPED,
                            path=build_dir / tid)
        outcomes[tid] = out
        if stop:
            out.reason = "build stopped after a failure (keep_going is off)"
        elif (why := unavailable_reason(target)):
            out.status, out.reason = UNAVAILABLE, why
        elif (blocked := [up for up in target.inputs.values() if up not in digests]):
            up = blocked[0]
            up_status = outcomes[up].status if up in outcomes else "missing"
            out.reason = f"input {up} {up_status}"
        elif target.kind == PROFILE and (why := _failed_check(outcomes, target.variant)):
            out.reason = why
        else:
            upstream = {name: digests[up] for name, up in target.inputs.items()}
            out.payload = payload_for(target, upstream)
            out.key = cache_key(out.payload)
            inputs = {name: paths[up] for name, up in target.inputs.items()}
            entry = _build_one(target, out, inputs, store, cwd, reporter)
            if entry is not None:
                digests[tid] = entry.digest
                paths[tid] = entry.out
            elif not keep_going:
                stop = True
        for w in _drain(store):
            reporter.warning(w)
        reporter.target_finished(out)
    return outcomes


def _failed_check(outcomes: dict[str, TargetOutcome], variant: str | None) -> str | None:
    check = outcomes.get(f"{CORRECTNESS}/{variant}")
    if check is None:
        return None
    if check.status not in (BUILT, CACHED):
        return f"correctness/{variant} {check.status}"
    if check.result.get("verdict") != "pass":
        return f"correctness failed: {check.result.get('reason', '')}".rstrip(": ")
    return None


def _build_one(target: Any, out: TargetOutcome, inputs: dict[str, Path], store: Any, cwd: Path,
               reporter: Reporter) -> Any:
    start = time.perf_counter()
    entry = store.lookup(out.key)
    if entry is None:
        with store.lock(out.key):
            entry = store.lookup(out.key)  # another process may have built it while we waited
            if entry is None:
                reporter.target_started(target.id, target.kind)
                entry = _run_and_publish(target, out, inputs, store, cwd)
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


def _run_and_publish(target: Any, out: TargetOutcome, inputs: dict[str, Path], store: Any, cwd: Path):
    staging = store.staging(out.key)
    try:
        # Ctrl-C (or any error) anywhere until the commit rename must not leave the staging
        # folder behind: gc only trusts a staging folder to be dead after an hour.
        step = load_step(target.step)
        write_job(staging, target.id, step.name, params_to_dict(target.params), inputs, cwd)
        started = time.time()
        child = run_child(staging, cwd)
        if not child.ok:
            out.status, out.reason, out.log_tail = FAILED, child.message, child.log_tail
            _keep_failure_files(staging, out)
            store.discard(staging)
            if child.input_error:
                raise InputError(f"{target.id}: {child.message} (log: {out.log_path})")
            return None
        info = {"target_id": target.id, "seconds": round(time.time() - started, 3), "created": time.time()}
        return store.publish(out.key, staging, payload=out.payload, result=child.result, info=info)
    except BaseException:
        store.discard(staging)  # a no-op once publish has renamed it into place
        raise


def _place(store: Any, entry: Any, out: TargetOutcome) -> None:
    """Put the entry's artifacts, result, log and reproduce script under the build dir."""
    import json

    dest = out.path
    assert dest is not None
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
