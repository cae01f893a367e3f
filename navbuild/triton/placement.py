"""Where a deployed variant's Triton instances run: the instance kind, which GPUs, whether it warms up, and
why a kind is refused for a variant. Pure: reads the recipe and the format families, never a GPU.

A variant's ``device`` says where navbuild checked and profiled it ("cpu" or "cuda"). Served on the
other kind, its checks and profiles would not say how it behaves, so such a deployment is refused,
except where a model has no GPU variant to deploy instead (a TorchScript file, which Triton's libtorch
backend loads onto the instance's GPU).
"""

from __future__ import annotations

import re
from typing import Any

from navbuild import formats
from navbuild.formats.base import Variant

KIND_CPU, KIND_GPU = "KIND_CPU", "KIND_GPU"


def _device(recipe: Any) -> str:
    # the recipe's ``device`` (auto | cpu | cuda | cuda:N)
    return str(getattr(recipe, "device", None) or "cpu")


def _variant_device(v: Variant) -> str:
    return v.device


def on_gpu_device(recipe: Any, resolved: str | None = None) -> bool:
    """Whether the recipe's models run on a CUDA GPU: ``resolved`` (the plan's device kind, "cpu" or
    "cuda", navbuild.device.resolve), else the recipe's ``cuda`` or ``cuda:N`` (``auto`` is known only
    once resolved)."""
    return resolved == "cuda" if resolved else _device(recipe).strip().startswith("cuda")


def pinned_gpu(recipe: Any) -> int | None:
    """N where the recipe's device is ``cuda:N``: the build then shows the servers it starts only that
    GPU, as their GPU 0 (navbuild.device.expose); None otherwise."""
    match = re.fullmatch(r"\s*cuda:(\d+)\s*", _device(recipe))
    return int(match.group(1)) if match else None


def deployment_gpus(recipe: Any) -> tuple[int, ...]:
    """The GPUs KIND_GPU instances go on, as the Triton server numbers the GPUs it sees:
    ``triton.search.gpus``, else GPU 0 (the recipe's ``cuda:N``, which is all a pinned build's
    server sees, or the first visible GPU)."""
    listed = tuple(int(g) for g in recipe.triton.search.gpus)
    return listed or (0,)


def gpu_twin(v: Variant) -> Variant | None:
    """The GPU variant that serves the same model through the same Triton backend as CPU variant ``v``
    (onnx -> onnx-cuda), or None."""
    serving = formats.triton_serving(v.runner)
    if serving is None or _variant_device(v) != "cpu":
        return None
    for other in formats.catalogue():
        twin_serving = formats.triton_serving(other.runner)
        if (_variant_device(other) == "cuda" and other.model == v.model and other.mode == v.mode
                and twin_serving is not None and twin_serving.backend.name == serving.backend.name):
            return other
    return None


def instance_kind(recipe: Any, variant: str, resolved: str | None = None) -> str:
    """The instance kind ``variant`` is deployed with: ``triton.search.instance_kind`` when set, else
    KIND_GPU for a GPU variant, and for a CPU variant with no GPU twin whose backend runs on a GPU
    when the recipe's device is cuda (``resolved``: as the plan resolved it); else KIND_CPU."""
    chosen = recipe.triton.search.instance_kind
    if chosen:
        return str(chosen)
    v = formats.variant(variant)
    if v is None:
        return KIND_CPU
    if _variant_device(v) == "cuda":
        return KIND_GPU
    serving = formats.triton_serving(v.runner)
    if (on_gpu_device(recipe, resolved) and serving is not None and KIND_GPU in serving.backend.kinds
            and gpu_twin(v) is None):
        return KIND_GPU
    return KIND_CPU


def kind_refusal(variant: str, kind: str) -> str:
    """Why ``variant`` cannot be deployed with instances of ``kind`` ("" when it can)."""
    v = formats.variant(variant)
    serving = formats.triton_serving(v.runner) if v is not None else None
    if v is None or serving is None:
        return ""  # deployable() says why it cannot be deployed at all
    backend = serving.backend
    if kind not in backend.kinds:
        why = backend.no_gpu if kind == KIND_GPU and backend.no_gpu else \
            f"Triton's {backend.name} backend runs {', '.join(backend.kinds)} only, not {kind}"
        return f"{why}; deploy another variant, or set triton.search.instance_kind: {backend.kinds[0]}"
    if kind == KIND_CPU and _variant_device(v) == "cuda":
        return (f"{variant} is a GPU variant (checked and profiled on cuda): deploy it with KIND_GPU "
                "(triton.search.instance_kind: KIND_GPU, or leave it null), or deploy a CPU variant")
    if kind == KIND_GPU and (twin := gpu_twin(v)) is not None:
        return (f"{variant} was checked and profiled on the CPU: deploy {twin.name} (the same model on cuda) "
                "with KIND_GPU, or set triton.search.instance_kind: KIND_CPU")
    return ""


def warmup_on(recipe: Any, kind: str) -> bool:
    """Whether models get ``model_warmup``: ``triton.warmup``, else on for KIND_GPU and off for KIND_CPU."""
    chosen = recipe.triton.warmup
    return bool(chosen) if chosen is not None else kind == KIND_GPU


__all__ = ["KIND_CPU", "KIND_GPU", "on_gpu_device", "pinned_gpu", "deployment_gpus", "gpu_twin", "instance_kind", "kind_refusal",
           "warmup_on"]
