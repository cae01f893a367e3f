"""Turn user samples (dicts/tuples of tensors or arrays, lists, dataloaders) into named arrays and input specs."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Mapping, Sequence

from navbuild.errors import InputError
from navbuild.lazy import lazy_import
from navbuild.model_io import BATCH_AXIS

np = lazy_import("numpy")


def to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def forward_names(model: Any) -> list[str]:
    """Positional parameter names of ``model.forward`` (to name tuple samples)."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError, AttributeError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def infer_samples(samples: Any, model: Any = None, input_names: Sequence[str] | None = None,
                  dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
                  max_rows: int = 64, accepts: Callable[[dict[str, np.ndarray]], str | None] | None = None,
                  ) -> tuple[dict[str, np.ndarray], list[dict], dict[str, int]]:
    """Named sample arrays (batch first), the input specs, and the sizes of dynamic axes.

    Every item of ``samples`` is a batch: a dict of tensors/arrays, a tuple/list of them (named
    from ``input_names`` or the model's forward signature), or one tensor. Items are stacked
    along the batch axis. A non-batch dim whose size differs between items, or that
    ``dynamic_axes`` names (``{"input_ids": {1: "seq"}}``), is dynamic; only items of the first
    item's shape are kept as samples. ``accepts`` (one row of an item -> None, or why the model
    fails on it) is asked about the first item of every other shape: items the model cannot take
    are ragged samples (64 features here, 32 there), refused rather than silently dropped.
    """
    items = [samples] if isinstance(samples, Mapping) else list(_iterate(samples))
    if not items:
        raise InputError("samples: no samples given (an empty list or dataloader)")
    named = [_name_item(item, model, input_names, i) for i, item in enumerate(items)]
    names = list(named[0])
    for i, item in enumerate(named):
        if list(item) != names:
            raise InputError(f"samples[{i}]: inputs {list(item)} differ from samples[0]'s {names}")
    dynamic: dict[str, dict[int, str]] = {n: {int(k): str(v) for k, v in (dynamic_axes or {}).get(n, {}).items()}
                                          for n in names}
    for n in names:
        first = named[0][n]
        if first.ndim == 0:
            raise InputError(f"samples: input '{n}' is a scalar; every input needs a leading batch dimension")
        for item in named[1:]:
            if item[n].ndim != first.ndim or item[n].dtype != first.dtype:
                raise InputError(f"samples: input '{n}' changes rank or dtype between items "
                                 f"({first.dtype}{list(first.shape)} vs {item[n].dtype}{list(item[n].shape)})")
            for d in range(1, first.ndim):
                if item[n].shape[d] != first.shape[d]:
                    dynamic[n].setdefault(d, f"{n}_dim{d}")
    keep = [item for item in named if all(item[n].shape[1:] == named[0][n].shape[1:] for n in names)]
    if accepts is not None and len(keep) < len(named):
        _check_other_shapes(named, names, accepts)
    arrays = {n: np.concatenate([item[n] for item in keep], axis=0)[:max_rows] for n in names}
    specs, axes = [], {}
    for n in names:
        arr = arrays[n]
        shape: list[Any] = [BATCH_AXIS]
        for d in range(1, arr.ndim):
            axis = dynamic[n].get(d)
            shape.append(axis if axis else int(arr.shape[d]))
            if axis:
                axes[axis] = int(arr.shape[d])
        low, high = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
        specs.append({"name": n, "dtype": str(arr.dtype), "shape": shape,
                      "range": [low, high if high > low else low + 1.0]})
    return arrays, specs, axes


def _check_other_shapes(named: list[dict[str, np.ndarray]], names: list[str],
                        accepts: Callable[[dict[str, np.ndarray]], str | None]) -> None:
    seen = {tuple(named[0][n].shape[1:] for n in names)}
    for i, item in enumerate(named):
        shapes = tuple(item[n].shape[1:] for n in names)
        if shapes in seen:
            continue
        seen.add(shapes)
        why = accepts({n: item[n][:1] for n in names})
        if why:
            n = next(n for n in names if item[n].shape[1:] != named[0][n].shape[1:])
            raise InputError(f"samples[{i}]: input '{n}' has shape {list(item[n].shape)} where samples[0] has "
                             f"{list(named[0][n].shape)}, and the model fails on it ({why}); ragged samples are "
                             "refused: give batches that agree in every dimension but the batch and the "
                             "model's dynamic axes")


def _iterate(samples: Any) -> Iterable[Any]:
    if hasattr(samples, "detach") or isinstance(samples, np.ndarray):
        yield samples  # one tensor: one batch
        return
    if isinstance(samples, tuple) and samples and all(hasattr(s, "shape") for s in samples):
        yield samples  # one tuple of tensors: one batch
        return
    try:
        yield from iter(samples)
    except TypeError:
        raise InputError(f"samples: expected a dict, a tuple, a list or a dataloader of batches, "
                         f"got {type(samples).__name__}") from None


def _name_item(item: Any, model: Any, input_names: Sequence[str] | None, index: int) -> dict[str, np.ndarray]:
    if isinstance(item, Mapping):
        return {str(k): to_numpy(v) for k, v in item.items()}
    values = list(item) if isinstance(item, (tuple, list)) else [item]
    names = list(input_names or []) or forward_names(model)[:len(values)]
    if len(names) < len(values):
        names = names + [f"input_{i}" for i in range(len(names), len(values))]
    if len(names) != len(values):
        raise InputError(f"samples[{index}]: {len(values)} tensors but input_names has {len(names)} names")
    return {n: to_numpy(v) for n, v in zip(names, values)}
