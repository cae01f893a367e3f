"""Third-party modules bound at a module's top but imported on first use (Polygraphy's
``lazy_import``), so that a command that never touches one (``navbuild plan``, a no-op
rebuild) does not pay for importing it."""

from __future__ import annotations

import importlib
import types
from typing import Any


class LazyModule(types.ModuleType):
    """Stands for module ``name`` until an attribute is read, then becomes a view of it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self.__name__)
        # later reads find the module's names here and never come back to __getattr__
        self.__dict__.update(module.__dict__)
        return getattr(module, attr)


def lazy_import(name: str) -> Any:
    """``np = lazy_import("numpy")`` at a module's top: numpy is imported when ``np.x`` is first read."""
    return LazyModule(name)
