"""``navbuild.export``: at the end of training, build a model through the recipe graph and write a .nav package."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from navbuild.errors import InputError
from navbuild.package.samples_infer import infer_samples

SOURCE_DIR = "sources"  # inside the cache: serialized models and sample files, by content


def export(model: Any, samples: Any, *, formats: Sequence[str] = ("torch", "onnx", "onnx-opt"),
           precisions: Sequence[str] = ("fp32",), path: str | Path = "model.nav",
           recipe: Mapping[str, Any] | None = None, overrides: Sequence[str] = (), name: str | None = None,
           input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
           dynamic_axes: Mapping[str, Mapping[int, str]] | None = None, max_samples: int = 64,
           include_artifacts: bool = True, include_samples: bool = True, cwd: str | Path | None = None,
           reporter: Any = None) -> Any:
    """Serialize ``model``, run the recipe graph on it (same targets, cache and checks as the CLI),
    and write everything to one ``.nav`` file. Returns the loaded :class:`navbuild.package.view.Package`.

    ``samples`` is a dict of tensors/arrays, a tuple of them, or a list/dataloader of such
    batches; names, dtypes and dynamic axes are inferred (``input_names``/``dynamic_axes``
    override). ``recipe`` is a recipe mapping whose keys win over the inferred ones.
    ``include_artifacts=False`` leaves conversions' artifacts out (they rebuild when the package
    is continued); ``include_samples=False`` leaves the samples and reference outputs out.
    """
    import torch

    from navbuild.api import build_prepared, load_recipe, prepare
    from navbuild.cache.store import resolve_cache_dir
    from navbuild.package.view import Package
    from navbuild.package.writer import write_package
    from navbuild.report.events import Reporter

    cwd = Path(cwd or Path.cwd()).resolve()
    if recipe is not None and dataclasses.is_dataclass(recipe):
        recipe = _without_defaults(dataclasses.asdict(recipe))
    model = model.eval() if hasattr(model, "eval") else model
    arrays, specs, axes = infer_samples(samples, model, input_names, dynamic_axes, max_samples)
    outputs = list(output_names or _output_names(model, arrays))
    cache_root = resolve_cache_dir((recipe or {}).get("cache", {}).get("dir"), cwd)
    sources = cache_root / SOURCE_DIR
    sources.mkdir(parents=True, exist_ok=True)
    serialized, kind = _serialize(model, arrays, sources)
    state_dict = _store_bytes(sources, "state_dict-", ".pt", lambda p: torch.save(model.state_dict(), p))
    samples_file = _store_bytes(sources, "samples-", ".npz", lambda p: _save_npz(p, arrays))

    base: dict[str, Any] = {
        "name": name or "model",
        "source": {"torchscript": str(serialized)},
        "inputs": specs,
        "outputs": outputs,
        "samples": {"file": str(samples_file), "count": int(next(iter(arrays.values())).shape[0]),
                    "axes": axes},
        "formats": list(formats),
        "precisions": list(precisions),
    }
    merged = _deep_merge(base, dict(recipe or {}))
    merged["source"] = base["source"]  # the package's source is the serialized model, always
    merged["samples"]["file"] = str(samples_file)
    rec, _ = load_recipe(merged, overrides, cwd)
    reporter = reporter or Reporter()
    result = build_prepared(prepare(rec, None, cwd), reporter)
    recipe_dict = dataclasses.asdict(rec)
    write_package(Path(path) if Path(path).is_absolute() else cwd / path, result=result,
                         recipe=recipe_dict, serialized=serialized, serialized_kind=kind,
                         state_dict=state_dict, samples_file=samples_file, cache_root=cache_root,
                         include_artifacts=include_artifacts, include_samples=include_samples)
    package = Package.open(Path(path) if Path(path).is_absolute() else cwd / path)
    package.build = result
    return package


def _output_names(model: Any, arrays: Mapping[str, np.ndarray]) -> list[str]:
    import torch

    from navbuild.runners.torch_runner import flatten_outputs

    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v[:1].copy()) for k, v in arrays.items()})
    names, values = flatten_outputs(out)
    return names or [f"output_{i}" for i in range(len(values))]


def _serialize(model: Any, arrays: Mapping[str, np.ndarray], folder: Path) -> tuple[Path, str]:
    """TorchScript trace (checked against eager at two batch sizes), else torch.export; by content."""
    import torch

    from navbuild.runners.torch_runner import flatten_outputs

    small = {k: torch.from_numpy(v[:2].copy()) for k, v in arrays.items()}
    other = {k: torch.from_numpy(np.concatenate([v, v, v])[:3].copy()) for k, v in arrays.items()}

    def same(a: Any, b: Any) -> bool:
        _, xs = flatten_outputs(a)
        _, ys = flatten_outputs(b)
        return len(xs) == len(ys) and all(x.shape == y.shape and torch.allclose(x, y, atol=1e-5, rtol=1e-4)
                                          for x, y in zip(xs, ys))

    errors = []
    with torch.no_grad():
        try:
            traced = torch.jit.trace(model, example_kwarg_inputs=small, strict=False, check_trace=False)
            if same(traced(**other), model(**other)) and same(traced(**small), model(**small)):
                return _store_bytes(folder, "model-", ".pt", lambda p: traced.save(str(p))), "torchscript"
            errors.append("TorchScript trace: outputs differ from the model at another batch size")
        except Exception as exc:  # noqa: BLE001 - try the next serializer
            errors.append(f"TorchScript trace: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        try:
            batch = torch.export.Dim("batch")
            shapes = {k: {0: batch} for k in small}
            program = torch.export.export(model, (), small, dynamic_shapes=shapes)
            return _store_bytes(folder, "model-", ".pt2", lambda p: torch.export.save(program, str(p))), "exported_program"
        except Exception as exc:  # noqa: BLE001
            errors.append(f"torch.export: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    raise InputError("model: cannot be serialized without its code; " + "; ".join(errors))


def _store_bytes(folder: Path, prefix: str, suffix: str, write: Any) -> Path:
    """Write a file through ``write(path)`` and keep it under its content digest (stable paths)."""
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        tmp_path = Path(tmp) / f"file{suffix}"
        write(tmp_path)
        digest = hashlib.sha256(tmp_path.read_bytes()).hexdigest()
        final = folder / f"{prefix}{digest[:24]}{suffix}"
        if not final.exists():
            shutil.move(str(tmp_path), final)
    return final


def _save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    from navbuild.samples import save_npz

    save_npz(path, dict(arrays))


def _without_defaults(data: dict) -> dict:
    """A Recipe object's values that differ from the schema's defaults (the ones the user set)."""
    from navbuild.recipe.schema import Recipe

    defaults = dataclasses.asdict(Recipe())

    def diff(mine: Any, default: Any) -> Any:
        if isinstance(mine, dict) and isinstance(default, dict):
            out = {k: diff(v, default.get(k)) for k, v in mine.items() if v != default.get(k)}
            return out
        return mine

    return {k: diff(v, defaults.get(k)) for k, v in data.items() if v != defaults.get(k)}


def _deep_merge(base: dict, over: Mapping[str, Any]) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


__all__ = ["export"]
