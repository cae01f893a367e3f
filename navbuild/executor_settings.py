"""The recipe's ``executor`` section: where a build's targets run and how many at once.

Read by navbuild.execute.backends.choice; declared here, below the recipe's schema, because the
execute package sits above it (it plans, and planning reads the recipe).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

from navbuild.settings import setting

KINDS = ("local", "ray")


@dataclass
class ExecutorConfig:
    """How a build runs its targets (not what it builds: no key holds these)."""

    kind: str = setting("local", choices=KINDS, doc="local: child processes on this machine; ray: Ray tasks "
                        "on a cluster (pip install 'navbuild[cluster]')")
    jobs: int = setting(1, minimum=1, doc="local: targets run at once (a timed target, a profile, always runs "
                        "alone); default 1")
    address: str = setting("", doc="ray: the cluster's address ('127.0.0.1:6379', 'ray://host:10001', 'auto'); "
                           "'' starts a Ray on this machine for the build")
    runtime_env: Dict[str, Any] = setting(factory=dict, doc="ray: the runtime_env of the build's tasks "
                                          "(env_vars, ...); PYTHONPATH defaults to this process's path")
