"""What a .nav manifest must hold: its schema, the strict names a package may use, and its size limits.

A package travels between machines, so everything in it is untrusted input. One check,
:func:`check_manifest`, decides whether a manifest can be used at all; ``show``,
``navbuild.load`` and continuing a build all run it before any member is read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from navbuild.cache.digest import tree_digest
from navbuild.cache.gc import parse_size
from navbuild.cache.keys import cache_key
from navbuild.errors import InputError, RecipeError
from navbuild.recipe.schema import Recipe
from navbuild.recipe.validate import check_semantics, check_structure

#: one path segment of a target id or an artifact inside a target (never "." or "..": it starts
#: with a letter, digit or "_"); no separators, no drive letters, no spaces
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.+=,@-]{0,127}"
TARGET_ID_RE = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT}){{0,7}}")
ARTIFACT_RE = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT}){{0,15}}")
HEX64_RE = re.compile(r"[0-9a-f]{64}")
#: input, output and variant names (they reach Triton configs and file names downstream)
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:+-]{0,127}")

#: the only names outside ``targets/`` a package may hold
SOURCE_FILES = ("source/model.pt", "source/model.pt2")
STATE_DICT_FILE = "source/state_dict.pt"
SAMPLES_FILE = "samples/samples.npz"
SOURCE_KINDS = {"source/model.pt": "torchscript", "source/model.pt2": "exported_program"}

#: suffixes of files that a Python process or a loader would run as code; a package never holds
#: them (the serialized model is the one piece of code a package carries, and only as SOURCE_FILES)
CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".pyd", ".pyw", ".pyi", ".pth", ".so", ".dll", ".dylib", ".sh",
                 ".bat", ".exe", ".pkl", ".pickle", ".egg", ".whl", ".zip", ".nav")

MAX_MANIFEST_BYTES = 64 << 20
MAX_MEMBERS = 100_000
#: the most a package may unpack to (``NAVBUILD_PACKAGE_MAX_BYTES`` overrides, e.g. ``64G``)
DEFAULT_MAX_TOTAL = 32 << 30
MAX_TOTAL_ENV = "NAVBUILD_PACKAGE_MAX_BYTES"
#: members are stored uncompressed by navbuild; a package that inflates to more than this many
#: times its own size is a zip bomb, whatever it declares
MAX_INFLATION = 100
_INFLATION_FLOOR = 1 << 20


class PackageError(InputError):
    """A package that cannot be trusted or read: refused, and nothing of it enters the cache."""


def max_total_bytes() -> int:
    """The cap on what one package may unpack to: ``$NAVBUILD_PACKAGE_MAX_BYTES`` or 32 GiB."""
    raw = os.environ.get(MAX_TOTAL_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_TOTAL

    try:
        return parse_size(raw)
    except ValueError as exc:
        raise InputError(f"${MAX_TOTAL_ENV}: {exc}") from None


def unpack_limit(package_size: int) -> int:
    """What a package of ``package_size`` bytes may unpack to, all members together."""
    return min(max_total_bytes(), max(MAX_INFLATION * package_size, _INFLATION_FLOOR))


def member_problem(name: Any) -> str | None:
    """Why ``name`` may not be a member of a package (None: it may)."""
    if not isinstance(name, str):
        return f"member name {name!r} is not a string"
    if name in SOURCE_FILES or name in (STATE_DICT_FILE, SAMPLES_FILE):
        return None
    prefix, _, rest = name.partition("/")
    if prefix != "targets" or not ARTIFACT_RE.fullmatch(rest):
        return (f"member '{name}' is not a name a package may hold (only {', '.join(SOURCE_FILES)}, "
                f"{STATE_DICT_FILE}, {SAMPLES_FILE} and targets/<id>/<file> of letters, digits and _.+=,@-)")
    if name.lower().endswith(CODE_SUFFIXES):
        return f"member '{name}' is code (a {os.path.splitext(name)[1]} file); a package never carries code"
    return None


def check_manifest(manifest: Any, path: Path) -> dict:
    """Check the manifest's schema, its recipe, and every name and size in it; return it, or raise.

    Everything continuing and ``show`` read from the manifest is checked here, so neither can
    fail on a well-formed-looking package later.
    """
    where = f"package {path}"
    p: list[str] = []
    if not isinstance(manifest, dict):
        raise PackageError(f"{where}: the manifest is not a JSON object; the package was refused")
    _fields(manifest, "", _TOP, p)
    if p:
        raise _refused(where, p)
    files: dict = manifest["files"]
    if len(files) > MAX_MEMBERS:
        p.append(f"files: {len(files)} members, more than {MAX_MEMBERS}")
    for name, facts in files.items():
        if (why := member_problem(name)):
            p.append(f"files: {why}")
        _fields(facts, f"files[{name}].", _FILE, p)
    if p:
        raise _refused(where, p)  # what follows reads the files' facts
    src = manifest["source"]
    if src["file"] not in SOURCE_FILES:
        p.append(f"source.file: '{src['file']}' must be one of {', '.join(SOURCE_FILES)}")
    elif SOURCE_KINDS[src["file"]] != src["kind"]:
        p.append(f"source.kind: '{src['kind']}' does not match source.file '{src['file']}'")
    elif src["file"] not in files:
        p.append(f"source.file: '{src['file']}' is not among the package's files")
    if src.get("state_dict") not in (None, STATE_DICT_FILE) or (src.get("state_dict") and STATE_DICT_FILE not in files):
        p.append(f"source.state_dict: must be {STATE_DICT_FILE} and among the package's files")
    if manifest["samples"] is not None and (manifest["samples"] != SAMPLES_FILE or SAMPLES_FILE not in files):
        p.append(f"samples: '{manifest['samples']}' must be {SAMPLES_FILE} (and among the package's files) or null")
    for i, spec in enumerate(manifest["inputs"]):
        if _fields(spec, f"inputs[{i}].", _INPUT, p) and not NAME_RE.fullmatch(spec["name"]):
            p.append(f"inputs[{i}].name: '{spec['name']}' is not a valid input name")
    for i, name in enumerate(manifest["outputs"]):
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            p.append(f"outputs[{i}]: {name!r} is not a valid output name")
    for name, v in manifest["variants"].items():
        if not NAME_RE.fullmatch(name):
            p.append(f"variants: '{name}' is not a valid variant name")
        if _fields(v, f"variants[{name}].", _VARIANT, p):
            for batch, figs in (v.get("profile") or {}).items():
                if not re.fullmatch(r"[0-9]{1,6}", batch):
                    p.append(f"variants[{name}].profile: batch size '{batch}' is not a number")
                _fields(figs, f"variants[{name}].profile[{batch}].", _PROFILE, p)
    claimed: set[str] = set()
    for tid, t in manifest["targets"].items():
        if not TARGET_ID_RE.fullmatch(tid):
            p.append(f"targets: '{tid}' is not a valid target id (letters, digits and _.+=,@- in up to 8 "
                     "'/'-separated parts)")
            continue
        if _fields(t, f"targets[{tid}].", _TARGET, p):
            _check_target(tid, t, files, claimed, p)
    unclaimed = sorted(n for n in files if n.startswith("targets/") and n not in claimed and not member_problem(n))
    if unclaimed:
        p.append(f"files: {', '.join(unclaimed[:5])} belong to no included target")
    if not p:
        _check_recipe(manifest["recipe"], path, p)
    if p:
        raise _refused(where, p)
    return manifest


#: recipe keys a package never decides: they name code to import, a program to run, a server
#: to reach or a folder on the machine that wrote it (the user's own recipe may set them)
NOT_FROM_PACKAGE = ("source", "output_dir", "cache", "samples.file", "samples.generator", "samples.generator_kwargs",
                    "correctness.metric", "triton.server.path", "triton.server.url", "triton.server.grpc_url")


def portable_recipe(recipe: dict) -> tuple[dict, list[str]]:
    """The package's recipe without the keys in NOT_FROM_PACKAGE; also the ones it had set."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in recipe.items()}
    dropped = []
    for dotted in NOT_FROM_PACKAGE:
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                node = None
                break
            node[part] = child = dict(child)
            node = child
        if node is not None and leaf in node:
            value = node.pop(leaf)
            if value not in (None, "", [], {}) and dotted not in ("source", "samples.file"):
                dropped.append(dotted)
    return out, dropped


def _check_recipe(recipe: dict, path: Path, p: list[str]) -> None:
    """The package's recipe as continuing would use it: types, no interpolations, then semantics."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException


    if (found := _interpolation(recipe, "recipe")):
        p.append(f"{found}: holds an interpolation ('${{...}}'); a package's recipe is plain data")
        return
    base, _ = portable_recipe(recipe)
    try:
        check_structure(base, where="recipe")
        data = {**base, "source": {"package": str(path)}}
        resolved = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Recipe), data))
        check_semantics(resolved, path.parent, where="recipe")
    except RecipeError as exc:
        p.extend(f"recipe.{x}" if not x.startswith("(") else f"recipe {x}" for x in exc.problems)
    except (OmegaConfBaseException, ValueError, TypeError) as exc:
        p.append(f"recipe: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def _interpolation(value: Any, where: str) -> str | None:
    if isinstance(value, str):
        return where if "${" in value else None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for k, v in items:
        if isinstance(k, str) and "${" in k:
            return f"{where}.{k}"
        found = _interpolation(v, f"{where}[{k}]" if isinstance(k, int) else f"{where}.{k}")
        if found:
            return found
    return None


def _check_target(tid: str, t: dict, files: dict, claimed: set[str], p: list[str]) -> None:

    where = f"targets[{tid}]"
    for name in ("key", "digest"):
        if not HEX64_RE.fullmatch(t[name]):
            p.append(f"{where}.{name}: '{t[name]}' is not a sha256 hex digest")
    try:
        if HEX64_RE.fullmatch(t["key"]) and cache_key(t["payload"]) != t["key"]:
            p.append(f"{where}.key: does not match its payload (a key is the digest of its payload)")
    except (TypeError, ValueError) as exc:
        p.append(f"{where}.payload: cannot be hashed ({exc})")
    if not t["included"]:
        return
    digests = {}
    for rel, facts in t["files"].items():
        member = f"targets/{tid}/{rel}"
        if not ARTIFACT_RE.fullmatch(rel) or member_problem(member):
            p.append(f"{where}.files: '{rel}' is not a valid artifact name")
        elif member not in files:
            p.append(f"{where}.files: '{rel}' is not among the package's files ({member})")
        elif not isinstance(facts, dict) or facts.get("sha256") != files[member]["sha256"]:
            p.append(f"{where}.files: '{rel}' has another digest than {member}")
        else:
            claimed.add(member)
            digests[rel] = facts["sha256"]
    if len(digests) == len(t["files"]) and tree_digest(digests) != t["digest"]:
        p.append(f"{where}.digest: does not match its files' digests")


def _refused(where: str, problems: list[str]) -> PackageError:
    shown = problems[:8] + ([f"... and {len(problems) - 8} more"] if len(problems) > 8 else [])
    return PackageError(f"{where}: the manifest is invalid, so the package was refused:\n"
                        + "\n".join(f"  - {x}" for x in shown))


# --- the schema: field -> (types, required) ---------------------------------------------------------

_NUM = (int, float)
_OPT_STR = (str, type(None))
_TOP = {"format": (str, True), "format_version": (int, True), "navbuild_version": (str, True),
        "created": (str, True), "source_framework": (str, True), "source": (dict, True),
        "samples": (_OPT_STR, True), "inputs": (list, True), "outputs": (list, True), "recipe": (dict, True),
        "hardware": (dict, True), "targets": (dict, True), "variants": (dict, True), "best": (dict, True),
        "files": (dict, True)}
_NESTED = {"source": {"file": (str, True), "kind": (str, True), "state_dict": (_OPT_STR, False)},
           "best": {"variant": (_OPT_STR, True), "why": (str, True)},
           "hardware": {"cpu_model": (_OPT_STR, False), "usable_cpus": ((int, type(None)), False)}}
_FILE = {"sha256": (str, True), "size": (int, True)}
_INPUT = {"name": (str, True), "dtype": (str, True), "shape": (list, True), "range": (list, False)}
_VARIANT = {"verdict": (str, True), "profile": ((dict, type(None)), False)}
_PROFILE = {"throughput": (_NUM, True), "latency_ms": (dict, True)}
_TARGET = {"key": (str, True), "payload": (dict, True), "digest": (str, True), "status": (str, True),
           "kind": (_OPT_STR, False), "variant": (_OPT_STR, False), "result": (dict, True),
           "included": (bool, True), "files": (dict, True), "seconds": (_NUM, False)}


def _fields(data: Any, prefix: str, spec: dict, p: list[str]) -> bool:
    """Check ``data`` against ``spec``; append problems; True when it fits."""
    before = len(p)
    if not isinstance(data, dict):
        p.append(f"{prefix.rstrip('.') or '(top level)'}: expected an object, got {type(data).__name__}")
        return False
    for key, (types, required) in spec.items():
        if key not in data:
            if required:
                p.append(f"{prefix}{key}: missing")
            continue
        value = data[key]
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            p.append(f"{prefix}{key}: expected {_type_names(types)}, got bool")
        elif not isinstance(value, types):
            p.append(f"{prefix}{key}: expected {_type_names(types)}, got {type(value).__name__}")
        elif not prefix and key in _NESTED:
            _fields(value, f"{key}.", _NESTED[key], p)
    if spec is _PROFILE and len(p) == before and not isinstance(data["latency_ms"].get("p50"), _NUM):
        p.append(f"{prefix}latency_ms.p50: missing or not a number")
    if spec is _FILE and len(p) == before:
        if not HEX64_RE.fullmatch(data["sha256"]):
            p.append(f"{prefix}sha256: not a sha256 hex digest")
        if data["size"] < 0:
            p.append(f"{prefix}size: {data['size']} is negative")
    return len(p) == before


def _type_names(types: Any) -> str:
    types = types if isinstance(types, tuple) else (types,)
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
             bool: "true/false", type(None): "null"}
    return " or ".join(names.get(t, t.__name__) for t in types)


__all__ = ["PackageError", "check_manifest", "portable_recipe", "NOT_FROM_PACKAGE", "member_problem", "unpack_limit", "max_total_bytes",
           "TARGET_ID_RE", "ARTIFACT_RE", "CODE_SUFFIXES", "SOURCE_FILES", "STATE_DICT_FILE", "SAMPLES_FILE"]
