"""Targets run on this machine: each in its own child process, up to ``jobs`` at once (threads wait on them)."""

from __future__ import annotations

import concurrent.futures as cf
import threading
from typing import Any

from navbuild.execute.backends.job import Job, RunResult, run_job
from navbuild.hardware import fingerprint


class LocalBackend:
    """Runs jobs in child processes of this one; with ``jobs`` 1 in the driver's own thread, as always.

    With more, a thread per running job waits on its child process; ``cancel`` stops every
    child (and what it started), so Ctrl-C leaves nothing behind.
    """

    name = "local"

    def __init__(self, store: Any, jobs: int = 1) -> None:
        self.store = store
        self.slots = max(1, jobs)
        self._queued: list[Job] = []  # jobs=1: run by wait(), in this thread
        self._pool = cf.ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="navbuild-job") \
            if self.slots > 1 else None
        self._futures: dict[cf.Future, Job] = {}
        self._procs: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._cancelled = False

    @property
    def hardware(self) -> dict:
        """The fingerprint that hardware-dependent keys hold: this machine's."""
        return fingerprint()

    def submit(self, job: Job) -> None:
        if self._pool is None:
            self._queued.append(job)
            return
        self._futures[self._pool.submit(self._run, job)] = job

    def _run(self, job: Job) -> RunResult:
        def started(proc: Any) -> None:
            with self._lock:
                self._procs[job.target_id] = proc
                cancelled = self._cancelled
            if cancelled:
                proc.stop()

        try:
            return run_job(job, self.store, started=started)
        finally:
            with self._lock:
                self._procs.pop(job.target_id, None)

    def wait(self) -> list[tuple[Job, RunResult]]:
        """The jobs that finished (at least one; blocks until one does)."""
        if self._pool is None:
            job = self._queued.pop(0)
            return [(job, run_job(job, self.store))]
        done, _ = cf.wait(list(self._futures), return_when=cf.FIRST_COMPLETED)
        return [(self._futures.pop(f), f.result()) for f in done]

    def cancel(self) -> None:
        """Stop every running job's child process and wait for their threads."""
        self._queued.clear()
        with self._lock:
            self._cancelled = True
            procs = list(self._procs.values())
        for proc in procs:
            proc.stop()
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
