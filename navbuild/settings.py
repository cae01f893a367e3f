"""Settings declared once: a field's default, allowed values, bounds and doc, and what is derived from them.

A recipe section is a dataclass whose fields are made with :func:`setting`; the same
declaration gives the recipe's default (Hydra reads the dataclass), the check of its value
(:func:`check_settings`, with "did you mean"), its reference text (:func:`describe_setting`)
and, through :func:`params_of`, the frozen ``Params`` of the step that reads it, so the cache
key holds exactly the section's fields. Nothing here imports the rest of navbuild.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from typing import Any, Callable, Iterable, Mapping, Sequence

_CHOICES = "choices"
_DOC = "doc"
_MIN = "minimum"
_MAX = "maximum"
_ABOVE = "above"
_NOTE = "note"
_CHECK = "check"

#: the default of a value the recipe must give (omegaconf.MISSING, which Hydra reports when unset)
REQUIRED = "???"


def setting(default: Any = dataclasses.MISSING, *, factory: Callable[[], Any] | None = None,
            choices: Sequence[Any] | None = None, minimum: float | None = None, maximum: float | None = None,
            above: float | None = None, note: str = "", check: Callable[[Any], str | None] | None = None,
            doc: str = "") -> Any:
    """A dataclass field that carries its allowed values and its doc beside its default.

    ``choices``: the values it may take (each item, for a list). ``minimum``/``maximum``: inclusive
    bounds, ``above``: an exclusive lower bound (each item, for a list). ``note`` is appended to a
    bound's message (e.g. ``"0 = detect"``). ``check``: what else a value (each item) must be, as a
    function returning the problem (the text after ``path: ``) or None; it replaces the choices'
    and bounds' own messages. ``factory`` makes a mutable default (a list, a dict).
    """
    metadata: dict[str, Any] = {_DOC: doc}
    if check is not None:
        metadata[_CHECK] = check
    if choices is not None:
        metadata[_CHOICES] = tuple(choices)
    for key, value in ((_MIN, minimum), (_MAX, maximum), (_ABOVE, above)):
        if value is not None:
            metadata[key] = value
    if note:
        metadata[_NOTE] = note
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def choices_of(cls: type, name: str) -> tuple[Any, ...]:
    """The allowed values declared on field ``name`` of dataclass ``cls`` (empty: any)."""
    return _field(cls, name).metadata.get(_CHOICES, ())


def doc_of(cls: type, name: str) -> str:
    """The doc declared on field ``name`` of dataclass ``cls``."""
    return _field(cls, name).metadata.get(_DOC, "")


def _field(cls: type, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no field '{name}'")


# ----------------------------------------------------------------------------- checks

def unknown(value: Any, choices: Iterable[Any], path: str, word: str = "value") -> str:
    """The message for a value (or, with ``word="key"``, a key) that is not one of ``choices``."""
    choices = [str(c) for c in choices]
    close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{path}: unknown {word} '{value}'{hint}; choose one of {', '.join(choices)}"


def regex_problem(pattern: Any) -> str | None:
    """A :func:`setting` check: the problem of a string that is not a regular expression, or None."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"'{pattern}' is not a regular expression ({exc})"
    return None


def check_choice(value: Any, choices: Iterable[Any], path: str) -> str | None:
    """None when ``value`` is one of ``choices``, else the :func:`unknown` message."""
    choices = list(choices)
    return None if value in choices else unknown(value, choices, path)


def check_settings(obj: Any, prefix: str = "", skip: Iterable[str] = ()) -> list[str]:
    """Every problem of a (nested) dataclass instance against its fields' declared choices and
    bounds, each named by its key path (``prefix`` + field, ``[i]`` for list items, ``.key`` for
    mapping values). Paths in ``skip`` are not entered (a section that is switched off)."""
    problems: list[str] = []
    _walk(obj, prefix, frozenset(skip), problems)
    return problems


def _walk(obj: Any, prefix: str, skip: frozenset[str], problems: list[str]) -> None:
    for f in dataclasses.fields(obj):
        path = f"{prefix}{f.name}"
        if path in skip:
            continue
        value = getattr(obj, f.name)
        if isinstance(value, (list, tuple)):
            items = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
        elif isinstance(value, Mapping):
            items = [(f"{path}.{k}", v) for k, v in value.items()]
        else:
            items = [(path, value)]
        for where, item in items:
            if dataclasses.is_dataclass(item):
                _walk(item, where + ".", skip, problems)
            elif item is not None and (problem := _check_one(item, f.metadata, where)):
                problems.append(problem)


def _check_one(value: Any, meta: Mapping[str, Any], path: str) -> str | None:
    if _CHECK in meta:
        problem = meta[_CHECK](value)
        return None if problem is None else f"{path}: {problem}"
    if _CHOICES in meta:
        return check_choice(value, meta[_CHOICES], path)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    note = f" ({meta[_NOTE]})" if _NOTE in meta else ""
    low, high = meta.get(_MIN), meta.get(_MAX)
    if low is not None and high is not None:
        if not low <= value <= high:
            return f"{path}: {value} must be between {low} and {high}{note}"
    elif low is not None and value < low:
        return f"{path}: {value} must be >= {low}{note}"
    elif high is not None and value > high:
        return f"{path}: {value} must be <= {high}{note}"
    if _ABOVE in meta and value <= meta[_ABOVE]:
        return f"{path}: {value} must be > {meta[_ABOVE]}{note}"
    return None


# ----------------------------------------------------------------------------- docs

def describe_setting(f: dataclasses.Field, hint: Any) -> str:
    """One field's reference text: its type, default, allowed values or bounds, and doc."""
    parts = [f"{type_name(hint)} = {_default_text(f)}"]
    meta = f.metadata
    if _CHOICES in meta:
        parts.append(f"one of {', '.join(str(c) for c in meta[_CHOICES])}")
    bounds = [f">= {meta[_MIN]}" if _MIN in meta else "", f"<= {meta[_MAX]}" if _MAX in meta else "",
              f"> {meta[_ABOVE]}" if _ABOVE in meta else ""]
    if any(bounds):
        parts.append(" and ".join(b for b in bounds if b) + (f" ({meta[_NOTE]})" if _NOTE in meta else ""))
    if meta.get(_DOC):
        parts.append(meta[_DOC])
    return "; ".join(parts)


def type_name(hint: Any) -> str:
    """A type hint as a recipe writer reads it: ``int``, ``list[str]``, ``str | null``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        return " | ".join("null" if a is type(None) else type_name(a) for a in args)
    if origin in (list, tuple):
        return f"list[{type_name(args[0])}]" if args else "list"
    if origin in (dict, Mapping, typing.Mapping):
        return f"dict[{', '.join(type_name(a) for a in args)}]" if args else "dict"
    if hint is Any:
        return "any"
    return getattr(hint, "__name__", str(hint))


def _default_text(f: dataclasses.Field) -> str:
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if dataclasses.is_dataclass(value):
            return "(a section)"
        if isinstance(value, dict):  # e.g. per-precision budgets: show the sections' values
            value = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in value.items()}
        return repr(value)
    if f.default is dataclasses.MISSING or f.default == REQUIRED:
        return "(required)"
    return "null" if f.default is None else repr(f.default)


# ----------------------------------------------------------------------------- step params

def params_of(section: type, name: str, module: str, *, bases: tuple[type, ...] = (),
              only: Sequence[str] | None = None, rename: Mapping[str, str] | None = None) -> type:
    """A step's frozen ``Params`` made from a recipe section: the section's fields (``only`` those,
    in order; ``rename`` maps a section name to the Params name), after the fields of ``bases``,
    with lists as tuples and the same defaults, choices and docs. ``module`` (the step module's
    ``__name__``) makes the class importable by name, as pickling needs.

    The class also carries ``section`` (the section class), ``section_fields`` (Params field ->
    section field) and ``from_section(values, **more)``, which the planner builds it with."""
    hints = typing.get_type_hints(section)
    rename = dict(rename or {})
    by_name = {f.name: f for f in dataclasses.fields(section)}
    names = list(only) if only is not None else list(by_name)
    fields = []
    for key in names:
        f = by_name[key]
        fields.append((rename.get(key, key), _frozen_hint(hints[key]), _frozen_field(f)))
    doc = f"Params of the recipe section {section.__name__} (generated by navbuild.settings.params_of)."

    def from_section(cls: type, values: Any, /, **more: Any) -> Any:
        """These Params from a section's values (lists become tuples); ``more`` gives the other
        fields and overrides what the planner resolves (e.g. a preset "auto")."""
        taken = {rename.get(key, key): _frozen_value(getattr(values, key)) for key in names}
        return cls(**{**taken, **more})

    return dataclasses.make_dataclass(name, fields, bases=bases, frozen=True,
                                      namespace={"__module__": module, "__doc__": doc,
                                                 "from_section": classmethod(from_section),
                                                 "section": section,
                                                 "section_fields": {rename.get(k, k): k for k in names}})


def _frozen_hint(hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, typing.List):
        return tuple[(_frozen_hint(args[0]) if args else Any), ...]
    if origin is typing.Union:
        return typing.Union[tuple(_frozen_hint(a) for a in args)]
    return hint


def _frozen_value(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _frozen_field(f: dataclasses.Field) -> dataclasses.Field:
    if f.default == REQUIRED:  # required in the recipe: required in the Params
        return dataclasses.field(metadata=f.metadata)
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if isinstance(value, list):
            return dataclasses.field(default=tuple(value), metadata=f.metadata)
        return dataclasses.field(default_factory=f.default_factory, metadata=f.metadata)
    return dataclasses.field(default=f.default, metadata=f.metadata)


__all__ = ["setting", "REQUIRED", "choices_of", "doc_of", "unknown", "check_choice", "regex_problem", "check_settings", "describe_setting",
           "type_name", "params_of"]
