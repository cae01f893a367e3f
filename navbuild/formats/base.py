"""What a format family declares (variants, conversions, runners, Triton backend) and the registry of families.

A format family is one module (``navbuild/formats/torch.py``, ``onnxruntime.py``,
``openvino.py``, or a user's own) that builds a ``FormatFamily`` and calls ``register``. Every
table the rest of navbuild reads (the variant catalogue, the recipe's format and precision
choices, the runner and step registries, the runtime packages, the runner -> Triton backend
map) is derived here from the registered families; nothing else spells them.

Steps and runners are named ``"module:attr"`` and imported only when used, so declaring a
family imports no runtime. A family defined outside navbuild is found by the module that
registered it (``external_modules``): a step's child process imports those modules first.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

#: pseudo model names a conversion may read besides other conversions' models
SOURCE = "source"  # the recipe's source model (a leaf)
REFERENCE = "reference"  # the reference target (samples and the source's outputs)


@dataclass(frozen=True)
class BackendOption:
    """A backend option a recipe may set, and how it lands in ``config.pbtxt``.

    ``kind``: ``count`` (a whole number >= 0), ``bool`` (what Triton's ParseBoolValue takes:
    true/false, yes/no, on/off, 1/0), ``choice`` (one of ``choices``, any case) or ``text``.
    A ``count`` also takes ``choices`` as named alternatives (OpenVINO ``NUM_STREAMS: AUTO``).
    ``lands``: ``parameter`` (``parameters { key value { string_value } }``) or
    ``graph_level`` (ONNX Runtime's ``optimization { graph { level } }``).
    ``runtime``: the navbuild ``RuntimeOptions`` field a locally served python-backend model
    sets from it, so the local model honours the same search point; ``runtime_values`` maps
    option values (upper case) to runtime values where they differ.
    """

    key: str
    kind: str
    choices: tuple[str, ...] = ()
    lands: str = "parameter"
    runtime: str = ""
    runtime_values: tuple[tuple[str, str], ...] = ()


def options(*declared: BackendOption) -> dict[str, BackendOption]:
    """A backend's options by name."""
    return {o.key: o for o in declared}


@dataclass(frozen=True)
class TritonBackend:
    """A native Triton backend navbuild writes models for, as ``config.pbtxt`` names it, and the
    options it reads. The format families declare the backends that serve their models
    (navbuild/formats); navbuild's own are below (OWN_BACKENDS)."""

    name: str  # navbuild's id for it (the platform name where Triton has one)
    backend: str  # the ``backend:`` field, "" where the platform alone names it
    platform: str  # the ``platform:`` field, "" where the backend alone names it
    model_files: tuple[str, ...]  # default file names in the version folder, the main file first
    #: the options it reads, by name, as the backend's sources spell them so a recipe can be
    #: checked against the Triton docs; None: free-form (the python backend passes every string
    #: parameter to model.py)
    options: Mapping[str, BackendOption] | None = dataclasses.field(default_factory=dict)
    #: the instance count Triton gives a model with no instance_group on a CPU-only machine
    default_cpu_instances: int = 1
    #: the instance kinds it runs (``instance_group.kind``) and, where it offers no GPU, why
    kinds: tuple[str, ...] = ("KIND_CPU", "KIND_GPU")
    no_gpu: str = ""
    #: ``optimization.execution_accelerators.gpu_execution_accelerator`` names it reads, each with
    #: its parameters as the backend spells them (ONNX Runtime's "tensorrt")
    gpu_accelerators: Mapping[str, Mapping[str, BackendOption]] = dataclasses.field(default_factory=dict)
    #: it reads ``optimization { cuda { graphs: true } }`` (TensorRT's backend replays CUDA graphs) and
    #: ``instance_group.profile`` (the engine's optimization profiles an instance may use)
    engine_fields: bool = False


@dataclass(frozen=True)
class Variant:
    """A model form plus how it is executed; the unit that is checked, profiled and chosen.

    Some have a conversion that builds their model (``model`` names it); the rest run the
    source (or another variant's model) in a runtime mode (``mode``): torch autocast, dynamic
    int8, torch.compile, an OpenVINO precision hint. ``rank`` is the simplicity order across
    all families: a difference within noise goes to the lower rank. ``device``: where it runs,
    "cpu" or "cuda"; the recipe's device picks the variants of its kind (``selected``), and a
    cuda variant's checks and profiles hold the GPU's fingerprint in their keys.
    """

    name: str
    format: str  # the recipe format that selects it
    precision: str  # fp32 | bf16 | fp16 | int8 (a family may add its own)
    rank: int
    runner: str  # the runner that executes it (its name is the variant_format of checks and profiles)
    model: str | None = None  # the conversion that builds its model; None: the source itself
    mode: str = ""  # runtime mode (RuntimeOptions.mode)
    note: str = ""
    graph_level: str = ""  # ONNX Runtime graph optimization level it runs at; "" = runtime.graph_level
    #: what its drift (a reduced-precision variant's error layer by layer) is measured against: the
    #: input slot of its model's conversion that reads the fp32 model it was made from ("onnx",
    #: "openvino"); "" where it runs an fp32 model in a reduced-precision mode: that model itself
    drift_from: str = ""
    device: str = "cpu"


@dataclass(frozen=True)
class AccuracySearch:
    """A conversion whose model is found by a search (navbuild.planning.accuracy_search): starting from the
    planned conversion, keep in fp32 the fewest of the layers ranked by ``drift/<ranked_by>`` needed to meet
    the recipe's budget for ``precision``. ``keep`` says how a trial's Params keep a list of node names in
    fp32 (``(params, names) -> params``); ``max_trials`` caps the trials; ``quantizes(params)`` names the op
    types the starting Params quantize (empty: any), the only layers worth keeping in fp32."""

    ranked_by: str  # the variant whose drift ranking orders the layers (onnx-int8-static)
    precision: str  # whose budget the trials must meet (int8)
    keep: Callable[[Any, tuple[str, ...]], Any]
    max_trials: int
    quantizes: Callable[[Any], tuple[str, ...]] = lambda params: ()


@dataclass(frozen=True)
class Planned:
    """How one conversion is planned for a recipe: its step, its upstream models, its Params."""

    step: str  # step name (one of the conversion's ``steps``)
    inputs: Mapping[str, str]  # input slot -> model name (a conversion's, SOURCE or REFERENCE)
    params: Mapping[str, Any]  # keyword arguments of the step's Params (besides its section's)
    note: str = ""  # shown with the plan (why the plan differs from the recipe's letter)
    #: the recipe section the step's Params are generated from (navbuild.settings.params_of):
    #: its values fill every field ``params`` does not give; None: ``params`` gives them all
    section: Any = None
    #: the model is the outcome of this search, started from the planned conversion (None: it is the
    #: planned conversion)
    search: AccuracySearch | None = None
    #: the step's Params also hold the recipe's accuracy budget of this precision (outputs, batch_sizes,
    #: atol, range_rtol, cosine_min, output_tolerances, metric), which the planner fills in, and the
    #: step reads the metric's code when the recipe has one; None: no budget
    budget: str | None = None

    def make_params(self, params_type: type, **more: Any) -> Any:
        """The step's Params for this plan (``more``: fields the planner fills, e.g. the budget)."""
        if self.section is None:
            return params_type(**self.params, **more)
        return params_type.from_section(self.section, **self.params, **more)


@dataclass(frozen=True)
class PlanContext:
    """What a conversion's plan may read: the recipe and facts read from the source at plan time."""

    recipe: Any
    onnx_facts: Any = None  # OnnxSourceFacts of an ONNX source, else None


@dataclass(frozen=True)
class Conversion:
    """A model built by a step. Its target id is its model name.

    ``plan(ctx)`` says which step builds it for this recipe, from which upstream models, with
    which Params. ``from_source(recipe)``: the recipe's source already is this model (an ONNX
    source is the onnx model), so no target is added. ``rank`` orders targets in the graph:
    a conversion ranks after every conversion it reads. ``device``: "cuda" for a model compiled
    for the GPU it is built on (an AOTInductor package): its key holds that GPU's fingerprint.
    """

    model: str
    rank: int
    steps: Mapping[str, str]  # step name -> "module:Class" of every step ``plan`` may name
    plan: Callable[[PlanContext], Planned]
    from_source: Callable[[Any], bool] = lambda recipe: False
    device: str = "cpu"


@dataclass(frozen=True)
class TritonServing:
    """How a runner's models are served by Triton: the native ``backend`` (its ``config.pbtxt``
    names, model files and options), ``parameters(variant)``: the backend parameters that make a
    served model that variant (the ONNX Runtime graph level it was profiled at, OpenVINO's bf16
    hint), and ``refuses(variant)``: why a variant of this runner cannot be deployed ("" when it can).
    """

    backend: TritonBackend
    parameters: Callable[[Variant], Mapping[str, str]] = lambda v: {}
    refuses: Callable[[Variant], str] = lambda v: no_runtime_modes(v)


def no_runtime_modes(variant: Variant) -> str:
    """A backend that serves only the model as it is refuses a variant that is a runtime mode."""
    return f"{variant.name} is a runtime mode ({variant.mode}) that no Triton backend offers" if variant.mode else ""


@dataclass(frozen=True)
class Runner:
    """How a family's models are executed: ``make`` is ``"module:function"`` with
    ``function(model_path, factory, input_names, options, source) -> Runner``.

    ``requires``: the packages running it needs besides numpy, as import names that are also
    distribution names, so they serve as key tools too; ``mode_requires`` replaces them for a
    runtime mode. ``session_options``: it reads ONNX Runtime's session options (inter-op
    threads, graph level, denormal flushing); other runners' keys leave them out.
    """

    name: str
    make: str
    requires: tuple[str, ...] = ()
    mode_requires: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    session_options: bool = False
    triton: TritonServing | None = None


@dataclass(frozen=True)
class FormatFamily:
    """Everything navbuild knows about one runtime family.

    ``formats``: the recipe formats it adds, in the order choices are listed.
    ``torch_source``: its formats run or convert the torch source (not for an ONNX-file source).
    ``not_on_serialized``: per serialized torch source kind (``torchscript``: a ``.pt`` file,
    ``exported-program``: a ``.pt2`` file), target id or variant name -> why it cannot run.
    ``drift``: runner -> ``"module:Class"`` of the step that measures the drift of that runner's
    reduced-precision variants against their fp32 model (a ``drift/<variant>`` target each; the
    class is a navbuild.steps.drift.DriftStep, its name the class name).
    """

    name: str
    formats: tuple[str, ...]
    variants: tuple[Variant, ...]
    runners: tuple[Runner, ...] = ()
    conversions: tuple[Conversion, ...] = ()
    torch_source: bool = False
    not_on_serialized: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    drift: Mapping[str, str] = field(default_factory=dict)
    module: str = ""  # the module that defines it (set by ``register``)


_FAMILIES: dict[str, FormatFamily] = {}


def register(family: FormatFamily, module: str | None = None) -> FormatFamily:
    """Add ``family`` (replacing one of the same name); ``module`` defaults to the caller's module.

    A name (variant, format, runner, conversion) that another family already declares is an error.
    """
    module = module or _caller_module()
    others = [f for f in _FAMILIES.values() if f.name != family.name]
    taken = {
        "variant": {v.name for f in others for v in f.variants},
        "format": {x for f in others for x in f.formats},
        "runner": {r.name for f in others for r in f.runners},
        "conversion": {c.model for f in others for c in f.conversions},
    }
    mine = {"variant": [v.name for v in family.variants], "format": list(family.formats),
            "runner": [r.name for r in family.runners], "conversion": [c.model for c in family.conversions]}
    for kind, names in mine.items():
        clash = sorted(set(names) & taken[kind])
        if clash:
            raise ValueError(f"format family '{family.name}': {kind} {', '.join(clash)} is already declared "
                             "by another family")
    undeclared = sorted({v.format for v in family.variants} - set(family.formats))
    if undeclared:
        raise ValueError(f"format family '{family.name}': variants name formats it does not declare: "
                         f"{', '.join(undeclared)}")
    family = _with_module(family, module)
    _FAMILIES[family.name] = family
    return family


def unregister(name: str) -> None:
    """Remove a family (tests that register a toy one)."""
    _FAMILIES.pop(name, None)


def families() -> tuple[FormatFamily, ...]:
    """The registered families, in registration order."""
    return tuple(_FAMILIES.values())


def external_modules() -> tuple[str, ...]:
    """Modules outside navbuild that registered a family: a step's child process imports them."""
    # a script's own __main__ cannot be imported again by name: its families must live in a module
    return tuple(dict.fromkeys(f.module for f in _FAMILIES.values()
                               if f.module and f.module != "__main__" and not f.module.startswith("navbuild.")))


# ----------------------------------------------------------------------------- derived tables

def catalogue() -> tuple[Variant, ...]:
    """Every variant of every family, simplest first (by rank)."""
    return tuple(sorted((v for f in _FAMILIES.values() for v in f.variants), key=lambda v: (v.rank, v.name)))


def variant(name: str) -> Variant | None:
    """The variant called ``name`` (None when no family declares it)."""
    return next((v for f in _FAMILIES.values() for v in f.variants if v.name == name), None)


def variant_names() -> tuple[str, ...]:
    return tuple(v.name for v in catalogue())


def recipe_formats() -> tuple[str, ...]:
    """The formats a recipe may name, family by family."""
    return tuple(x for f in _FAMILIES.values() for x in f.formats)


def precisions() -> tuple[str, ...]:
    """The precisions a recipe may name, in the order the catalogue first uses them."""
    return tuple(dict.fromkeys(v.precision for v in catalogue()))


def torch_source_formats() -> tuple[str, ...]:
    """Formats that run or convert the torch source (not available for an ONNX-file source)."""
    return tuple(x for f in _FAMILIES.values() if f.torch_source for x in f.formats)


def selected(formats: list[str], precisions_: list[str], explicit: list[str], device: str = "cpu") -> list[Variant]:
    """The variants a recipe asks for, in catalogue (simplicity) order: its explicit names as given,
    else its formats x precisions among the variants of its ``device`` kind (cpu or cuda)."""
    if explicit:
        return [v for v in catalogue() if v.name in explicit]
    return [v for v in catalogue() if v.format in formats and v.precision in precisions_ and v.device == device]


def simplicity(name: str) -> int:
    """Lower is simpler: the catalogue order (an unknown variant ranks last)."""
    names = variant_names()
    return names.index(name) if name in names else len(names)


def unavailable_on_serialized(source_file: str, name: str) -> str:
    """Why variant or conversion ``name`` cannot run on the serialized torch source ``source_file``
    ("" when it can)."""
    kind = "exported-program" if source_file.endswith(".pt2") else "torchscript"
    why = next((f.not_on_serialized.get(kind, {}).get(name, "") for f in _FAMILIES.values()
                if name in f.not_on_serialized.get(kind, {})), "")
    return f"{why} (the source is {source_file})" if why else ""


def conversions() -> tuple[Conversion, ...]:
    """Every conversion, in graph order (by rank)."""
    return tuple(sorted((c for f in _FAMILIES.values() for c in f.conversions), key=lambda c: (c.rank, c.model)))


def conversion(model: str) -> Conversion:
    for f in _FAMILIES.values():
        for c in f.conversions:
            if c.model == model:
                return c
    raise KeyError(f"no format family builds model '{model}' (known: {', '.join(c.model for c in conversions())})")


def steps() -> dict[str, str]:
    """Step name -> "module:Class" of every family's conversion and drift steps."""
    drift = {ref.rpartition(":")[2]: ref for f in _FAMILIES.values() for ref in f.drift.values()}
    return {**{name: ref for c in conversions() for name, ref in c.steps.items()}, **drift}


def drift_step(runner_name: str) -> str | None:
    """The name of the step that measures the drift of this runner's variants (None: its family declares none)."""
    ref = next((f.drift[runner_name] for f in _FAMILIES.values() if runner_name in f.drift), None)
    return ref.rpartition(":")[2] if ref else None


def runner(name: str) -> Runner | None:
    return next((r for f in _FAMILIES.values() for r in f.runners if r.name == name), None)


def runner_names() -> tuple[str, ...]:
    return tuple(r.name for f in _FAMILIES.values() for r in f.runners)


def runtime_requirements(runner_name: str | None, mode: str = "") -> tuple[str, ...]:
    """What running a model with this runner (in this runtime mode) needs besides numpy. The
    names are both import names and distributions, so they serve as key tools as well."""
    r = runner(runner_name or "")
    if r is None:
        return ()
    return tuple(r.mode_requires.get(mode, r.requires))


def triton_serving(runner_name: str) -> TritonServing | None:
    """How Triton serves this runner's models (None where Triton has no backend for them)."""
    r = runner(runner_name)
    return r.triton if r is not None else None


def native_backends() -> dict[str, str]:
    """Runner -> the native Triton backend that serves its models (runners without one are absent)."""
    return {r.name: r.triton.backend.name for f in _FAMILIES.values() for r in f.runners if r.triton is not None}


def triton_backends() -> tuple[TritonBackend, ...]:
    """The native Triton backends the families declare, each once, family by family."""
    found = {r.triton.backend.name: r.triton.backend for f in _FAMILIES.values() for r in f.runners
             if r.triton is not None}
    return tuple(found.values())


def load_attr(ref: str) -> Any:
    """The object named ``"module:attr"``."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _with_module(family: FormatFamily, module: str) -> FormatFamily:
    return dataclasses.replace(family, module=family.module or module)


def _caller_module() -> str:
    frame = inspect.currentframe()
    try:
        caller = frame.f_back.f_back if frame and frame.f_back else None
        return caller.f_globals.get("__name__", "") if caller else ""
    finally:
        del frame


__all__ = ["FormatFamily", "Variant", "Runner", "Conversion", "Planned", "AccuracySearch", "PlanContext",
           "TritonServing", "SOURCE", "REFERENCE", "register", "unregister", "families", "external_modules", "catalogue",
           "variant", "variant_names", "recipe_formats", "precisions", "torch_source_formats", "selected",
           "simplicity", "unavailable_on_serialized", "conversions", "conversion", "steps", "runner",
           "runner_names", "runtime_requirements", "triton_serving", "native_backends", "triton_backends", "load_attr"]
