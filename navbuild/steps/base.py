"""The Step contract: a small class with a version, typed Params, requirements and one ``run``."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.util
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

from navbuild import formats
from navbuild.key_fields import key_data
from navbuild.model_io import TensorSpec


@dataclass(frozen=True)
class StepContext:
    """What a step sees when it runs (in a child process).

    ``inputs`` maps an upstream name to a Path: a directory (the output of a built target)
    or a file (a leaf source such as a user's ``.onnx`` or ``.npz``). ``out`` is an empty
    directory the step writes its artifacts into; everything in it is published to the cache.
    The step prints progress to stdout; the child process sends stdout/stderr to the log.
    """

    inputs: Mapping[str, Path]
    out: Path


class Step(ABC):
    """One kind of build action. Subclasses set the class attributes and implement ``run``."""

    name: ClassVar[str]
    version: ClassVar[int]
    Params: ClassVar[type]
    #: import names that must be importable for the step to run (checked with find_spec); a
    #: name with a dash is a distribution that must be installed (checked with importlib.metadata).
    requires: ClassVar[tuple[str, ...]] = ()
    #: distribution names whose installed versions enter the cache key.
    tools: ClassVar[tuple[str, ...]] = ()
    #: whether the hardware fingerprint enters the cache key (profiles, engines).
    hardware_dependent: ClassVar[bool] = False
    #: whether the step times something (profiles, finalists, Triton measurements): its result
    #: records the conditions it ran under, a busy or noisy run is provisional, and
    #: ``--remeasure`` re-runs it (see navbuild/measure_conditions.py).
    timed: ClassVar[bool] = False

    @abstractmethod
    def run(self, params: Any, ctx: StepContext) -> dict:
        """Build the target into ``ctx.out``; return a JSON-able result (metrics, facts)."""

    @classmethod
    def depends_on_hardware(cls, params: Any) -> bool:
        """Whether these params make the output depend on the machine (its fingerprint joins the key)."""
        return cls.hardware_dependent

    @classmethod
    def gpu_refusal(cls, params: Any, gpu: Mapping[str, Any]) -> str:
        """Why these params cannot run on the GPU whose fingerprint is ``gpu`` ("" when they can):
        read at plan time, so the target says ``unavailable: <why>`` instead of failing to build."""
        return ""

    @classmethod
    def reproduce_commands(cls, params: Any) -> str:
        """Command lines of the step's own tool that repeat it by hand (lines, "" for none): written
        into its reproduce script beside the line that re-runs the step through navbuild."""
        return ""

    @classmethod
    def runtimes(cls, params: Any = None) -> tuple[str, ...]:
        """The runtimes these params run a model in (see runtime_requirements); steps that run a
        variant or the source override it."""
        return ()

    @classmethod
    def requirements(cls, params: Any = None) -> tuple[str, ...]:
        """What these params need installed: the step's own requirements and its runtimes."""
        return _merged(cls.requires, cls.runtimes(params))

    @classmethod
    def tools_for(cls, params: Any = None) -> tuple[str, ...]:
        """Distributions whose versions enter the key for ``params``: the step's tools and its
        runtimes (so an OpenVINO upgrade re-checks and re-profiles OpenVINO variants)."""
        return _merged(cls.tools, cls.runtimes(params))

    @classmethod
    def missing_requirements(cls, params: Any = None) -> list[str]:
        """Requirements of ``params`` that are not installed (no import is performed)."""
        return [name for name in cls.requirements(params) if not installed(name)]


def installed(name: str) -> bool:
    """Whether an import name (or, with a dash, a distribution) is installed, without importing it."""
    if "-" in name:
        try:
            importlib.metadata.distribution(name)
            return True
        except importlib.metadata.PackageNotFoundError:
            return False
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def runtime_requirements(variant_format: str | None, mode: str = "") -> tuple[str, ...]:
    """What running a model with this runner (in this runtime mode) needs besides numpy, as its
    format family declares it (navbuild/formats). The names are both import names and
    distributions, so they serve as key tools as well."""
    return formats.runtime_requirements(variant_format, mode)


def variant_runtimes(params: Any) -> tuple[str, ...]:
    """The runtimes of a correctness or profile target's variant (its runner format and mode)."""
    return runtime_requirements(getattr(params, "variant_format", None),
                                getattr(getattr(params, "runtime", None), "mode", ""))


def _merged(first: tuple[str, ...], more: tuple[str, ...]) -> tuple[str, ...]:
    return first + tuple(dict.fromkeys(m for m in more if m not in first))


def params_to_dict(params: Any) -> dict:
    """Params dataclass -> JSON-able dict (tuples become lists); fields declared with
    ``key_fields.added`` are left out while they hold their default."""
    return json_ready(key_data(params))


def json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def params_from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Rebuild a (possibly nested) frozen Params dataclass from its JSON form."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        kwargs[f.name] = _coerce(hints[f.name], data[f.name])
    return cls(**kwargs)


def _coerce(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if value is None:
        return None
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return params_from_dict(hint, value)
    if origin is tuple:
        if args and args[-1] is not Ellipsis and len(args) == len(value):  # tuple[A, B]: one hint per item
            return tuple(_coerce(a, v) for a, v in zip(args, value))
        inner = args[0] if args else Any
        return tuple(_coerce(inner, v) for v in value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for a in args:
            if a is type(None):
                continue
            if dataclasses.is_dataclass(a) and isinstance(value, Mapping):
                return params_from_dict(a, value)
        return value
    return value



#: step name -> "module:Class" of the steps every build plans, whatever its formats; the format
#: families add their conversion steps (navbuild/formats). Modules are imported only when a step
#: is needed, and step modules import heavy packages (torch, onnxruntime) only inside ``run``.
STEP_REGISTRY: dict[str, str] = {
    "ReferenceFromSource": "navbuild.steps.reference:ReferenceFromSource",
    "DiscoverSourceDependencies": "navbuild.steps.source_deps:DiscoverSourceDependencies",
    "CheckCorrectness": "navbuild.steps.correctness:CheckCorrectness",
    "ProfilePerformance": "navbuild.steps.profile:ProfilePerformance",
    "CompareFinalists": "navbuild.steps.finalists:CompareFinalists",
    "WriteTritonModel": "navbuild.steps.triton_model:WriteTritonModel",
    "MeasureTritonConfig": "navbuild.steps.triton_measure:MeasureTritonConfig",
    "SearchTritonConfig": "navbuild.steps.triton_search:SearchTritonConfig",
    "ValidateTritonModel": "navbuild.steps.triton_validate:ValidateTritonModel",
}


def step_refs() -> dict[str, str]:
    """Step name -> "module:Class" of every step: the core ones and every family's conversions."""
    return {**STEP_REGISTRY, **formats.steps()}


def load_step(name: str) -> type[Step]:
    """The Step class registered under ``name``."""
    refs = STEP_REGISTRY if name in STEP_REGISTRY else step_refs()
    if name not in refs:
        raise KeyError(f"no step named '{name}' (known: {', '.join(sorted(refs))})")
    module, _, cls = refs[name].partition(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["Step", "StepContext", "TensorSpec", "params_to_dict",
           "params_from_dict", "load_step", "step_refs", "STEP_REGISTRY", "runtime_requirements",
           "variant_runtimes"]
