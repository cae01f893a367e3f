"""Semantic checks of a recipe's ``triton:`` section (search space, load, constraints, objective)."""

from __future__ import annotations

import difflib
from pathlib import Path

from navbuild import formats
from navbuild.recipe import schema
from navbuild.recipe.paths import resolve_path
from navbuild.recipe.schema import Recipe
from navbuild.settings import check_settings, unknown
from navbuild.triton.model_config import backends, check_backend_parameters
from navbuild.triton.placement import KIND_CPU, KIND_GPU, instance_kind, kind_refusal, on_gpu_device, pinned_gpu


def deployable(variant: str) -> str | None:
    """Why ``variant`` cannot be deployed to a native Triton backend, or None when it can."""
    v = formats.variant(variant)
    if v is None:
        return f"unknown variant '{variant}'"
    serving = formats.triton_serving(v.runner)
    if serving is None:
        return f"{variant} runs the torch source ({v.runner}): Triton has no native backend for it"
    return serving.refuses(v) or None


def check_triton(recipe: Recipe, p: list[str], cwd: Path | None = None) -> None:
    """Append every problem of ``recipe.triton`` to ``p`` (nothing when the section is off)."""
    t = recipe.triton
    if not t.enabled:
        return
    _check_variants(recipe, p)
    p.extend(check_settings(t, "triton."))  # choices and bounds declared in the schema
    _check_search(t.search, p)
    _check_load(t.load, t.search, p)
    _check_placement(recipe, p)
    for key, weight in t.weights.items():
        if key not in ("throughput", "latency"):
            p.append(unknown(key, ("throughput", "latency"), "triton.weights", word="key"))
        elif weight < 0:
            p.append(f"triton.weights.{key}: {weight} must be >= 0")
    if t.objective == "weighted" and not any(t.weights.get(k, 0) > 0 for k in ("throughput", "latency")):
        p.append("triton.weights: a weighted objective needs a positive weight on throughput or latency")
    if t.server.path is not None and cwd is not None:

        server = resolve_path(t.server.path, cwd)
        if not server.is_file():
            p.append(f"triton.server.path: '{t.server.path}' does not exist (looked at {server}); point it at a "
                     "tritonserver binary, or leave it unset for the one nvidia-pytriton bundles")
    if t.server.url is not None and ":" not in t.server.url:
        p.append(f"triton.server.url: '{t.server.url}' must look like 'host:port' (the HTTP endpoint)")


def _device_kinds(recipe: Recipe) -> tuple[str, ...]:
    """The device kinds the recipe's variants may be of: its device's, both for ``auto`` (resolved
    only when the recipe is planned)."""
    device = str(recipe.device).strip()
    return ("cpu", "cuda") if device == "auto" else ("cuda",) if device.startswith("cuda") else ("cpu",)


def _check_variants(recipe: Recipe, p: list[str]) -> None:
    built = list(dict.fromkeys(v.name for device in _device_kinds(recipe) for v in formats.selected(
        list(recipe.formats), list(recipe.precisions), list(recipe.variants), device)))
    for i, name in enumerate(recipe.triton.variants):
        where = f"triton.variants[{i}]"
        if name not in built:
            close = difflib.get_close_matches(name, built, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            p.append(f"{where}: '{name}' is not a variant this recipe builds{hint}; built: {', '.join(built)}")
        elif (why := deployable(name)):
            p.append(f"{where}: {why}")
    if not recipe.triton.variants and not any(deployable(n) is None for n in built):
        kinds = _device_kinds(recipe)
        servable = [f for f in formats.recipe_formats() if any(
            v.format == f and v.device in kinds and deployable(v.name) is None for v in formats.catalogue())]
        p.append("triton: none of this recipe's variants has a native Triton backend "
                 f"(built: {', '.join(built)}); add one of {', '.join(servable)} to formats, "
                 "or set triton.enabled: false")


def _check_search(s: schema.TritonSearchConfig, p: list[str]) -> None:

    known = backends()

    for key in ("max_batch_sizes", "instance_counts", "dynamic_batching"):
        if not getattr(s, key):
            p.append(f"triton.search.{key}: must list at least one value")
    for backend, options in s.backend_options.items():
        where = f"triton.search.backend_options.{backend}"
        if backend not in known or backend == "python":
            p.append(unknown(backend, [b for b in known if b != "python"], "triton.search.backend_options",
                             word="key"))
            continue
        pairs = []
        for name, values in options.items():
            if not isinstance(values, (list, tuple)) or not values:
                p.append(f"{where}.{name}: give a non-empty list of values to try")
                pairs.append((name, ""))  # the name is still checked
            else:
                pairs += [(name, str(v)) for v in values]
        for problem in check_backend_parameters(backend, pairs):
            p.append(f"{where}: {problem}")


def _check_placement(recipe: Recipe, p: list[str]) -> None:
    """The instance kind against the variants, and the GPU knobs against the kind."""
    t = recipe.triton
    for i, name in enumerate(t.variants):
        if formats.variant(name) is not None and deployable(name) is None:
            if (why := kind_refusal(name, instance_kind(recipe, name))):
                p.append(f"triton.variants[{i}]: {why}")
    if t.search.instance_kind == KIND_CPU:
        cpu = "but triton.search.instance_kind is KIND_CPU; drop it or deploy on KIND_GPU"
        if t.search.gpus:
            p.append(f"triton.search.gpus: {list(t.search.gpus)} name GPUs {cpu}")
        if (tried := [a for a in t.search.accelerators if a != "none"]):
            p.append(f"triton.search.accelerators: {', '.join(tried)} is a GPU accelerator {cpu}")
        if t.constraints.max_gpu_memory_mb is not None:
            p.append(f"triton.constraints.max_gpu_memory_mb: bounds GPU memory {cpu}")
    pinned = pinned_gpu(recipe)
    if pinned is not None and any(g != 0 for g in t.search.gpus):
        p.append(f"triton.search.gpus: {list(t.search.gpus)}: device cuda:{pinned} shows the servers a build starts "
                 f"only GPU {pinned}, as their GPU 0; leave gpus empty (or [0]), or write device: cuda to let "
                 "them see every GPU")
    gpu_kinds = [instance_kind(recipe, n) == KIND_GPU for n in t.variants if formats.variant(n) is not None]
    may_warm = t.warmup or (t.warmup is None and (t.search.instance_kind == KIND_GPU or on_gpu_device(recipe)
                                                  or any(gpu_kinds)))
    if may_warm:
        axes = dict(recipe.samples.axes)
        for spec in recipe.inputs:
            unsized = [d for d in list(spec.shape)[1:] if isinstance(d, str) and d not in axes]
            if unsized:
                p.append(f"triton.warmup: input '{spec.name}' has dynamic axes {unsized} without a size, which a "
                         f"warm-up request needs; give samples.axes.{unsized[0]} or set triton.warmup: false")


def _check_load(load: schema.TritonLoadConfig, search: schema.TritonSearchConfig, p: list[str]) -> None:
    if load.batch_size >= 1 and search.max_batch_sizes and load.batch_size > min(search.max_batch_sizes):
        p.append(f"triton.load.batch_size: {load.batch_size} exceeds triton.search.max_batch_sizes "
                 f"{list(search.max_batch_sizes)}: a request must fit the smallest max_batch_size")


__all__ = ["check_triton", "deployable"]
