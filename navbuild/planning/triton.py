"""The Triton targets of a recipe: per deployed variant a model, one measurement per configuration, a search, a validation.

Added once the profiles have ranked the variants (the default deploys the top correct
ones), like the finalists. Pure: reads no model and starts nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path
from typing import Any, Sequence

from navbuild import formats
from navbuild.formats.tensorrt_profiles import EngineProfile
from navbuild.planning.graph import Graph
from navbuild.planning.planner import METRIC_ID, REFERENCE_ID, tensor_specs, tolerances
from navbuild.planning.target import Leaf, Target
from navbuild.recipe.paths import resolve_path
from navbuild.recipe.validate_triton import deployable
from navbuild.runtime import RuntimeOptions
from navbuild.steps.base import load_step
from navbuild.steps.correctness import CorrectnessParams
from navbuild.steps.triton_search import SearchSpace
from navbuild.triton.analyzer import Constraints, LoadSpec
from navbuild.triton.model_config import ModelConfig, Warmup, backends, default_config
from navbuild.triton.placement import KIND_GPU, deployment_gpus, instance_kind, kind_refusal, warmup_on

TRITON_MODEL, TRITON_MEASURE, TRITON_SEARCH, TRITON_VALIDATE = (
    "triton-model", "triton-measure", "triton-search", "triton-validate")
SERVER_ID = "triton-server"


def triton_variants(recipe: Any, ranking: list[str], resolved: str | None = None) -> list[str]:
    """The variants to deploy: the recipe's list, else the top ``triton.top`` correct deployable ones
    (deployable with the instance kind they would get; ``resolved``: the plan's device kind)."""
    if recipe.triton.variants:
        return list(recipe.triton.variants)
    return [v for v in ranking if deployable(v) is None
            and not kind_refusal(v, instance_kind(recipe, v, resolved))][:recipe.triton.top]


def model_name(recipe_name: str, variant: str) -> str:
    """A Triton model name: letters, digits and underscores (``minilm_onnx_opt``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{recipe_name}_{variant}").strip("_") or "model"


def variant_parameters(variant: str) -> dict[str, str]:
    """The native backend parameters that make a served model this variant: the ONNX Runtime
    graph level it was profiled at, OpenVINO's bf16 hint. Every configuration of it carries them."""
    v = formats.variant(variant)
    serving = formats.triton_serving(v.runner)
    return dict(serving.parameters(v)) if serving is not None else {}


def engine_batch_sizes(asked: Sequence[int], engine: Sequence[EngineProfile]) -> list[int]:
    """The max batch sizes a TensorRT engine can be served at: those asked (triton.search.max_batch_sizes)
    that its profiles cover, else its largest batch (Triton refuses a max_batch_size above the engine's)."""
    if not engine:
        return list(asked)
    top = max(p.max_batch for p in engine)
    return [b for b in asked if b <= top] or [top]


def engine_of(graph: Graph, variant: str) -> tuple[EngineProfile, ...]:
    """The optimization profiles of the engine a variant runs (empty where its backend serves no engine)."""
    v = formats.variant(variant)
    serving = formats.triton_serving(v.runner) if v is not None else None
    if serving is None or not serving.backend.engine_fields:
        return ()
    target = graph.targets.get(graph.variant_models.get(variant, ""))
    return tuple(getattr(target.params, "profiles", ())) if target is not None else ()


def search_configs(recipe: Any, backend: str, fixed: dict[str, str] | None = None, kind: str = "KIND_CPU",
                   engine: Sequence[EngineProfile] = ()) -> list[Any]:
    """Triton's default configuration first, then the cartesian product of the search space (no duplicates).

    Queue delays only vary where dynamic batching is on; backend options apply to their own backend.
    ``fixed`` (the variant's own parameters) is in every configuration and wins over the space.
    ``kind`` is the instance kind (``placement.instance_kind``): on KIND_GPU every configuration
    names its GPUs, instance counts are per GPU, the backend's GPU accelerators are tried too,
    and Triton's default is one instance on each of those GPUs. ``engine``: a TensorRT engine's
    profiles: every configuration lists them all on its instance group (Triton's own default would
    use profile 0 alone), max batch sizes above the engine's are left out, and CUDA graphs
    (triton.search.cuda_graphs) are tried.
    """

    s = recipe.triton.search
    options = s.backend_options.get(backend, {})
    option_sets = [dict(zip(options, values)) for values in itertools.product(*options.values())] or [{}]
    fixed = fixed or {}
    gpu = kind == KIND_GPU
    gpus = deployment_gpus(recipe) if gpu else ()
    accelerators = _accelerators(recipe, backend) if gpu else [("", ())]
    batch_sizes = engine_batch_sizes(s.max_batch_sizes, engine)
    profiles = tuple(str(i) for i in range(len(engine))) if gpu else ()
    graphs = list(dict.fromkeys(s.cuda_graphs)) if engine and gpu else [False]
    default = default_config(max(batch_sizes), backend, fixed)
    if gpu:  # on a GPU machine Triton gives a model with no instance_group one instance per GPU
        default = dataclasses.replace(default, instance_count=1, instance_kind=KIND_GPU, gpus=gpus, profiles=profiles)
    configs = [_warmed(recipe, default)]
    for mbs, count, dynamic, params, (accelerator, accelerator_parameters), cuda_graphs in itertools.product(
            batch_sizes, s.instance_counts, s.dynamic_batching, option_sets, accelerators, graphs):
        delays = s.max_queue_delays_us if dynamic else [0]
        for delay in delays or [0]:
            config = ModelConfig(max_batch_size=mbs, instance_count=count, instance_kind=kind,
                                 dynamic_batching=dynamic, max_queue_delay_us=delay if dynamic else 0,
                                 backend_parameters={**{k: str(v) for k, v in params.items()}, **fixed},
                                 gpus=gpus, accelerator=accelerator, accelerator_parameters=accelerator_parameters,
                                 profiles=profiles, cuda_graphs=cuda_graphs)
            config = _warmed(recipe, config)
            if config not in configs:
                configs.append(config)
    return configs


def _accelerators(recipe: Any, backend: str) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """The GPU execution accelerators to try on ``backend`` ("" = none), each with its parameters."""
    offered = backends()[backend].gpu_accelerators if backend in backends() else {}
    found: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    for name in recipe.triton.search.accelerators:
        if name == "none":
            found.append(("", ()))
        elif name in offered:  # a backend without it (libtorch) is searched without it
            section = dataclasses.asdict(getattr(recipe.triton, name)) if hasattr(recipe.triton, name) else {}
            found.append((name, tuple(sorted((k, _text(v)) for k, v in section.items()))))
    return list(dict.fromkeys(found)) or [("", ())]


def _text(value: Any) -> str:
    return ("1" if value else "0") if isinstance(value, bool) else str(value)


def warmup_gap(recipe: Any) -> str:
    """Why no warm-up request can be written for the recipe's inputs ("" when one can): a dynamic axis
    without a size in ``samples.axes``."""
    axes = dict(recipe.samples.axes)
    for spec in tensor_specs(recipe):
        unsized = [d for d in spec.shape[1:] if isinstance(d, str) and d not in axes]
        if unsized:
            return f"input '{spec.name}' has dynamic axes {unsized} without a size in samples.axes"
    return ""


def _warmed(recipe: Any, config: Any) -> Any:
    """``config`` with its ``model_warmup`` where the recipe asks for it (``placement.warmup_on``): one
    request per batch size of the search that fits (the search's max batch sizes and the load's
    request batch), each input at the recipe's sizes of its dynamic axes."""
    if not warmup_on(recipe, config.instance_kind) or (recipe.triton.warmup is None and warmup_gap(recipe)):
        return config
    top = max(config.max_batch_size, 1)
    sizes = sorted({b for b in (*recipe.triton.search.max_batch_sizes, recipe.triton.load.batch_size) if 1 <= b <= top})
    axes = dict(recipe.samples.axes)
    dims = []
    for spec in tensor_specs(recipe):
        named = [d for d in spec.shape[1:] if isinstance(d, str)]
        if named:
            # an axis without a size stays -1: writing the config then says which size to give
            dims.append((spec.name, tuple(int(axes.get(d, -1)) if isinstance(d, str) else int(d)
                                          for d in spec.shape[1:])))
    return dataclasses.replace(config, warmup=Warmup(tuple(sizes or [1]), recipe.triton.warmup_data, tuple(dims)))


def resolved_kind(graph: Graph) -> str | None:
    """The plan's device kind ("cpu" or "cuda", navbuild.device), None where the graph has none resolved."""
    device = getattr(graph, "device", None)
    return device.kind if device is not None else None


def concurrency(recipe: Any) -> tuple[int, ...]:
    """The load points: the recipe's list, or automatic (1, 2, 4, ... up to ``load.max_concurrency``)."""
    load = recipe.triton.load
    if load.concurrency:
        return tuple(sorted(set(load.concurrency)))
    points, c = [], 1
    while c <= load.max_concurrency:
        points.append(c)
        c *= 2
    return tuple(points)


def expand_triton(graph: Graph, recipe: Any, variants: list[str], cwd: Path) -> list[str]:
    """Add the Triton targets of ``variants``; return the ids of their search targets."""

    t = recipe.triton
    server_inputs: dict[str, str] = {}
    if t.server.path:

        path = resolve_path(t.server.path, cwd)
        graph.add(Leaf(SERVER_ID, path, (path,)))
        server_inputs = {"server": SERVER_ID}
    load = LoadSpec(concurrency=concurrency(recipe), batch_size=t.load.batch_size,
                    measurement_interval_ms=t.load.measurement_interval_ms,
                    stability_percentage=t.load.stability_percentage, max_trials=t.load.max_trials)
    constraints = constraints_of(recipe)
    searches = []
    for variant in variants:
        v = formats.variant(variant)
        backend = formats.triton_serving(v.runner).backend.name
        kind = instance_kind(recipe, variant, resolved_kind(graph))
        if recipe.triton.warmup is None and warmup_on(recipe, kind) and (gap := warmup_gap(recipe)):
            # on by default only: a recipe that asks for it is checked when it is loaded
            graph.notes.append(f"triton/{variant}: no model_warmup: {gap}")
        name = model_name(recipe.name, variant)
        own = variant_parameters(variant)
        engine = engine_of(graph, variant)
        model_id = _add(graph, f"triton/model/{variant}", "WriteTritonModel", TRITON_MODEL, variant,
                        {"model": graph.variant_models[variant], "reference": REFERENCE_ID},
                        name=name, variant=variant, runner=v.runner, backend=backend, mode=v.mode,
                        inputs=tensor_specs(recipe), batch_size=max(recipe.profile.batch_sizes),
                        max_batch_size=max(engine_batch_sizes(t.search.max_batch_sizes, engine)),
                        parameters=tuple(sorted(own.items())))
        configs = search_configs(recipe, backend, own, kind, engine)
        measures = {}
        for i, config in enumerate(configs):
            measures[f"measure-{i}"] = _add(
                graph, f"triton/measure/{variant}/{config.label()}", "MeasureTritonConfig", TRITON_MEASURE, variant,
                {"repo": model_id, **server_inputs}, name=name, backend=backend, mode=v.mode, config=config,
                load=load, collect_memory=t.constraints.max_memory_mb is not None)
        search_id = _add(graph, f"triton/search/{variant}", "SearchTritonConfig", TRITON_SEARCH, variant,
                         {"repo": model_id, **measures}, name=name, variant=variant, backend=backend, mode=v.mode,
                         configs=tuple(configs), default_index=0, constraints=constraints, objective=t.objective,
                         weights=tuple(sorted(t.weights.items())), load=load, space=_space(recipe, backend, kind))
        searches.append(search_id)
        if t.validate:
            check_inputs = {"search": search_id, "repo": model_id, "reference": REFERENCE_ID, **server_inputs}
            if recipe.correctness.metric is not None:
                check_inputs["metric"] = METRIC_ID
            _add(graph, f"triton/validate/{variant}", "ValidateTritonModel", TRITON_VALIDATE, variant, check_inputs,
                 name=name, protocols=tuple(t.protocols), check=_check_params(graph, recipe, variant),
                 url=t.server.url, grpc_url=t.server.grpc_url, startup_timeout_s=t.server.startup_timeout_s)
    return searches


def _check_params(graph: Graph, recipe: Any, variant: str) -> Any:
    """The variant's own correctness params (tolerances, metric, batch sizes), for the served model."""
    check = graph.targets.get(f"correctness/{variant}")
    if check is not None:
        return check.params

    v = formats.variant(variant)
    atol, rtol = tolerances(recipe, v.precision)
    return CorrectnessParams(variant_format=v.runner, factory=None, outputs=tuple(recipe.outputs),
                             batch_sizes=tuple(sorted(recipe.profile.batch_sizes)), atol=atol, rtol=rtol,
                             runtime=RuntimeOptions())


def constraints_of(recipe: Any) -> Constraints:
    """The recipe's ``triton.constraints``."""
    c = recipe.triton.constraints
    return Constraints(c.p99_latency_ms, c.min_throughput, c.max_memory_mb, c.max_gpu_memory_mb)


def _space(recipe: Any, backend: str, kind: str) -> Any:
    """The search space of one variant deployed with ``kind`` instances (placement.instance_kind)."""
    search = recipe.triton.search
    options = search.backend_options.get(backend, {})
    gpu = kind == KIND_GPU
    accelerators = _accelerators(recipe, backend) if gpu else []
    return SearchSpace(max_batch_sizes=tuple(search.max_batch_sizes), instance_counts=tuple(search.instance_counts),
                       instance_kind=kind, dynamic_batching=tuple(search.dynamic_batching),
                       max_queue_delays_us=tuple(search.max_queue_delays_us),
                       backend_options=tuple((k, tuple(str(v) for v in values)) for k, values in options.items()),
                       gpus=deployment_gpus(recipe) if gpu else (),
                       accelerators=tuple(accelerators) if any(name for name, _ in accelerators) else ())


def _add(graph: Graph, target_id: str, step_name: str, kind: str, of_variant: str, inputs: dict[str, str], /,
         **params: Any) -> str:
    step = load_step(step_name)
    return graph.add(Target(target_id, step.name, step.Params(**params), inputs, kind=kind, variant=of_variant))


__all__ = ["expand_triton", "triton_variants", "search_configs", "engine_batch_sizes", "engine_of", "constraints_of", "variant_parameters", "concurrency", "model_name",
           "resolved_kind", "warmup_gap", "TRITON_MODEL", "TRITON_MEASURE", "TRITON_SEARCH", "TRITON_VALIDATE"]
