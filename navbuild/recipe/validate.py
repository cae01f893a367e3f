"""Recipe validation in two passes: structure and types against the schema, then semantics.

Both passes collect every problem with its key path before raising one ``RecipeError``.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import re
import typing
from pathlib import Path
from typing import Any, Iterable

from navbuild import formats
from navbuild.device import device_problem, resolve
from navbuild.errors import RecipeError
from navbuild.model_io import BATCH_AXIS
from navbuild.recipe.paths import module_origin, resolve_path
from navbuild.recipe.schema import Recipe
from navbuild.recipe.validate_triton import check_triton
from navbuild.settings import check_choice, check_settings

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# ----------------------------------------------------------------------------- pass 1

def check_structure(data: Any, where: str = "recipe") -> None:
    """Check a recipe's raw mapping (a YAML file's content) against the schema.

    Unknown keys get a "did you mean" suggestion; values of the wrong type are named with
    their key path. Interpolations (``${...}``) are left for composition to resolve.
    """
    problems: list[str] = []
    if not isinstance(data, dict):
        raise RecipeError(f"(top level): expected a mapping of recipe keys, got {type(data).__name__}", where)
    extra = {"defaults"}  # Hydra's defaults list may appear in a recipe file
    _walk(Recipe, data, "", problems, allowed_extra=extra)
    if problems:
        raise RecipeError(problems, where)


def check_key_path(path: str) -> str | None:
    """Return a problem message if ``path`` (e.g. ``onnx.opsett``) is not a recipe key, else None."""
    cls: Any = Recipe
    walked: list[str] = []
    for part in path.split("."):
        name = re.sub(r"\[\d+\]$", "", part)
        if not dataclasses.is_dataclass(cls):
            return None  # inside a free-form mapping (kwargs, axes) or list: anything goes
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if name not in fields:
            here = ".".join(walked + [name])
            return f"{here}: unknown key{_suggest(name, fields)}"
        walked.append(name)
        hint = typing.get_type_hints(cls)[name]
        cls = _strip_optional(hint)
        if typing.get_origin(cls) in (list, typing.List) and part.endswith("]"):
            cls = typing.get_args(cls)[0]
    return None


def _walk(cls: type, data: dict, prefix: str, problems: list[str], allowed_extra: Iterable[str] = ()) -> None:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in names:
            if key in allowed_extra:
                continue
            problems.append(f"{path}: unknown key{_suggest(str(key), names)}")
            continue
        _check_value(hints[key], value, path, problems)


def _check_value(hint: Any, value: Any, path: str, problems: list[str]) -> None:
    if isinstance(value, str) and "${" in value:
        return  # an interpolation: resolved and type-checked at composition
    optional = _is_optional(hint)
    hint = _strip_optional(hint)
    if value is None:
        if not optional and hint is not Any:
            problems.append(f"{path}: must not be null")
        return
    if value == "???":
        return
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping, got {_show(value)}")
        else:
            _walk(hint, value, path + ".", problems)
    elif origin in (list, typing.List):
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list, got {_show(value)}")
            return
        (inner,) = typing.get_args(hint) or (Any,)
        for i, item in enumerate(value):
            _check_value(inner, item, f"{path}[{i}]", problems)
    elif origin in (dict, typing.Dict):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping, got {_show(value)}")
            return
        args = typing.get_args(hint)
        if args and args[1] is not Any:
            for k, v in value.items():
                _check_value(args[1], v, f"{path}.{k}", problems)
    elif hint is bool:
        if not isinstance(value, bool):
            problems.append(f"{path}: expected true or false, got {_show(value)}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path}: expected an integer, got {_show(value)}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{path}: expected a number, got {_show(value)}")
    elif hint is str:
        if not isinstance(value, str):
            problems.append(f"{path}: expected a string, got {_show(value)}")


def _is_optional(hint: Any) -> bool:
    return typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint)


def _strip_optional(hint: Any) -> Any:
    if _is_optional(hint):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else Any
    return hint


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (known keys: {', '.join(sorted(choices))})"


# ----------------------------------------------------------------------------- pass 2

def check_semantics(recipe: Recipe, cwd: Path, where: str = "recipe") -> None:
    """Check what types cannot: ranges, choices, cross-references, files. Raise every problem at once.

    Each field's own choices and bounds are declared on it (navbuild.settings) and checked by one
    walk; what is written here spans fields or sections. The triton section is checked only when on.
    """
    p: list[str] = []
    _check_source(recipe, cwd, p)
    _check_inputs(recipe, p)
    p.extend(check_settings(recipe, skip=("triton",)))
    names = [o for o in recipe.outputs]
    for i, name in enumerate(names):
        if names.index(name) != i:
            p.append(f"outputs[{i}]: duplicate output name '{name}'")
    if not recipe.formats:
        p.append("formats: must name at least one format")
    for i, fmt in enumerate(recipe.formats):
        if (msg := check_choice(fmt, formats.recipe_formats(), f"formats[{i}]")):
            p.append(msg)
        elif recipe.formats.index(fmt) != i:
            p.append(f"formats[{i}]: '{fmt}' is listed twice")
    for i, prec in enumerate(recipe.precisions):
        if (msg := check_choice(prec, formats.precisions(), f"precisions[{i}]")):
            p.append(msg)
    _check_variants(recipe, p)
    _check_profile(recipe, p)
    _check_select(recipe, p)
    _check_samples(recipe, cwd, p)
    check_triton(recipe, p, cwd)
    if p:
        raise RecipeError(p, where)


def _check_source(recipe: Recipe, cwd: Path, p: list[str]) -> None:
    src = recipe.source
    given = [k for k in ("torch", "onnx", "torchscript", "package") if getattr(src, k)]
    if len(given) != 1:
        p.append("source: set exactly one of source.torch (module:function), source.onnx (a .onnx file), "
                 "source.torchscript (a .pt/.pt2 file) or source.package (a .nav package)"
                 + (f"; got {', '.join('source.' + g for g in given)}" if given else ""))
        return
    if src.torch:
        module, sep, func = src.torch.partition(":")
        if not sep or not module or not _IDENT.match(func or ""):
            p.append(f"source.torch: '{src.torch}' must look like 'package.module:function'")
        else:
            problem = _find_factory(module, func, cwd)
            if problem:
                p.append(f"source.torch: {problem}")
    for key, suffixes in (("onnx", (".onnx",)), ("torchscript", (".pt", ".pt2")), ("package", (".nav",))):
        value = getattr(src, key)
        if not value:
            continue
        path = resolve_path(value, cwd)
        if not path.is_file():
            p.append(f"source.{key}: file '{value}' does not exist (looked at {path})")
        elif path.suffix not in suffixes:
            p.append(f"source.{key}: '{value}' must be a {' or '.join(suffixes)} file")
    if src.onnx:
        for i, fmt in enumerate(recipe.formats):
            if fmt in formats.torch_source_formats():
                p.append(f"formats[{i}]: '{fmt}' needs a torch source; this recipe's source is an ONNX file")
    for i, w in enumerate(src.watch):
        if not resolve_path(w, cwd).exists():
            p.append(f"source.watch[{i}]: '{w}' does not exist")


def _find_factory(module: str, func: str, cwd: Path) -> str | None:
    """Find ``module`` and check that it defines ``func``, without importing the module.

    Importing would pull torch into `plan`; reading the module's syntax tree is enough to
    catch a misspelt name.
    """
    try:
        origin = module_origin(module, cwd)
    except (ImportError, ValueError) as exc:
        return f"module '{module}' cannot be found ({exc})"
    if origin is None:
        return f"module '{module}' not found (is it installed, or in the working directory {cwd}?)"
    origin = str(origin)
    if not origin.endswith(".py"):
        return None  # compiled or namespace module: checked when the model is loaded
    try:
        tree = ast.parse(Path(origin).read_text(encoding="utf-8"))
    except (OSError, SyntaxError) as exc:
        return f"module '{module}' ({origin}) cannot be read: {exc}"
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
    if func not in defined:
        return f"function '{func}' not found in module '{module}' ({origin}){_suggest(func, defined) if defined else ''}"
    return None


def _check_inputs(recipe: Recipe, p: list[str]) -> None:
    if not recipe.inputs:
        p.append("inputs: declare at least one input (name, dtype, shape)")
    seen: set[str] = set()
    for i, inp in enumerate(recipe.inputs):
        at = f"inputs[{i}]"
        if not _IDENT.match(inp.name or "") and not re.match(r"^[\w.:/-]+$", inp.name or ""):
            p.append(f"{at}.name: '{inp.name}' is not a valid tensor name")
        if inp.name in seen:
            p.append(f"{at}.name: duplicate input name '{inp.name}'")
        seen.add(inp.name)
        if not inp.shape:
            p.append(f"{at}.shape: must have at least the batch axis")
        elif inp.shape[0] != BATCH_AXIS:
            p.append(f"{at}.shape[0]: the first axis must be '{BATCH_AXIS}' (got {inp.shape[0]!r})")
        for j, d in enumerate(inp.shape):
            if isinstance(d, bool) or not isinstance(d, (int, str)):
                p.append(f"{at}.shape[{j}]: {d!r} must be a positive integer or an axis name")
            elif isinstance(d, int) and d < 1:
                p.append(f"{at}.shape[{j}]: {d} must be >= 1")
            elif isinstance(d, str) and not _IDENT.match(d):
                p.append(f"{at}.shape[{j}]: '{d}' is not a valid axis name")
            elif isinstance(d, str) and d != BATCH_AXIS and d not in recipe.samples.axes and not recipe.samples.file:
                p.append(f"{at}.shape[{j}]: dynamic axis '{d}' needs a size in samples.axes.{d}")
            elif d == BATCH_AXIS and j != 0:
                p.append(f"{at}.shape[{j}]: '{BATCH_AXIS}' may only be the first axis")
        if len(inp.range) != 2:
            p.append(f"{at}.range: expected [low, high], got {list(inp.range)}")
        elif inp.range[0] >= inp.range[1] and inp.dtype != "bool":
            p.append(f"{at}.range: low {inp.range[0]} must be below high {inp.range[1]}")


def _device_kind(recipe: Recipe, p: list[str]) -> str | None:
    """The kind (cpu, cuda) of the recipe's device on this machine; None where it is wrong (the
    setting's own check says how, or a GPU it names is not here: added to ``p``)."""
    if device_problem(recipe.device):
        return None
    try:
        return resolve(recipe.device).kind
    except RecipeError as err:
        p.extend(err.problems)
        return None


def _check_variants(recipe: Recipe, p: list[str]) -> None:
    for i, name in enumerate(recipe.variants):
        if (msg := check_choice(name, formats.variant_names(), f"variants[{i}]")):
            p.append(msg)
        elif recipe.source.onnx and formats.variant(name).format in formats.torch_source_formats():
            p.append(f"variants[{i}]: '{name}' needs a torch source; this recipe's source is an ONNX file")
    kind = _device_kind(recipe, p)
    if recipe.formats and not recipe.variants and all(f in formats.recipe_formats() for f in recipe.formats) \
            and all(x in formats.precisions() for x in recipe.precisions) and kind is not None \
            and not formats.selected(list(recipe.formats), list(recipe.precisions), [], kind):
        p.append(f"formats {list(recipe.formats)} x precisions {list(recipe.precisions)}: selects no variant"
                 + ("" if kind == "cpu" else f" on device {recipe.device} (the GPU variants: "
                    f"{', '.join(v.name for v in formats.catalogue() if v.device == kind)})"))
    if recipe.openvino.source == "torch" and recipe.source.onnx:
        p.append("openvino.source: 'torch' converts the torch module, but this recipe's source is an ONNX file; "
                 "use 'onnx'")
    for prec, tol in recipe.correctness.precisions.items():
        if (msg := check_choice(prec, formats.precisions(), f"correctness.precisions.{prec}")):
            p.append(msg)
        if tol.atol < 0 or tol.rtol < 0:
            p.append(f"correctness.precisions.{prec}: atol and rtol must be >= 0")
    _check_probe(recipe, p)
    metric = recipe.correctness.metric
    if metric is not None:
        module, sep, func = metric.function.partition(":")
        if not sep or not module or not _IDENT.match(func):
            p.append(f"correctness.metric.function: '{metric.function}' must look like 'package.module:function'")
        if metric.min is None and metric.max is None:
            p.append("correctness.metric: set min or max (the pass condition on the metric's value)")


def _check_probe(recipe: Recipe, p: list[str]) -> None:
    """Probe sizes name declared dynamic axes and are positive."""
    probe = recipe.correctness.probe
    axes = sorted({d for i in recipe.inputs for d in list(i.shape)[1:] if isinstance(d, str)})
    for axis, sizes in probe.axes.items():
        if axis not in axes:
            p.append(f"correctness.probe.axes.{axis}: not a dynamic axis of the inputs"
                     + (_suggest(axis, axes) if axes else " (they have none besides batch)"))
        for i, size in enumerate(sizes):
            if size < 1:
                p.append(f"correctness.probe.axes.{axis}[{i}]: {size} must be >= 1")


def _check_profile(recipe: Recipe, p: list[str]) -> None:
    prof = recipe.profile
    if not prof.batch_sizes:
        p.append("profile.batch_sizes: must list at least one batch size")
    for i, b in enumerate(prof.batch_sizes):
        if b < 1:
            p.append(f"profile.batch_sizes[{i}]: {b} must be >= 1")
        elif prof.batch_sizes.index(b) != i:
            p.append(f"profile.batch_sizes[{i}]: {b} is listed twice")
    if prof.finalist_rounds < 1 or prof.finalist_iters < 1:
        p.append("profile.finalist_rounds and profile.finalist_iters must be >= 1")
    if prof.max_windows < prof.stable_windows:
        p.append(f"profile.max_windows: {prof.max_windows} must be >= profile.stable_windows ({prof.stable_windows})")


def _check_select(recipe: Recipe, p: list[str]) -> None:
    sel = recipe.select
    if sel.batch_size is not None and sel.batch_size not in recipe.profile.batch_sizes:
        p.append(f"select.batch_size: {sel.batch_size} is not one of profile.batch_sizes {list(recipe.profile.batch_sizes)}")


def _check_samples(recipe: Recipe, cwd: Path, p: list[str]) -> None:
    s = recipe.samples
    if s.generator:
        module, sep, func = s.generator.partition(":")
        if not sep or not module or not _IDENT.match(func):
            p.append(f"samples.generator: '{s.generator}' must look like 'package.module:function'")
        elif s.file:
            p.append("samples: set samples.file or samples.generator, not both")
        elif (problem := _find_factory(module, func, cwd)):
            p.append(f"samples.generator: {problem}")
    if s.file:
        path = resolve_path(s.file, cwd)
        if not path.is_file():
            p.append(f"samples.file: '{s.file}' does not exist (looked at {path})")
        elif path.suffix != ".npz":
            p.append(f"samples.file: '{s.file}' must be a .npz file")
        else:
            p.extend(_npz_problems(path, recipe))


def _npz_problems(path: Path, recipe: Recipe) -> list[str]:
    import numpy as np

    problems = []
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: (data[k].dtype, data[k].shape) for k in data.files}
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input problem
        return [f"samples.file: '{path}' cannot be read as .npz: {exc}"]
    for i, inp in enumerate(recipe.inputs):
        if inp.name not in arrays:
            problems.append(f"samples.file: '{path.name}' has no array '{inp.name}' "
                            f"(inputs[{i}]); it has {', '.join(sorted(arrays)) or 'none'}")
            continue
        dtype, shape = arrays[inp.name]
        if str(dtype) != inp.dtype:
            problems.append(f"samples.file: array '{inp.name}' has dtype {dtype}, inputs[{i}].dtype declares {inp.dtype}")
        if len(shape) != len(inp.shape):
            problems.append(f"samples.file: array '{inp.name}' has shape {tuple(shape)}, "
                            f"inputs[{i}].shape declares {list(inp.shape)}")
            continue
        for j, (got, want) in enumerate(zip(shape, inp.shape)):
            if isinstance(want, int) and got != want:
                problems.append(f"samples.file: array '{inp.name}' dim {j} is {got}, inputs[{i}].shape[{j}] declares {want}")
    return problems
