"""One target's run, as data a backend can ship (a thread, a Ray task) and what comes back from it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from navbuild.cache.fs import ran_out_of_space, writing
from navbuild.execute.isolation import log_tail, run_child, write_job
from navbuild.measure_conditions import MeasurePolicy, judge

#: the files beside a target's output that the build folder shows (and a failure keeps)
SIDE_FILES = ("log.txt", "reproduce.sh", "job.json")
#: the most log text a run sends back to the driver (the whole log stays in the cache entry)
_LOG_LIMIT = 1 << 20


@dataclass
class Job:
    """Everything a worker needs to build one cache miss: picklable, no open handles."""

    target_id: str
    step: str
    kind: str
    params: dict
    key: str
    payload: dict
    #: what the step reads, by name: a leaf's path, or an upstream entry's out/ folder
    inputs: dict[str, Path]
    #: the cache keys of the upstream targets among ``inputs`` (a worker may look them up itself)
    input_keys: dict[str, str]
    cwd: Path
    timed: bool = False
    #: a measurement measured again replaces the entry under the same key
    replace: bool = False
    policy: MeasurePolicy = field(default_factory=MeasurePolicy)
    #: the staging folder the driver made (None: the worker makes one in its store)
    staging: Path | None = None
    #: CPUs the run keeps busy (a check's or profile's threads), for a scheduler that places it
    cpus: int = 1
    #: whether the output depends on the machine: it must run on the hardware its key names
    hardware_bound: bool = False
    #: the format families registered outside navbuild, in the driver (the step's child imports them)
    family_modules: tuple[str, ...] = ()


@dataclass
class RunResult:
    """What came back from a run: its entry's digest, or why it failed with its log's tail and side files."""

    ok: bool
    digest: str | None = None
    message: str = ""
    log_tail: str = ""
    #: the log of the run (up to 1 MiB), sent back to the driver
    log: str = ""
    #: a failure's side files (log, job, reproduce script) by name, to keep in the build folder
    files: dict[str, str] = field(default_factory=dict)
    #: the step said the user's model or samples do not fit the recipe: the build stops
    input_error: bool = False
    #: the run ran out of disk space (what the step said, "" when it said nothing useful)
    no_space: str | None = None
    #: where it ran (a Ray node id), for messages
    where: str = ""


def run_job(job: Job, store: Any, started: Any = None) -> RunResult:
    """Write the job into a staging folder, run its step's child process, publish the entry to ``store``.

    Runs wherever the backend put it (a thread of the driver, a Ray worker); ``started(proc)``
    receives the child process (a backend that cancels stops it).
    """
    staging = Path(job.staging) if job.staging is not None and Path(job.staging).is_dir() else store.staging(job.key)
    try:
        # Ctrl-C (or any error) anywhere until the commit rename must not leave the staging
        # folder behind: gc only trusts a staging folder to be dead after an hour.
        with writing(staging, f"the job files of target {job.target_id}"):
            write_job(staging, job.target_id, job.step, job.params, job.inputs, job.cwd, job.family_modules)
        began = time.time()
        with writing(staging / "log.txt", f"the log of target {job.target_id}"):
            child = run_child(staging, job.cwd, started=started)
        log = _read(staging / "log.txt")
        if not child.ok:
            result = RunResult(ok=False, message=child.message, log_tail=child.log_tail, log=log,
                               input_error=child.input_error,
                               files={name: _read(staging / name, None) for name in SIDE_FILES if (staging / name).is_file()})
            if ran_out_of_space(staging, f"{child.message}\n{child.log_tail}"):
                # The step's own words may be opaque ("basic_ios::clear: iostream error").
                result.no_space = "" if child.message.startswith("child process") else f"the step said: {child.message}"
            store.discard(staging)
            return result
        info = {"target_id": job.target_id, "seconds": round(time.time() - began, 3), "created": time.time()}
        measured = judge(child.result, job.kind, job.policy) if job.timed else child.result
        entry = store.publish(job.key, staging, payload=job.payload, result=measured, info=info, replace=job.replace)
        return RunResult(ok=True, digest=entry.digest, log=log, log_tail=log_tail(entry.path / "log.txt"))
    except BaseException:
        store.discard(staging)  # a no-op once publish has renamed it into place
        raise


def _read(path: Path, limit: int | None = _LOG_LIMIT) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read(limit)
    except OSError:
        return ""
