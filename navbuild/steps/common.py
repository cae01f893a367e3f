"""Params pieces shared by several steps: how to build a torch model and how to configure a runtime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from navbuild.errors import InputError


#: the factory of a source given as a serialized file (TorchScript ``.pt`` or exported
#: program ``.pt2``): the file itself arrives as the step's ``source`` input, so the code
#: that defined the model is not needed.
SERIALIZED_SOURCE = "navbuild:serialized-source"


@dataclass(frozen=True)
class TorchFactory:
    """A torch model given as an importable callable and its keyword arguments.

    ``factory`` is ``"package.module:function"``; the function returns a ``torch.nn.Module``.
    ``kwargs`` must be JSON-able because it enters the cache key.
    """

    factory: str
    kwargs: Mapping[str, Any]


#: ONNX Runtime graph optimization levels by their recipe names.
GRAPH_LEVELS: tuple[str, ...] = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class RuntimeOptions:
    """How a variant is executed: thread counts and (ONNX Runtime only) the graph optimization level
    and denormal flushing."""

    intra_op_threads: int = 2
    inter_op_threads: int = 1
    graph_level: str = "all"  # disable|basic|extended|all; the torch runner ignores it
    # A runtime variant of a format, applied when the model is loaded (no conversion target):
    # torch: "" (eager fp32) | "autocast-bf16" | "cast-bf16" | "dynamic-int8" | "compile" | "compile-bf16";
    # openvino: "" (f32 inference precision) | "bf16". Other runners accept only "".
    mode: str = ""
    # ONNX Runtime: flush denormals to zero (off by default: exact IEEE arithmetic, as ORT ships)
    flush_denormals: bool = False


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message, prefixed by its type name if empty."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__


def root_cause(error: BaseException) -> str:
    """``Type: first line`` of the innermost exception of ``error``'s ``raise ... from`` chain.

    Wrappers (an exporter's ``OnnxExporterError``, a step's own ``RuntimeError(...) from e``)
    say only that something failed; the innermost error says what (``aten::diff`` is not
    supported, a keyword collides), so that is the line a failure shows.
    """
    seen = {id(error)}
    while True:
        # only explicit causes: an error raised while handling another is a new error, not its cause
        inner = error.__cause__
        if inner is None or id(inner) in seen:
            return f"{type(error).__name__}: {first_line(error)}"
        seen.add(id(inner))
        error = inner


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


__all__ = ["TorchFactory", "RuntimeOptions", "GRAPH_LEVELS", "first_line", "root_cause", "describe_outputs",
           "resolve_output_names", "order_by_name", "describe_feeds"]


def load_callable(spec: str, key: str) -> Any:
    """Import the user's ``module:function`` named at recipe key ``key`` (an InputError if absent)."""
    import importlib

    module, _, func = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as e:
        raise InputError(f"{key}: cannot load '{spec}': {first_line(e)}") from e
