"""The ``navbuild_ray`` Hydra launcher: each sweep point a Ray task; Ray schedules them, the launcher collects.

A point's task runs Hydra's job (its config, its task function) in a Ray worker and returns
the JobReturn. A task that raised, or whose worker died, comes back as a FAILED JobReturn
holding Ray's error; every point is waited for. A local Ray started for the sweep is shut down
when the sweep ends, whatever happened; a cluster it joined is left running.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


def run_point(hydra_context: HydraContext, sweep_config: DictConfig, task_function: TaskFunction,
              singleton_state: Dict[Any, Any]) -> JobReturn:
    """Run one point's Hydra job (in a Ray worker): Hydra's state as the driver had it, then the task."""
    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(sweep_config)
    return run_job(hydra_context=hydra_context, task_function=task_function, config=sweep_config,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


class NavbuildRayLauncher(Launcher):
    """Launches a sweep's points as Ray tasks on a local or a running Ray cluster."""

    def __init__(self, address: Optional[str] = None, num_cpus: Optional[int] = None,
                 remote: Optional[DictConfig] = None) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.remote = OmegaConf.to_container(remote, resolve=True) if isinstance(remote, DictConfig) else dict(remote or {})
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None
        self.config: Optional[DictConfig] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.config = config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import ray

        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        started = not ray.is_initialized()
        if started:
            ray.init(**self._init_args())
        try:
            task = ray.remote(run_point).options(**self.remote)
            submitted = []
            for idx, overrides in enumerate(job_overrides, initial_job_idx):
                log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
                sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
                with open_dict(sweep_config):
                    sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
                    sweep_config.hydra.job.num = idx
                ref = task.remote(self.hydra_context, sweep_config, self.task_function, Singleton.get_state())
                submitted.append((list(overrides), ref))
            try:
                return [self._collect(overrides, ref) for overrides, ref in submitted]
            except KeyboardInterrupt:
                for _, ref in submitted:
                    ray.cancel(ref, force=True)
                raise
        finally:
            if started:
                ray.shutdown()

    def _init_args(self) -> Dict[str, Any]:
        """ray.init's arguments: join the cluster at ``address``, or start a local Ray of the sweep's own.

        ray.init maps 127.0.0.1 to the node's address, so a local Ray listens there (without its
        dashboard); a cluster started by ``ray start --head --node-ip-address=127.0.0.1`` and
        joined by ``address`` keeps to loopback.
        """
        if self.address:
            return {"address": self.address}
        # "local": a new Ray of this sweep's own, never one that `ray start` left running here
        return {"address": "local", "num_cpus": self.num_cpus, "include_dashboard": False}

    @staticmethod
    def _collect(overrides: list, ref: Any) -> JobReturn:
        """A point's JobReturn; a task that raised or whose worker died is a FAILED one holding Ray's error."""
        import ray

        try:
            return ray.get(ref)
        except ray.exceptions.RayError as exc:
            log.error(f"sweep point {' '.join(overrides)} failed on Ray: {type(exc).__name__}")
            return JobReturn(overrides=overrides, status=JobStatus.FAILED, _return_value=exc)
