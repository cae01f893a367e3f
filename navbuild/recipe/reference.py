"""The recipe's reference: every key with its type, default, allowed values and doc, rendered from the schema's declarations."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from navbuild.recipe.schema import Recipe
from navbuild.settings import describe_setting


def reference(cls: type = Recipe, prefix: str = "") -> list[tuple[str, str]]:
    """(key path, description) of every key of ``cls``, sections first named then entered.

    A list of sections is entered as ``key[]`` and a mapping of sections as ``key.<name>``.
    """
    rows: list[tuple[str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        hint = hints[f.name]
        inner, suffix = _section_of(hint)
        text = describe_setting(f, hint)
        if inner is not None and inner.__doc__ and not f.metadata.get("doc"):
            text += "; " + " ".join(inner.__doc__.split())  # a section: its docstring
        rows.append((path, text))
        if inner is not None:
            rows += reference(inner, f"{path}{suffix}.")
    return rows


def describe(cls: type = Recipe) -> str:
    """The reference as text, one ``key: type = default; choices; doc`` line per key."""
    return "\n".join(f"{path}: {text}" for path, text in reference(cls))


def _section_of(hint: Any) -> tuple[type | None, str]:
    """The section class a field holds (itself, in a list, in a mapping, or optional) and how its path continues."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return hint, ""
    if origin is typing.Union and len(args) == 1:
        return _section_of(args[0])
    if origin in (list, typing.List) and args and dataclasses.is_dataclass(args[0]):
        return args[0], "[]"
    if origin in (dict, typing.Dict) and len(args) == 2 and dataclasses.is_dataclass(args[1]):
        return args[1], ".<name>"
    return None, ""


__all__ = ["reference", "describe"]

if __name__ == "__main__":  # python -m navbuild.recipe.reference
    print(describe())
