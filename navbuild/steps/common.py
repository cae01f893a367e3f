"""What several steps share: describing errors, outputs and feeds, resolving output names, loading user code."""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from navbuild.errors import InputError


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message, prefixed by its type name if empty."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__


#: lines of runtime errors that only say where the error passed through, never what went wrong
_WRAPPER_LINES = re.compile(r"^(Exception from src/\S+:?$|Please fix|Traceback |File \"|\^+$|Check '.*' failed at \S+:?$)")
_ROOT_CAUSE_CHARS = 400
#: ONNX Runtime's C++ source location and function signature inside a status message
_SOURCE_LOCATION = re.compile(r"/\S+\.(?:h|cc|cpp):\d+ [\w:~]+\([^)]*\) ")


def root_cause(error: BaseException) -> str:
    """What actually went wrong, on one line: the innermost cause's message without the wrapper lines.

    Runtimes put the detail after a generic first line (ONNX Runtime's "index: 0 Got: 4
    Expected: 1" under "Got invalid dimensions ... for the following indices"; OpenVINO's
    shape mismatch under "Exception from src/..." lines), and steps wrap a library's error in
    their own (``raise ... from e``): the innermost exception's detail lines, joined, are the
    line a person needs. Prefixed by the innermost exception's type.
    """
    inner = error
    seen = {id(inner)}
    while inner.__cause__ is not None and id(inner.__cause__) not in seen:
        inner = inner.__cause__
        seen.add(id(inner))
    lines = [_SOURCE_LOCATION.sub("", ln.strip()) for ln in str(inner).splitlines() if ln.strip()]
    kept = [ln for ln in lines if not _WRAPPER_LINES.match(ln)] or lines[:1]
    text = " ".join(kept[:4])
    if len(text) > _ROOT_CAUSE_CHARS:
        text = text[:_ROOT_CAUSE_CHARS - 3] + "..."
    return f"{type(inner).__name__}: {text}" if text else type(inner).__name__


def describe_error(error: BaseException) -> str:
    """One line for a failure: ``Type: root cause``, or for a wrapped error ``Type: first line;
    root cause: InnerType: ...`` (the wrapper says where, the root cause says what)."""
    root = root_cause(error)
    if error.__cause__ is None:
        return root
    head = f"{type(error).__name__}: {first_line(error)}"
    detail = root.split(": ", 1)[-1]
    return head if detail in head else f"{head}; root cause: {root}"


def describe_outputs(names: Sequence[str] | None, count: int) -> str:
    """``"2 outputs (a, b)"`` or ``"2 outputs"`` when the model does not name them."""
    noun = "output" if count == 1 else "outputs"
    return f"{count} {noun} ({', '.join(names)})" if names else f"{count} {noun}"


def resolve_output_names(declared: Sequence[str], model_names: Sequence[str] | None,
                         count: int, strict_names: bool) -> list[str]:
    """The output names to use, checked against what the recipe declares.

    ``model_names`` are names the model gives its outputs (ONNX graph outputs, dict keys),
    else None. With declared names the count must match, and with ``strict_names`` (named
    outputs) the names must match too, in any order; the declared order is returned. Without
    declared names the model's names are used, else ``output_0..N-1``.
    """
    declared = list(declared)
    if declared:
        mismatch = len(declared) != count or (
            strict_names and model_names is not None and sorted(model_names) != sorted(declared))
        if mismatch:
            raise InputError(f"outputs: the model returns {describe_outputs(model_names, count)}, "
                             f"the recipe declares {describe_outputs(declared, len(declared))}; "
                             "fix the recipe's outputs list")
        return declared
    if model_names is not None:
        return list(model_names)
    return [f"output_{i}" for i in range(count)]


def order_by_name(names: Sequence[str], model_names: Sequence[str] | None,
                  arrays: Sequence[Any]) -> list[Any]:
    """``arrays`` reordered to follow ``names`` when the model named them, else as they are."""
    if model_names is None or list(model_names) == list(names):
        return list(arrays)
    by_name = dict(zip(model_names, arrays))
    return [by_name[n] for n in names]


def describe_feeds(feeds: Mapping[str, Any]) -> str:
    """``"x float32 (4, 8), mask int64 (4, 16)"``: what was fed to a model, for error messages."""
    return ", ".join(f"{n} {a.dtype} {tuple(a.shape)}" for n, a in feeds.items())


__all__ = ["first_line", "describe_outputs",
           "resolve_output_names", "order_by_name", "describe_feeds", "root_cause", "describe_error"]


def load_callable(spec: str, key: str) -> Any:
    """Import the user's ``module:function`` named at recipe key ``key`` (an InputError if absent)."""
    import importlib

    module, _, func = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as e:
        raise InputError(f"{key}: cannot load '{spec}': {first_line(e)}") from e
