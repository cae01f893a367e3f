"""Recipe -> build graph. Pure: reads no model, imports no torch; one ``expand_*`` per concern."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from navbuild import formats
from navbuild.cache.keys import tool_versions
from navbuild.device import CPU, CUDA, Device, read_machine, resolve
from navbuild.formats import PlanContext, Variant
from navbuild.formats.common import tensor_specs, torch_factory
from navbuild.measure_conditions import MeasurePolicy
from navbuild.planning.accuracy_search import Budget, SearchPlan, declare_search
from navbuild.planning.graph import Graph
from navbuild.errors import RecipeError
from navbuild.planning.onnx_source import OnnxSourceFacts, accepted_recipe, external_data_files, read_onnx_source
from navbuild.planning.target import ACCURACY, CONVERT, CORRECTNESS, DRIFT, PROFILE, REFERENCE, SOURCE, Leaf, Target
from navbuild.recipe.paths import module_origin, resolve_path
from navbuild.recipe.schema import Recipe
from navbuild.runtime import RuntimeOptions
from navbuild.steps.base import load_step
from navbuild.steps.accuracy import AccuracyParams
from navbuild.steps.correctness import MetricSpec
from navbuild.steps.probes import ProbeParams, auto_probe_sizes, default_probe_batches

SOURCE_ID = "source"
SAMPLES_FILE_ID = "samples-file"
METRIC_ID = "metric"
GENERATOR_ID = "samples-generator"
REFERENCE_ID = "reference"
# The reference run's thread count is fixed, not the recipe's: changing the threads to
# profile with must not change the reference outputs every check compares against.
REFERENCE_THREADS = 2
#: the models a conversion may read that are not conversions: the source leaf, the reference target
_PSEUDO_MODELS = {formats.SOURCE: SOURCE_ID, formats.REFERENCE: REFERENCE_ID}


def expand(recipe: Recipe, cwd: Path) -> Graph:
    """Expand a validated recipe into its graph of targets."""
    graph = Graph()
    expand_device(graph, recipe)
    expand_source(graph, recipe, cwd)
    recipe = accept_source(graph, recipe)
    expand_reference(graph, recipe)
    variants = formats.selected(list(recipe.formats), list(recipe.precisions), list(recipe.variants),
                                graph.device.kind)
    note_formats_off_device(graph, recipe)
    rankers = search_rankers(graph, recipe, variants)
    searched: dict[str, tuple[Target, formats.AccuracySearch]] = {}
    models = expand_conversions(graph, recipe, variants + rankers, searched)
    built = [v for v in variants if v.model not in searched]  # a searched model's checks join when it is found
    expand_checks(graph, recipe, built, models)
    expand_profiles(graph, recipe, built, models)
    expand_drift(graph, recipe, built + rankers, models)
    mark_unavailable(graph, recipe)
    graph.variant_models = {v.name: models[v.model] if v.model else None for v in variants}
    for v in variants:
        if v.model in searched:
            expand_search(graph, recipe, v, models, *searched[v.model])
    graph.measure = MeasurePolicy(max_background_load=recipe.profile.max_background_load,
                                  remeasure=recipe.profile.remeasure)
    return graph


def expand_device(graph: Graph, recipe: Recipe) -> Device:
    """The recipe's device resolved on this machine (navbuild.device), kept on the graph; the plan says
    which and why wherever a GPU is in question (asked for, or present on this machine)."""
    graph.device = resolve(recipe.device)
    if graph.device.kind == CUDA or read_machine().gpus:
        graph.notes.append(f"device: {graph.device.text} ({graph.device.why})")
    return graph.device


def note_formats_off_device(graph: Graph, recipe: Recipe) -> None:
    """A note naming the recipe's formats that have no variant on its device (OpenVINO on a GPU): the
    device picks the variants, so those formats plan nothing there."""
    if recipe.variants:
        return
    kind = graph.device.kind
    idle = [f for f in recipe.formats if not any(v.format == f and v.device == kind for v in formats.catalogue())]
    if idle and len(idle) < len(recipe.formats):
        other = CPU if kind == CUDA else CUDA
        graph.notes.append(f"device {graph.device.text}: format(s) {', '.join(idle)} have no {kind} variant, so "
                           f"nothing of theirs is planned (write device: {other} for them)")


def gpu_of(graph: Graph, device: str) -> int | None:
    """The GPU a target of a variant (or conversion) on ``device`` runs on: the recipe's (its first
    when the recipe's device is cpu and a variant named explicitly is a GPU one); None on cpu."""
    if device == CPU:
        return None
    chosen = graph.device
    return chosen.index if chosen is not None and chosen.kind == CUDA and chosen.index is not None else 0


def search_rankers(graph: Graph, recipe: Recipe, variants: list[Variant]) -> list[Variant]:
    """The variants whose drift ranks the layers of a selected accuracy-aware variant's search
    (``AccuracySearch.ranked_by``) and that are not selected themselves: their model and drift are
    built for the search (not checked or profiled)."""
    ctx = PlanContext(recipe, _onnx_facts(graph, recipe))
    names = {v.name for v in variants}
    rankers: list[Variant] = []
    for v in variants:
        conv = formats.conversion(v.model) if v.model else None
        search = None if conv is None or conv.from_source(recipe) else conv.plan(ctx).search
        if search is not None and search.ranked_by not in names:
            names.add(search.ranked_by)
            rankers.append(formats.variant(search.ranked_by))
    return rankers


def expand_source(graph: Graph, recipe: Recipe, cwd: Path) -> None:
    """The source model (and a samples file) as leaves whose content identifies them."""
    src = recipe.source
    watch = tuple(resolve_path(w, cwd) for w in src.watch)
    facts = {f"package:{p}": v for p, v in tool_versions(src.packages).items()}
    if src.onnx or src.torchscript:
        path = resolve_path(src.onnx or src.torchscript, cwd)
        weights = external_data_files(path, read_onnx_source(path)) if src.onnx else ()
        missing = [w for w in weights if not w.is_file()]
        if missing:
            raise RecipeError(f"source.onnx: '{src.onnx}' keeps weights in external data file '{missing[0].name}', "
                              f"which does not exist (looked at {missing[0]}); put the model's data files beside it",
                              where="recipe")
        graph.add(Leaf(SOURCE_ID, path, (path, *weights, *watch), facts))
    else:
        module = src.torch.partition(":")[0]
        origin = _module_file(module, cwd)
        files = ((origin,) if origin else ()) + watch
        facts = {**facts, "factory": src.torch}
        graph.add(Leaf(SOURCE_ID, origin or cwd, files, facts))
    if recipe.samples.file:
        path = resolve_path(recipe.samples.file, cwd)
        graph.add(Leaf(SAMPLES_FILE_ID, path, (path,)))
    if recipe.samples.generator:
        _code_leaf(graph, GENERATOR_ID, recipe.samples.generator, cwd)
    if recipe.correctness.metric is not None:
        # the metric's code decides verdicts: its file is part of every check's key
        _code_leaf(graph, METRIC_ID, recipe.correctness.metric.function, cwd)


def _onnx_facts(graph: Graph, recipe: Recipe) -> OnnxSourceFacts | None:
    """The ONNX source file's header facts (None for other sources or an unreadable file)."""
    return read_onnx_source(graph.leaves[SOURCE_ID].path) if recipe.source.onnx else None


def accept_source(graph: Graph, recipe: Recipe) -> Recipe:
    """The recipe restricted to the sizes the ONNX source accepts (fixed batch, fixed axes);
    what changed is noted on the graph, for the plan to show."""
    accepted, notes = accepted_recipe(recipe, _onnx_facts(graph, recipe), Path(recipe.source.onnx or "").name)
    graph.notes.extend(notes)
    return accepted


def fit_to_source(recipe: Recipe, cwd: Path) -> Recipe:
    """The recipe as ``expand`` builds it: restricted to the sizes the source accepts (what the
    selection and the finalists must use too)."""
    if not recipe.source.onnx:
        return recipe
    return accepted_recipe(recipe, read_onnx_source(resolve_path(recipe.source.onnx, cwd)),
                           Path(recipe.source.onnx).name)[0]


def _code_leaf(graph: Graph, leaf_id: str, function: str, cwd: Path) -> None:
    """A leaf for user code named ``module:function``: its module file's content identifies it."""
    origin = _module_file(function.partition(":")[0], cwd)
    graph.add(Leaf(leaf_id, origin or cwd, (origin,) if origin else (), {"function": function}))


def expand_reference(graph: Graph, recipe: Recipe) -> None:
    """Samples and the source model's outputs on them at every batch size."""
    step = load_step("ReferenceFromSource")
    inputs = {"source": SOURCE_ID}
    if recipe.samples.file:
        inputs["samples_file"] = SAMPLES_FILE_ID
    elif recipe.samples.generator:
        inputs["samples_generator"] = GENERATOR_ID  # its code makes the samples: part of the key
    params = step.Params(
        source_format="onnx" if recipe.source.onnx else "torch",
        factory=torch_factory(recipe),
        inputs=tensor_specs(recipe),
        outputs=tuple(recipe.outputs),
        count=recipe.samples.count,
        seed=recipe.samples.seed,
        axes=dict(recipe.samples.axes),
        batch_sizes=tuple(sorted(recipe.profile.batch_sizes)),
        threads=REFERENCE_THREADS,
        generator=None if recipe.samples.file else recipe.samples.generator,
        generator_kwargs=dict(recipe.samples.generator_kwargs),
        probe=probe_params(recipe),
    )
    graph.add(Target(REFERENCE_ID, step.name, params, inputs, kind=REFERENCE))


def probe_params(recipe: Recipe):
    """The reference's probes: the recipe's ``correctness.probe`` with its defaults resolved here
    wherever the samples' sizes are known (so the sizes are in the key and in ``plan``); a samples
    file's sizes are known only to the reference step, which resolves the rest the same way."""

    probe = recipe.correctness.probe
    if not probe.enabled:
        return None
    axes = {axis: tuple(int(n) for n in sizes) for axis, sizes in probe.axes.items() if sizes}
    if not recipe.samples.file:
        dynamic = {d for i in recipe.inputs for d in list(i.shape)[1:] if isinstance(d, str)}
        for axis, n in recipe.samples.axes.items():
            if axis in dynamic and axis not in axes:
                axes[axis] = auto_probe_sizes(int(n))
    batches = (tuple(probe.batch_sizes) if probe.batch_sizes is not None
               else default_probe_batches(list(recipe.profile.batch_sizes)))
    return ProbeParams(axes=dict(sorted(axes.items())), batch_sizes=batches, rows=probe.rows, stress=probe.stress)


def expand_conversions(graph: Graph, recipe: Recipe, variants: list[Variant],
                       searched: dict[str, tuple[Target, formats.AccuracySearch]] | None = None) -> dict[str, str]:
    """One target per model the selected variants need, and the models those read, transitively
    (openvino-int8 needs openvino, which needs onnx unless openvino.source is torch), each planned
    by the format family that declares it (navbuild/formats).

    A model found by a search (``Planned.search``) gets no target here: its starting target and its
    search go to ``searched`` (model -> both), and the search adds the target once it has chosen.
    Returns model name -> the id of the target (or leaf) that provides it (or will).
    """
    ctx = PlanContext(recipe, _onnx_facts(graph, recipe))
    plans: dict[str, formats.Planned | None] = {}  # None: the source itself is that model
    pending = [v.model for v in variants if v.model]
    while pending:
        model = pending.pop()
        if model in plans or model in _PSEUDO_MODELS:
            continue
        conv = formats.conversion(model)
        plans[model] = None if conv.from_source(recipe) else conv.plan(ctx)
        pending.extend(plans[model].inputs.values() if plans[model] else ())
    models: dict[str, str] = dict(_PSEUDO_MODELS)
    for conv in formats.conversions():
        if conv.model not in plans:
            continue
        planned = plans[conv.model]
        if planned is None:
            models[conv.model] = SOURCE_ID
            continue
        late = [m for m in planned.inputs.values() if m not in models]
        if late:
            raise ValueError(f"conversion '{conv.model}' (rank {conv.rank}) reads {', '.join(late)}, "
                             "which must rank before it")
        step = load_step(planned.step)
        inputs = {slot: models[m] for slot, m in planned.inputs.items()}
        more = {}
        if planned.budget is not None:
            more = budget_params(recipe, planned.budget)
            if recipe.correctness.metric is not None:
                inputs["metric"] = METRIC_ID  # the metric's code judges the trials: part of the key
        target = Target(conv.model, step.name, planned.make_params(step.Params, **more), inputs, kind=CONVERT,
                        gpu=gpu_of(graph, conv.device))
        if planned.search is not None and searched is not None:
            searched[conv.model] = (target, planned.search)
            models[conv.model] = target.id
            continue
        models[conv.model] = graph.add(target)
        if planned.note:
            graph.notes.append(planned.note)
    return {m: tid for m, tid in models.items() if m not in _PSEUDO_MODELS}


def mark_unavailable(graph: Graph, recipe: Recipe) -> None:
    """Targets that cannot run on this source or device say why at plan time (``unavailable: <why>``)
    instead of failing to load at build time: torch.compile, dynamic int8 and torch.export on a
    TorchScript file; GPU targets where the recipe's GPU is hidden (CUDA_VISIBLE_DEVICES). A machine
    without a GPU, or with a CPU torch, is said at status time (navbuild.planning.status)."""
    hidden = graph.device.unusable if graph.device is not None and read_machine().gpus else ""
    for tid, target in list(graph.targets.items()):
        why = formats.unavailable_on_serialized(recipe.source.torchscript, target.variant or tid) \
            if recipe.source.torchscript else ""
        why = why or (f"no CUDA GPU ({hidden})" if hidden and target.gpu is not None else "")
        if why:
            graph.targets[tid] = dataclasses.replace(target, unavailable=why)


def _variant_inputs(v: Variant, models: dict[str, str]) -> dict[str, str]:
    inputs = {"reference": REFERENCE_ID}
    if v.model:
        inputs["model"] = models[v.model]
    else:  # runs the source itself, in a runtime mode
        inputs["source"] = SOURCE_ID
    return inputs


def tolerances(recipe: Recipe, precision: str) -> tuple[float, float]:
    """(atol, rtol) of a precision: fp32 from correctness.atol/rtol, others from correctness.precisions."""
    if precision == "fp32" or precision not in recipe.correctness.precisions:
        return recipe.correctness.atol, recipe.correctness.rtol
    tol = recipe.correctness.precisions[precision]
    return tol.atol, tol.rtol


def scale_budget(recipe: Recipe, precision: str) -> dict:
    """The scale-aware part of a precision's budget (range_rtol, cosine_min); none for fp32."""
    if precision == "fp32" or precision not in recipe.correctness.precisions:
        return {"range_rtol": 0.0, "cosine_min": None}
    tol = recipe.correctness.precisions[precision]
    return {"range_rtol": tol.range_rtol, "cosine_min": tol.cosine_min}


def output_budgets(recipe: Recipe) -> dict:
    """Per-output budgets (``correctness.outputs``), every precision."""
    return {k: {"atol": t.atol, "rtol": t.rtol, "range_rtol": t.range_rtol, "cosine_min": t.cosine_min}
            for k, t in recipe.correctness.outputs.items()}


def expand_checks(graph: Graph, recipe: Recipe, variants: list[Variant], models: dict[str, str]) -> None:
    """A correctness check of every variant against the source, at every profiled batch size.

    The torch variant is the source itself: it is the reference and gets no check.
    """

    step = load_step("CheckCorrectness")
    metric = recipe.correctness.metric
    spec = None if metric is None else MetricSpec.from_section(metric)
    for v in variants:
        if v.name == "torch":
            continue
        atol, rtol = tolerances(recipe, v.precision)
        inputs = _variant_inputs(v, models)
        if metric is not None:
            inputs["metric"] = METRIC_ID
        params = step.Params(variant_format=v.runner, factory=torch_factory(recipe) if v.model is None else None,
                             outputs=tuple(recipe.outputs),
                             batch_sizes=tuple(sorted(recipe.profile.batch_sizes)), atol=atol, rtol=rtol,
                             runtime=_runtime(recipe, v), precision=v.precision,
                             output_tolerances=output_budgets(recipe), metric=spec,
                             **scale_budget(recipe, v.precision), probe=recipe.correctness.probe.enabled,
                             stress=recipe.correctness.probe.stress and v.precision == "fp32")
        graph.add(Target(f"correctness/{v.name}", step.name, params, inputs, kind=CORRECTNESS, variant=v.name,
                         gpu=gpu_of(graph, v.device)))


def budget_params(recipe: Recipe, precision: str) -> dict:
    """A conversion's budget fields (``Planned.budget``): what its precision's correctness check would judge."""
    metric = recipe.correctness.metric
    atol, _ = tolerances(recipe, precision)
    scale = scale_budget(recipe, precision)
    return dict(outputs=tuple(recipe.outputs), batch_sizes=tuple(sorted(recipe.profile.batch_sizes)), atol=atol,
                range_rtol=scale["range_rtol"], cosine_min=scale["cosine_min"],
                output_tolerances=output_budgets(recipe),
                metric=None if metric is None else MetricSpec.from_section(metric))


def accuracy_budget(recipe: Recipe, precision: str) -> Budget:
    """What a precision's variant must meet, as the correctness check judges it: the recipe's metric when it
    has one, else the precision's tolerance and the per-output ones."""
    metric = recipe.correctness.metric
    atol, rtol = tolerances(recipe, precision)
    return Budget(metric=None if metric is None else MetricSpec.from_section(metric),
                  tolerance={"atol": atol, "rtol": rtol, **scale_budget(recipe, precision)},
                  outputs=output_budgets(recipe))


def expand_search(graph: Graph, recipe: Recipe, v: Variant, models: dict[str, str], start: Target,
                  search: formats.AccuracySearch) -> None:
    """The search that finds ``v``'s model (navbuild.planning.accuracy_search): its trials' measurements
    (figures only: the budget is not in their keys), then its model, check and profile once it has chosen."""
    metric = recipe.correctness.metric
    params = AccuracyParams(variant_format=v.runner, outputs=tuple(recipe.outputs),
                            batch_sizes=tuple(sorted(recipe.profile.batch_sizes)), runtime=_runtime(recipe, v),
                            metric_function=None if metric is None else metric.function,
                            metric_name=None if metric is None else metric.name)
    inputs = {"model": start.id, "reference": REFERENCE_ID}
    if metric is not None:
        inputs["metric"] = METRIC_ID
    measure = Target(f"{start.id}/accuracy", "MeasureAccuracy", params, inputs, kind=ACCURACY, variant=v.name,
                     gpu=gpu_of(graph, v.device))

    def finish(g: Graph) -> None:
        expand_checks(g, recipe, [v], models)
        expand_profiles(g, recipe, [v], models)

    declare_search(graph, SearchPlan(variant=v.name, model=start.id, start=start, keep=search.keep,
                                     measure=measure, drift=f"drift/{search.ranked_by}",
                                     budget=accuracy_budget(recipe, search.precision),
                                     max_trials=search.max_trials, finish=finish,
                                     op_types=search.quantizes(start.params)))


def expand_profiles(graph: Graph, recipe: Recipe, variants: list[Variant], models: dict[str, str]) -> None:
    """Latency and throughput of every variant at every batch size (hardware in the key)."""
    step = load_step("ProfilePerformance")
    prof = recipe.profile
    for v in variants:
        params = step.Params.from_section(prof, variant_format=v.runner, runtime=_runtime(recipe, v),
                                          factory=torch_factory(recipe) if v.model is None else None,
                                          batch_sizes=tuple(sorted(prof.batch_sizes)))
        graph.add(Target(f"profile/{v.name}", step.name, params, _variant_inputs(v, models), kind=PROFILE,
                         variant=v.name, gpu=gpu_of(graph, v.device)))


def expand_drift(graph: Graph, recipe: Recipe, variants: list[Variant], models: dict[str, str]) -> None:
    """Where each reduced-precision variant's error comes from: a ``drift/<variant>`` target comparing
    every intermediate tensor of its model with the fp32 model it was made from, on the largest
    profiled batch the samples fill (``drift``), for the variants whose family declares a drift step.

    No check, profile or ranking reads a drift target: one that fails fails alone.
    """
    if not recipe.drift.enabled:
        return
    for v in variants:
        step_name = formats.drift_step(v.runner)
        if v.precision == "fp32" or step_name is None:
            continue
        model = models[v.model] if v.model else SOURCE_ID  # no model: a runtime mode of the source
        if v.drift_from:
            upstream = graph.targets.get(model)
            if upstream is None or v.drift_from not in upstream.inputs:
                continue  # the variant's model is the source itself: nothing it was made from
            fp32 = upstream.inputs[v.drift_from]
        else:
            fp32 = model
        step = load_step(step_name)
        params = step.Params(variant=v.name, compared_with=fp32, batch=drift_batch(recipe),
                             top=recipe.drift.top, mode=v.mode,
                             factory=torch_factory(recipe) if v.model is None else None)
        graph.add(Target(f"{DRIFT}/{v.name}", step.name, params,
                         {"model": model, "fp32": fp32, "reference": REFERENCE_ID}, kind=DRIFT, variant=v.name,
                         gpu=gpu_of(graph, v.device)))


def drift_batch(recipe: Recipe) -> int:
    """The rows a drift compares: the largest profiled batch size the samples fill without repeating
    a row (all of them when every batch size is larger). A samples file's row count is known only
    to the step, which caps the largest batch size at it."""
    sizes = sorted(recipe.profile.batch_sizes)
    if recipe.samples.file:
        return sizes[-1]
    count = recipe.samples.count
    return max((b for b in sizes if b <= count), default=count)


def source_discovery_params(recipe: Recipe):
    """Params of the run that discovers what defines a torch source (its modules, files, distributions)."""
    step = load_step("DiscoverSourceDependencies")
    return step.Params(factory=torch_factory(recipe), inputs=tensor_specs(recipe), axes=dict(recipe.samples.axes),
                       seed=recipe.samples.seed)


def _runtime(recipe: Recipe, v: Variant):

    rt = recipe.runtime
    runner = formats.runner(v.runner)
    if runner is None or not runner.session_options:
        # only a runner that reads them (ONNX Runtime) gets the inter-op threads, graph level and
        # denormal flushing: keep them out of other keys.
        return RuntimeOptions(intra_op_threads=rt.intra_op_threads, inter_op_threads=1, graph_level="n/a",
                              mode=v.mode)
    return RuntimeOptions(intra_op_threads=rt.intra_op_threads, inter_op_threads=rt.inter_op_threads,
                          graph_level=v.graph_level or rt.graph_level, mode=v.mode,
                          flush_denormals=rt.flush_denormals)


def _module_file(module: str, cwd: Path) -> Path | None:
    try:
        return module_origin(module, cwd)
    except (ImportError, ValueError):
        return None


__all__ = ["expand", "fit_to_source", "SOURCE_ID", "REFERENCE_ID", "SAMPLES_FILE_ID", "METRIC_ID", "SOURCE",
           "tensor_specs", "tolerances", "scale_budget", "output_budgets", "probe_params"]
