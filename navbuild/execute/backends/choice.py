"""The backend a build's ``executor`` section names (local child processes, or Ray tasks)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from navbuild.execute.backends.local import LocalBackend
from navbuild.execute.backends.ray_backend import RayBackend
from navbuild.executor_settings import ExecutorConfig

@contextlib.contextmanager
def open_backend(config: ExecutorConfig, store: Any, cwd: Path) -> Iterator[Any]:
    """The backend ``config`` names, closed (its Ray connection dropped) when the build ends."""
    if config.kind == "ray":
        backend: Any = RayBackend(store, cwd, address=config.address, runtime_env=dict(config.runtime_env))
    else:
        backend = LocalBackend(store, jobs=config.jobs)
    try:
        yield backend
    finally:
        backend.close()
