"""``navbuild.export``: at the end of training, build a model through the recipe graph and write a .nav package."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from navbuild.cache.open import local_cache_root
from navbuild.errors import InputError
from navbuild.lazy import lazy_import
from navbuild.package.samples_infer import infer_samples
from navbuild.package.view import Package
from navbuild.package.writer import write_package
from navbuild.recipe.schema import Recipe
from navbuild.recipe.validate import check_semantics
from navbuild.report.events import Reporter
from navbuild.runners.torch_runner import flatten_outputs
from navbuild.samples import save_npz
from navbuild.session import build_prepared, load_recipe, prepare
from navbuild.steps.eager_check import TORCH_KERNELS, eager_mismatch

np = lazy_import("numpy")

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


    cwd = Path(cwd or Path.cwd()).resolve()
    _check_arguments(model, formats=formats, precisions=precisions, path=path, recipe=recipe,
                     overrides=overrides, name=name, max_samples=max_samples)
    if recipe is not None and dataclasses.is_dataclass(recipe):
        recipe = _without_defaults(dataclasses.asdict(recipe))
    model = model.eval()
    arrays, specs, axes = infer_samples(samples, model, input_names, dynamic_axes, max_samples,
                                        accepts=lambda row: _fails_on(model, row))
    outputs = list(output_names or _output_names(model, arrays))
    count = int(next(iter(arrays.values())).shape[0])

    def resolved(serialized: Path, samples_file: Path) -> Any:
        base: dict[str, Any] = {
            "name": name or "model",
            "source": {"torchscript": str(serialized)},
            "inputs": specs,
            "outputs": outputs,
            "samples": {"file": str(samples_file), "count": count, "axes": axes},
            "formats": list(formats),
            "precisions": list(precisions),
        }
        merged = _deep_merge(base, dict(recipe or {}))
        merged["source"] = base["source"]  # the package's source is the serialized model, always
        if not isinstance(merged.get("samples"), dict):
            merged["samples"] = base["samples"]
        merged["samples"]["file"] = str(samples_file)
        return load_recipe(merged, overrides, cwd)[0]

    # Serialize and validate the whole recipe in a folder outside the cache: a refused recipe
    # (formats=["nope"]) or model leaves nothing behind; only then do the files enter the cache.
    with tempfile.TemporaryDirectory(prefix="navbuild-export-") as tmp:
        # each file is named file.<suffix> in its own folder: torch writes the file's name into
        # its bytes, and these bytes are the source's content digest (so keys stay as they were)
        model_dir, state_dir, samples_dir = (Path(tmp) / d for d in ("model", "state", "samples"))
        for d in (model_dir, state_dir, samples_dir):
            d.mkdir()
        serialized, kind = _serialize(model, arrays, model_dir)
        state_dict = state_dir / "file.pt"
        torch.save(model.state_dict(), state_dict)
        samples_file = samples_dir / "file.npz"
        _save_npz(samples_file, arrays)
        rec = resolved(serialized, samples_file)
        check_semantics(rec, cwd, where="navbuild.export recipe")
        sources = local_cache_root(rec.cache.dir, cwd) / SOURCE_DIR
        sources.mkdir(parents=True, exist_ok=True)
        serialized = _keep(serialized, sources, "model-")
        state_dict = _keep(state_dict, sources, "state_dict-")
        samples_file = _keep(samples_file, sources, "samples-")
    rec = resolved(serialized, samples_file)
    cache_root = local_cache_root(rec.cache.dir, cwd)
    reporter = reporter or Reporter()
    result = build_prepared(prepare(rec, None, cwd), reporter)
    recipe_dict = dataclasses.asdict(rec)
    out_path = Path(path) if Path(path).is_absolute() else cwd / path
    write_package(out_path, result=result, recipe=recipe_dict, serialized=serialized, serialized_kind=kind,
                  state_dict=state_dict, samples_file=samples_file, cache_root=cache_root,
                  include_artifacts=include_artifacts, include_samples=include_samples)
    package = Package.open(out_path)
    package.build = result
    return package


def _check_arguments(model: Any, **args: Any) -> None:
    """The arguments' types, before anything runs or is written: one InputError naming each problem."""
    import torch

    def show(value: Any) -> str:
        text = repr(value)
        return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"

    def strings(value: Any) -> bool:
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)

    p = []
    if not isinstance(model, torch.nn.Module):
        p.append(f"model: expected a torch.nn.Module, got {show(model)}")
    for key in ("formats", "precisions", "overrides"):
        if not strings(args[key]):
            p.append(f"{key}: expected a list of strings, got {show(args[key])}")
    path = args["path"]
    if not isinstance(path, (str, Path)) or Path(path).suffix != ".nav":
        p.append(f"path: expected a file name ending in .nav, got {show(path)}")
    recipe = args["recipe"]
    if recipe is not None and not isinstance(recipe, Mapping) and not dataclasses.is_dataclass(recipe):
        p.append(f"recipe: expected a mapping of recipe keys or a Recipe, got {show(recipe)}")
    if args["name"] is not None and not isinstance(args["name"], str):
        p.append(f"name: expected a string, got {show(args['name'])}")
    if not isinstance(args["max_samples"], int) or isinstance(args["max_samples"], bool) or args["max_samples"] < 1:
        p.append(f"max_samples: expected an integer >= 1, got {show(args['max_samples'])}")
    if p:
        raise InputError("navbuild.export: " + "; ".join(p))


def _fails_on(model: Any, row: Mapping[str, np.ndarray]) -> str | None:
    """Why ``model`` cannot run on ``row`` (None: it can)."""
    import torch

    try:
        with torch.no_grad():
            model(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in row.items()})
    except Exception as exc:  # noqa: BLE001 - whatever the model raises is the answer
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def _output_names(model: Any, arrays: Mapping[str, np.ndarray]) -> list[str]:
    import torch


    try:
        with torch.no_grad():
            out = model(**{k: torch.from_numpy(v[:1].copy()) for k, v in arrays.items()})
    except Exception as exc:  # noqa: BLE001 - the model does not run on its own samples
        raise InputError(f"navbuild.export: model: fails on samples[0] ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); check the samples' names, "
                         "shapes and dtypes against the model's forward") from None
    names, values = flatten_outputs(out)
    return names or [f"output_{i}" for i in range(len(values))]


def _serialize(model: Any, arrays: Mapping[str, np.ndarray], folder: Path) -> tuple[Path, str]:
    """TorchScript trace (checked against eager at two batch sizes), else torch.export, into ``folder``."""
    import torch

    small = {k: torch.from_numpy(v[:2].copy()) for k, v in arrays.items()}
    other = {k: torch.from_numpy(np.concatenate([v, v, v])[:3].copy()) for k, v in arrays.items()}

    def same(got: Any, want: Any) -> bool:
        return not eager_mismatch(want, got, TORCH_KERNELS)

    errors = []
    with torch.no_grad():
        try:
            traced = torch.jit.trace(model, example_kwarg_inputs=small, strict=False, check_trace=False)
            if same(traced(**other), model(**other)) and same(traced(**small), model(**small)):
                traced.save(str(folder / "file.pt"))
                return folder / "file.pt", "torchscript"
            errors.append("TorchScript trace: outputs differ from the model at another batch size")
        except Exception as exc:  # noqa: BLE001 - try the next serializer
            errors.append(f"TorchScript trace: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        try:
            batch = torch.export.Dim("batch")
            shapes = {k: {0: batch} for k in small}
            program = torch.export.export(model, (), small, dynamic_shapes=shapes)
            torch.export.save(program, str(folder / "file.pt2"))
            return folder / "file.pt2", "exported_program"
        except Exception as exc:  # noqa: BLE001
            errors.append(f"torch.export: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    raise InputError("model: cannot be serialized without its code; " + "; ".join(errors))


def _keep(path: Path, folder: Path, prefix: str) -> Path:
    """Move ``path`` into ``folder`` under its content digest (stable paths); return where it is."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    final = folder / f"{prefix}{digest[:24]}{path.suffix}"
    if not final.exists():
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=folder)
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return final


def _save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:

    save_npz(path, dict(arrays))


def _without_defaults(data: dict) -> dict:
    """A Recipe object's values that differ from the schema's defaults (the ones the user set)."""

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
