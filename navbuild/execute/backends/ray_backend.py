"""Targets as Ray tasks: each miss runs on a worker of the cluster, hardware-bound ones on a node of the key's hardware.

A task gets the job and the (pickled) store: it looks its inputs up in the store by key, runs
the step's child process in a staging folder, publishes the entry to the store and returns the
digest, the result's log and, on failure, its side files. The driver then looks the entry up
itself (verified) and places it in the build folder. With a store on a local path the cluster
must see the same path (one machine, or a shared NFS folder).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import socket
from pathlib import Path
from typing import Any

from navbuild import formats
from navbuild.cache.keys import canonical_json
from navbuild.errors import RecipeError
from navbuild.execute.backends.job import Job, RunResult, run_job
from navbuild.execute.isolation import pythonpath
from navbuild.hardware import fingerprint
from navbuild.lazy import lazy_import

ray = lazy_import("ray")

#: how long ray.wait blocks before the driver looks for Ctrl-C again
_POLL_S = 0.5
#: how long the fingerprint of every node may take to come back
_FINGERPRINT_TIMEOUT_S = 120.0
#: Ray queues tasks by their resources: the driver keeps every ready target in flight
_IN_FLIGHT = 1 << 16


class RayBackend:
    """Runs jobs as Ray tasks (``max_retries=0``: a dead worker fails its target, keep-going decides)."""

    name = "ray"
    slots = _IN_FLIGHT

    def __init__(self, store: Any, cwd: Path, address: str = "", runtime_env: dict | None = None) -> None:
        self.store, self.cwd, self.address = store, cwd, address
        self.runtime_env = dict(runtime_env or {})
        self._connected = self._owns = False
        self._store_ref: Any = None
        self._refs: dict[Any, Job] = {}
        self._hardware: dict | None = None
        self._hardware_nodes: list[str] = []
        self._node_cpus: dict[str, float] = {}
        self._turn = 0
        #: what the build should know about where its hardware-bound targets run
        self.notes: list[str] = []

    # -- connection --------------------------------------------------------------------

    def _connect(self) -> None:
        if self._connected:
            return
        if importlib.util.find_spec("ray") is None:
            raise RecipeError("executor.kind: ray is not installed in this environment; "
                              "pip install 'navbuild[cluster]', or set executor.kind=local")
        env = dict(self.runtime_env)
        env_vars = {**env.get("env_vars", {})}
        # workers import navbuild (and the user's modules) from where this process does
        env_vars.setdefault("PYTHONPATH", pythonpath(self.cwd))
        if os.environ.get(formats.ENV_VAR):  # format families registered outside navbuild
            env_vars.setdefault(formats.ENV_VAR, os.environ[formats.ENV_VAR])
        env["env_vars"] = env_vars
        if not ray.is_initialized():
            options: dict[str, Any] = {"runtime_env": env, "logging_level": logging.WARNING, "log_to_driver": False}
            if not self.address:
                options["include_dashboard"] = False
            try:
                ray.init(address=self.address or None, **options)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
                raise RecipeError(f"executor.address: cannot connect to {where} ({e}); start it with "
                                  "`ray start --head`, or fix executor.address ('' starts a local Ray)") from e
            self._owns = True
        self._connected = True
        self._store_ref = ray.put(self.store)

    def close(self) -> None:
        if self._owns:
            ray.shutdown()
        self._connected = self._owns = False

    # -- hardware ----------------------------------------------------------------------

    @property
    def hardware(self) -> dict:
        """The fingerprint hardware-bound targets run on (and their keys hold).

        Every alive node is asked for its own, once per build; the driver's hardware when a node
        of it exists, else the first group found (sorted by node id).
        """
        if self._hardware is None:
            self._connect()
            self._hardware, self._hardware_nodes = self._discover()
        return self._hardware

    def _discover(self) -> tuple[dict, list[str]]:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = sorted((n for n in ray.nodes() if n.get("Alive")), key=lambda n: n["NodeID"])
        self._node_cpus = {n["NodeID"]: float(n.get("Resources", {}).get("CPU", 0)) for n in nodes}
        probe = ray.remote(_node_fingerprint)
        refs = [probe.options(num_cpus=0, max_retries=0,
                              scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
                for n in nodes]
        groups: dict[str, tuple[dict, list[str]]] = {}
        for node, found in zip(nodes, ray.get(refs, timeout=_FINGERPRINT_TIMEOUT_S)):
            groups.setdefault(canonical_json(found), (found, []))[1].append(node["NodeID"])
        if not groups:
            raise RecipeError(f"executor.address: the Ray cluster at {self.address or 'this machine'} has no "
                              "alive node to run targets on")
        own = canonical_json(fingerprint())
        chosen = own if own in groups else next(iter(groups))
        facts, where = groups[chosen]
        if chosen != own:
            self.notes.append(f"no node of the cluster has this machine's hardware: profiles run on "
                              f"{len(where)} node(s) of {facts.get('cpu_model')}")
        return facts, where

    # -- jobs --------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self._connect()
        options: dict[str, Any] = {"max_retries": 0, "num_cpus": job.cpus}
        if job.hardware_bound:
            _ = self.hardware
            node = self._hardware_nodes[self._turn % len(self._hardware_nodes)]
            self._turn += 1
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
            # a task asking more CPUs than its node has would wait forever
            options["num_cpus"] = max(1, min(job.cpus, int(self._node_cpus.get(node, job.cpus) or job.cpus)))
        else:
            _ = self.hardware  # knows every node's CPUs
            most = max(self._node_cpus.values(), default=job.cpus)
            options["num_cpus"] = max(1, min(job.cpus, int(most or job.cpus)))
        task = ray.remote(_run_on_worker).options(**options)
        self._refs[task.remote(job, self._store_ref)] = job

    def wait(self) -> list[tuple[Job, RunResult]]:
        """The tasks that ended (at least one); a dead worker or node is a failed run."""
        done: list[Any] = []
        while not done:  # short waits: Ctrl-C reaches the driver between them
            done, _ = ray.wait(list(self._refs), num_returns=1, timeout=_POLL_S)
        return [(self._refs.pop(ref), _outcome(ref)) for ref in done]

    def cancel(self) -> None:
        """Cancel every running task (its worker is killed, and the step's child process with it)."""
        for ref in list(self._refs):
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - a task that already ended cannot be cancelled
                pass
        self._refs.clear()


def _outcome(ref: Any) -> RunResult:
    """The task's result, or why it has none (its worker or node died, it was cancelled, it raised)."""
    exc = ray.exceptions
    try:
        return ray.get(ref)
    except exc.WorkerCrashedError as e:
        why = f"its Ray worker process died before it finished (WorkerCrashedError: {_first_line(e)})"
    except exc.NodeDiedError as e:
        why = f"the Ray node running its worker died (NodeDiedError: {_first_line(e)})"
    except (exc.ActorDiedError, exc.OwnerDiedError, exc.ObjectLostError, exc.LocalRayletDiedError) as e:
        why = f"its Ray worker was lost ({type(e).__name__}: {_first_line(e)})"
    except exc.TaskCancelledError:
        why = "its Ray task was cancelled"
    except exc.RayTaskError as e:
        cause = e.cause if getattr(e, "cause", None) is not None else e
        why = f"it failed on its Ray worker: {type(cause).__name__}: {_first_line(cause)}"
    except exc.RayError as e:  # its runtime_env could not be set up, it cannot be scheduled, ...
        why = f"Ray could not run it ({type(e).__name__}: {_first_line(e)})"
    return RunResult(ok=False, message=f"{why}; Ray does not retry it (max_retries=0)")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _node_fingerprint() -> dict:
    """Runs on one node: its hardware fingerprint."""
    return fingerprint()


def _run_on_worker(job: Job, store: Any) -> RunResult:
    """Runs on a Ray worker: the job's inputs looked up in the store by key, then run_job."""
    where = f"{socket.gethostname()} (pid {os.getpid()})"
    inputs = dict(job.inputs)
    for name, key in job.input_keys.items():
        entry = store.lookup(key)
        if entry is None:
            return RunResult(ok=False, where=where, message=f"input {name} ({key[:12]}) is not in the cache "
                             f"{store.root} as {where} sees it: the cluster must share the cache")
        inputs[name] = entry.out
    result = run_job(dataclasses.replace(job, inputs=inputs), store)
    result.where = where
    return result
