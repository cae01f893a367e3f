"""Where a recipe's files and modules are, for a build in a working directory, without importing them."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path


def module_origin(module: str, cwd: Path) -> Path | None:
    """The file that defines ``module`` for a build in ``cwd``, without importing it.

    The working directory comes first, as in the child processes that import it; a module of
    the same name already imported in this process (a notebook, a test run) must not hide the
    project's own file.
    """
    parts = module.split(".")
    local = cwd.joinpath(*parts)
    for candidate in (local.with_suffix(".py"), local / "__init__.py"):
        if candidate.is_file():
            return candidate
    if importlib.machinery.PathFinder.find_spec(parts[0], [str(cwd)]) is not None:
        return None  # a local package that does not hold this submodule
    added = str(cwd) not in sys.path
    if added:
        sys.path.insert(0, str(cwd))
    try:
        spec = importlib.util.find_spec(module)
    finally:
        if added:
            sys.path.remove(str(cwd))
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        return None
    return Path(spec.origin)


def resolve_path(path: str, cwd: Path) -> Path:
    """A recipe path: absolute, or relative to the working directory."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (cwd / p)


__all__ = ["module_origin", "resolve_path"]
