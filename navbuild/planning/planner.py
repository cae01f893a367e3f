"""Recipe -> build graph. Pure: reads no model, imports no torch; one ``expand_*`` per concern."""

from __future__ import annotations

from pathlib import Path

from navbuild.model_io import TensorSpec
from navbuild.planning.graph import Graph
from navbuild.planning.target import CONVERT, CORRECTNESS, PROFILE, REFERENCE, SOURCE, Leaf, Target
from navbuild.recipe.schema import FORMATS, Recipe
from navbuild.recipe.validate import module_origin, resolve_path
from navbuild.steps.base import load_step

SOURCE_ID = "source"
SAMPLES_FILE_ID = "samples-file"
REFERENCE_ID = "reference"
# The reference run's thread count is fixed, not the recipe's: changing the threads to
# profile with must not change the reference outputs every check compares against.
REFERENCE_THREADS = 2


def expand(recipe: Recipe, cwd: Path) -> Graph:
    """Expand a validated recipe into its graph of targets."""
    graph = Graph()
    expand_source(graph, recipe, cwd)
    expand_reference(graph, recipe)
    models = expand_conversions(graph, recipe)
    expand_checks(graph, recipe, models)
    expand_profiles(graph, recipe, models)
    return graph


def expand_source(graph: Graph, recipe: Recipe, cwd: Path) -> None:
    """The source model (and a samples file) as leaves whose content identifies them."""
    src = recipe.source
    watch = tuple(resolve_path(w, cwd) for w in src.watch)
    facts = {f"package:{p}": _dist_version(p) for p in src.packages}
    if src.onnx or src.torchscript:
        path = resolve_path(src.onnx or src.torchscript, cwd)
        graph.add(Leaf(SOURCE_ID, path, (path, *watch), facts))
    else:
        module = src.torch.partition(":")[0]
        origin = _module_file(module, cwd)
        files = ((origin,) if origin else ()) + watch
        facts = {**facts, "factory": src.torch}
        graph.add(Leaf(SOURCE_ID, origin or cwd, files, facts))
    if recipe.samples.file:
        path = resolve_path(recipe.samples.file, cwd)
        graph.add(Leaf(SAMPLES_FILE_ID, path, (path,)))


def expand_reference(graph: Graph, recipe: Recipe) -> None:
    """Samples and the source model's outputs on them at every batch size."""
    step = load_step("ReferenceFromSource")
    inputs = {"source": SOURCE_ID}
    if recipe.samples.file:
        inputs["samples_file"] = SAMPLES_FILE_ID
    params = step.Params(
        source_format="onnx" if recipe.source.onnx else "torch",
        factory=_factory(recipe),
        inputs=tensor_specs(recipe),
        outputs=tuple(recipe.outputs),
        count=recipe.samples.count,
        seed=recipe.samples.seed,
        axes=dict(recipe.samples.axes),
        batch_sizes=tuple(sorted(recipe.profile.batch_sizes)),
        threads=REFERENCE_THREADS,
    )
    graph.add(Target(REFERENCE_ID, step.name, params, inputs, kind=REFERENCE))


def expand_conversions(graph: Graph, recipe: Recipe) -> dict[str, str | None]:
    """One target per requested format; returns variant -> the id its model comes from.

    ``None`` means the variant runs the source itself (torch eager).
    """
    models: dict[str, str | None] = {}
    wanted = [f for f in FORMATS if f in recipe.formats]  # canonical order
    onnx_id: str | None = None
    if "onnx" in wanted or "onnx-opt" in wanted:
        if recipe.source.onnx:
            onnx_id = SOURCE_ID
        else:
            step = load_step("OnnxFromTorch")
            params = step.Params(factory=_factory(recipe), inputs=tensor_specs(recipe),
                                 outputs=tuple(recipe.outputs), axes=dict(recipe.samples.axes),
                                 opset=recipe.onnx.opset, exporter=recipe.onnx.exporter,
                                 seed=recipe.samples.seed)
            onnx_id = graph.add(Target("onnx", step.name, params, {"source": SOURCE_ID},
                                       kind=CONVERT, variant="onnx"))
    for fmt in wanted:
        if fmt == "torch":
            models["torch"] = None
        elif fmt == "onnx":
            models["onnx"] = onnx_id
        elif fmt == "onnx-opt":
            step = load_step("OrtOptimizedFromOnnx")
            opt = recipe.onnx_opt
            params = step.Params(level=opt.level, fusion=opt.fusion, num_heads=opt.num_heads,
                                 hidden_size=opt.hidden_size)
            models["onnx-opt"] = graph.add(Target("onnx-opt", step.name, params, {"onnx": onnx_id},
                                                  kind=CONVERT, variant="onnx-opt"))
    return models


def expand_checks(graph: Graph, recipe: Recipe, models: dict[str, str | None]) -> None:
    """A correctness check of every variant against the source, at every profiled batch size.

    The torch variant is the source itself: it is the reference and gets no check.
    """
    step = load_step("CheckCorrectness")
    for variant, model_id in models.items():
        if model_id is None:
            continue
        params = step.Params(variant_format=_format(variant), factory=None,
                             outputs=tuple(recipe.outputs),
                             batch_sizes=tuple(sorted(recipe.profile.batch_sizes)),
                             atol=recipe.correctness.atol, rtol=recipe.correctness.rtol,
                             runtime=_runtime(recipe))
        graph.add(Target(f"correctness/{variant}", step.name, params,
                         {"model": model_id, "reference": REFERENCE_ID}, kind=CORRECTNESS, variant=variant))


def expand_profiles(graph: Graph, recipe: Recipe, models: dict[str, str | None]) -> None:
    """Latency and throughput of every variant at every batch size (hardware in the key)."""
    step = load_step("ProfilePerformance")
    prof = recipe.profile
    for variant, model_id in models.items():
        inputs = {"reference": REFERENCE_ID}
        inputs.update({"model": model_id} if model_id else {"source": SOURCE_ID})
        params = step.Params(variant_format=_format(variant),
                             factory=_factory(recipe) if model_id is None else None,
                             batch_sizes=tuple(sorted(prof.batch_sizes)), runtime=_runtime(recipe, variant),
                             warmup_iters=prof.warmup_iters, window_s=prof.window_s,
                             min_window_iters=prof.min_window_iters, stable_windows=prof.stable_windows,
                             stability=prof.stability, max_windows=prof.max_windows,
                             pin_cores=prof.pin_cores)
        graph.add(Target(f"profile/{variant}", step.name, params, inputs, kind=PROFILE, variant=variant))


def tensor_specs(recipe: Recipe) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(name=i.name, dtype=i.dtype, shape=tuple(i.shape),
                            low=float(i.range[0]), high=float(i.range[1])) for i in recipe.inputs)


def _factory(recipe: Recipe):
    from navbuild.steps.common import SERIALIZED_SOURCE, TorchFactory

    if recipe.source.torchscript:
        return TorchFactory(factory=SERIALIZED_SOURCE, kwargs={})
    if not recipe.source.torch:
        return None
    return TorchFactory(factory=recipe.source.torch, kwargs=dict(recipe.source.kwargs))


def _runtime(recipe: Recipe, variant: str = "onnx"):
    from navbuild.steps.common import RuntimeOptions

    rt = recipe.runtime
    if variant == "torch":
        # torch eager reads only the intra-op thread count: keep the rest out of its key.
        return RuntimeOptions(intra_op_threads=rt.intra_op_threads, inter_op_threads=1, graph_level="n/a")
    return RuntimeOptions(intra_op_threads=rt.intra_op_threads, inter_op_threads=rt.inter_op_threads,
                          graph_level=rt.graph_level)


def _format(variant: str) -> str:
    return "torch" if variant == "torch" else "onnx"


def _module_file(module: str, cwd: Path) -> Path | None:
    try:
        return module_origin(module, cwd)
    except (ImportError, ValueError):
        return None


def _dist_version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


__all__ = ["expand", "SOURCE_ID", "REFERENCE_ID", "SAMPLES_FILE_ID", "SOURCE", "tensor_specs"]
