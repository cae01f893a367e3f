"""Cache keys: the canonical key payload of a target, its SHA-256, and why a key changed."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import math
from typing import Any, Iterable, Mapping

#: Bumped whenever the payload layout or its canonical encoding changes, so that every
#: old entry misses (with the reason ``key schema 1 -> 2``) instead of being misread.
KEY_SCHEMA_VERSION: int = 1

#: Shown for a parameter, input or tool that exists on one side of a comparison only.
ABSENT = "(absent)"

#: Order in which payload fields are explained; unknown fields follow, sorted.
_FIELD_ORDER = ("schema", "step", "step_version", "params", "inputs", "tools", "hardware")


def _normalize(obj: Any, where: str = "$") -> Any:
    """Return ``obj`` as plain JSON data: tuples become lists, -0.0 becomes 0.0.

    Anything that is not JSON data (a Path, a set, an object) is a caller bug: it would
    either be unstable (sets) or smuggle a location into the key (paths), so it raises.
    """
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"{where}: {obj!r} cannot be part of a cache key (not finite)")
        # -0.0 == 0.0 but would print differently; a key must not depend on the sign of zero.
        return 0.0 if obj == 0.0 else obj
    if isinstance(obj, (list, tuple)):
        return [_normalize(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: key {k!r} must be a string to enter a cache key")
            out[k] = _normalize(v, f"{where}.{k}")
        return out
    raise TypeError(
        f"{where}: {type(obj).__name__} {obj!r} is not JSON data and cannot enter a cache key"
    )


def canonical_json(obj: Any) -> str:
    """Encode ``obj`` as canonical JSON: sorted keys, no spaces, tuples as lists.

    Floats use Python's shortest round-trip repr, which is stable across runs and platforms.
    """
    return json.dumps(
        _normalize(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        allow_nan=False,
    )


def key_payload(
    *,
    step: str,
    step_version: int,
    params: dict,
    inputs: dict[str, str],
    tools: dict[str, str],
    hardware: dict | None,
) -> dict:
    """Build the key payload of a target.

    ``inputs`` maps an upstream name to that upstream's *output content digest* (never its
    key or its path), so a byte-identical rebuild upstream does not cascade downstream.
    """
    return {
        "schema": KEY_SCHEMA_VERSION,
        "step": step,
        "step_version": step_version,
        "params": _normalize(params, "params"),
        "inputs": dict(inputs),
        "tools": dict(tools),
        "hardware": None if hardware is None else _normalize(hardware, "hardware"),
    }


def cache_key(payload: dict) -> str:
    """SHA-256 hex digest of the canonical JSON of ``payload``."""
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def _show(value: Any) -> str:
    """Compact human form of a value in a reason: strings bare, the rest as JSON."""
    if value is _MISSING:
        return ABSENT
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))
    except (TypeError, ValueError):
        return repr(value)


class _Missing:
    """Marker for a field that one side of a comparison does not have."""

    def __repr__(self) -> str:
        return ABSENT


_MISSING: Any = _Missing()


def _diff_values(path: str, old: Any, new: Any) -> list[tuple[str, Any, Any]]:
    """Differing leaves as (dotted path, old, new); dicts are walked, lists are leaves."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        diffs: list[tuple[str, Any, Any]] = []
        for k in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{k}" if path else str(k)
            diffs += _diff_values(sub, old.get(k, _MISSING), new.get(k, _MISSING))
        return diffs
    if _same(old, new):
        return []
    return [(path, old, new)]


def _same(a: Any, b: Any) -> bool:
    """Equality as the key sees it (1 and 1.0 differ in JSON, True and 1 differ too)."""
    if a is _MISSING or b is _MISSING:
        return a is b
    try:
        return canonical_json(a) == canonical_json(b)
    except (TypeError, ValueError):
        return a == b


def explain_change(old: dict | None, new: dict) -> list[str]:
    """Human-readable reasons why the key of ``new`` differs from that of ``old``.

    Returns ``[]`` when the payloads are equal, ``["never built"]`` when there is no old
    payload. Reasons come in a fixed order (schema, step, version, params, inputs, tools,
    hardware, anything else) so reports are stable.
    """
    if old is None:
        return ["never built"]
    reasons: list[str] = []
    extra = sorted((set(old) | set(new)) - set(_FIELD_ORDER))
    for field in (*_FIELD_ORDER, *extra):
        a, b = old.get(field, _MISSING), new.get(field, _MISSING)
        if _same(a, b):
            continue
        if field == "schema":
            reasons.append(f"key schema {_show(a)} -> {_show(b)}")
        elif field == "step":
            reasons.append(f"step {_show(a)} -> {_show(b)}")
        elif field == "step_version":
            reasons.append(f"step version {_show(a)} -> {_show(b)}")
        elif field == "params":
            reasons += [
                f"{p}: {_show(x)} -> {_show(y)}"
                for p, x, y in _diff_values("params", _as_dict(a), _as_dict(b))
            ]
        elif field == "inputs":
            reasons += _explain_inputs(_as_dict(a), _as_dict(b))
        elif field == "tools":
            a_d, b_d = _as_dict(a), _as_dict(b)
            for name in sorted(set(a_d) | set(b_d)):
                va, vb = a_d.get(name, _MISSING), b_d.get(name, _MISSING)
                if not _same(va, vb):
                    reasons.append(f"{name} {_show(va)} -> {_show(vb)}")
        elif field == "hardware":
            reasons += _explain_hardware(a, b)
        else:
            reasons.append(f"{field} changed")
    return reasons


def _as_dict(value: Any) -> Mapping:
    """A payload field as a mapping (absent or null count as empty)."""
    return value if isinstance(value, Mapping) else {}


def _explain_inputs(old: Mapping, new: Mapping) -> list[str]:
    """One reason per upstream input that was added, removed or whose content changed."""
    reasons = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            reasons.append(f"input {name} added")
        elif name not in new:
            reasons.append(f"input {name} removed")
        elif old[name] != new[name]:
            reasons.append(f"input {name} changed")
    return reasons


def _explain_hardware(old: Any, new: Any) -> list[str]:
    """Name each hardware field that differs; a key that gained or lost hardware says so."""
    if not isinstance(old, Mapping) and not isinstance(new, Mapping):
        return [f"hardware {_show(old)} -> {_show(new)}"]
    if not isinstance(old, Mapping):
        return ["hardware added"]
    if not isinstance(new, Mapping):
        return ["hardware removed"]
    return [
        f"hardware changed: {path} {_show(x)} -> {_show(y)}"
        for path, x, y in _diff_values("", old, new)
    ]


@functools.lru_cache(maxsize=None)
def _version_of(distribution: str) -> str:
    """Installed version of one distribution; cached because lookups scan sys.path."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def tool_versions(distributions: Iterable[str]) -> dict[str, str]:
    """Map each distribution name to its installed version, or ``"not installed"``."""
    return {name: _version_of(name) for name in sorted(set(distributions))}
