"""The ``navbuild_ray`` launcher's settings, registered as the Hydra config ``hydra/launcher=navbuild_ray``."""

# no `from __future__ import annotations`: Hydra executes plugin modules outside sys.modules while
# scanning, where dataclasses cannot resolve string annotations
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class NavbuildRayLauncherConf:
    """Where the sweep's points run (``address``) and what each point's task asks Ray for (``remote``)."""

    _target_: str = "hydra_plugins.navbuild_ray_launcher.launcher.NavbuildRayLauncher"
    #: the Ray cluster: null starts a local Ray for the sweep and stops it after; "auto",
    #: "HOST:6379" or "ray://HOST:10001" joins a running cluster (left running)
    address: Optional[str] = None
    #: CPUs of the local Ray started when address is null (null: all of this machine's)
    num_cpus: Optional[int] = None
    #: Ray task options of each point (num_cpus, num_gpus, resources, ...): with num_cpus 1 a
    #: local Ray of N CPUs runs N points at a time. A point whose worker dies is not retried:
    #: it comes back as a failed point
    remote: Dict[str, Any] = field(default_factory=lambda: {"num_cpus": 1, "max_retries": 0})


ConfigStore.instance().store(group="hydra/launcher", name="navbuild_ray", node=NavbuildRayLauncherConf,
                             provider="navbuild")
