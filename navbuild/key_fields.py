"""Params fields added after keys were issued: they enter a key (and a job) only when set.

A frozen ``Params`` dataclass is hashed whole (every field, nested dataclasses included), so a
new field would change the key of every target that has it, even of targets that never use it.
Declared with :func:`added`, a field is left out of the key's data while it holds its default:
targets that leave it at the default keep the keys they had, and a target that sets it gets a
new key. Nothing here imports the rest of navbuild.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable

#: field metadata: the field is left out of the key's data while it equals its default
OMIT_AT_DEFAULT = "navbuild_key_omit_at_default"


def added(default: Any = None, *, factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field that joins the key only when it differs from ``default`` (or ``factory()``)."""
    metadata = {OMIT_AT_DEFAULT: True}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def key_data(value: Any) -> Any:
    """``dataclasses.asdict`` of ``value`` (recursively, through tuples, lists and dicts), without the
    :func:`added` fields that hold their default."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.metadata.get(OMIT_AT_DEFAULT) and item == _default(f):
                continue
            out[f.name] = key_data(item)
        return out
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple, as asdict keeps it
        return type(value)(*(key_data(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(key_data(v) for v in value)
    if isinstance(value, dict):
        return type(value)((key_data(k), key_data(v)) for k, v in value.items())
    return copy.deepcopy(value)


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return f.default


__all__ = ["added", "key_data", "OMIT_AT_DEFAULT"]
