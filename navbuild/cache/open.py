"""Which store a cache setting names: a folder (the local Store) or an fsspec URL (a RemoteStore)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from navbuild.cache.remote import LOCAL_CACHE_ENV, RemoteStore, default_local_cache
from navbuild.cache.store import CACHE_ENV, Store, resolve_cache_dir


def configured_cache(configured: str | None) -> str:
    """The cache setting in force: ``configured`` (the recipe's ``cache.dir``), else ``$NAVBUILD_CACHE_DIR``."""
    return str(configured or os.environ.get(CACHE_ENV) or "")


def is_url(setting: str) -> bool:
    """Whether a cache setting names an object store (``s3://...``, ``file:///...``), not a folder."""
    return "://" in setting


def local_cache_root(configured: str | None, cwd: Path | None = None) -> Path:
    """The local folder of the store a setting names: the store itself, or a remote store's local cache."""
    setting = configured_cache(configured)
    if not is_url(setting):
        return resolve_cache_dir(configured, cwd)
    local = os.environ.get(LOCAL_CACHE_ENV)
    return resolve_cache_dir(local, cwd) if local else default_local_cache(setting.rstrip("/"))


def open_store(configured: str | None, cwd: Path | None = None) -> Any:
    """The store a cache setting names (nothing is created or contacted until it is used).

    A plain path (or none) is the local Store, as always. An fsspec URL is a RemoteStore read
    through a local cache at ``$NAVBUILD_LOCAL_CACHE`` (default ``~/.cache/navbuild/remote/<sha>``).
    """
    setting = configured_cache(configured)
    if not is_url(setting):
        return Store(resolve_cache_dir(configured, cwd))
    local = os.environ.get(LOCAL_CACHE_ENV)
    return RemoteStore(setting, resolve_cache_dir(local, cwd) if local else None)
