"""Write a .nav package from a finished build: manifest, serialized source, samples, artifacts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from navbuild.cache.store import Store
from navbuild.hardware import fingerprint
from navbuild.package.archive import FORMAT_NAME, FORMAT_VERSION, write_archive
from navbuild.package.manifest import TARGET_ID_RE, member_problem
from navbuild.version import __version__

#: target kinds whose artifacts are heavy (models); ``include_artifacts=False`` leaves them out.
HEAVY_KINDS = ("convert",)


def write_package(path: Path, *, result: Any, recipe: dict, serialized: Path, serialized_kind: str,
                  state_dict: Path, samples_file: Path, cache_root: Path, include_artifacts: bool,
                  include_samples: bool) -> int:
    """Write the package; returns its size in bytes."""
    store = Store(cache_root)
    source_name = f"source/model{serialized.suffix}"
    files: dict[str, Path] = {source_name: serialized, "source/state_dict.pt": state_dict}
    if include_samples:
        files["samples/samples.npz"] = samples_file
    targets: dict[str, dict] = {}
    for outcome in result.outcomes.values():
        if outcome.status not in ("built", "cached") or outcome.key is None or not TARGET_ID_RE.fullmatch(outcome.id):
            continue
        included = not ((outcome.kind in HEAVY_KINDS and not include_artifacts)
                        or (outcome.kind == "reference" and not include_samples))
        entry = store.lookup(outcome.key)
        if entry is None or not _portable(outcome.id, entry.meta["files"]):
            included = False
        rel_files = {}
        if included:
            for rel, facts in sorted(entry.meta["files"].items()):
                files[f"targets/{outcome.id}/{rel}"] = entry.out / rel
                rel_files[rel] = facts
        targets[outcome.id] = {"key": outcome.key, "payload": outcome.payload, "digest": outcome.digest,
                               "status": outcome.status, "kind": outcome.kind, "variant": outcome.variant,
                               "result": outcome.result, "included": included, "files": rel_files,
                               "seconds": outcome.seconds}
    resolved = _portable_recipe(recipe, source_name, include_samples)
    summary = result.summary
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "navbuild_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source_framework": "torch",
        "source": {"file": source_name, "kind": serialized_kind, "state_dict": "source/state_dict.pt"},
        "samples": "samples/samples.npz" if include_samples else None,
        "inputs": recipe["inputs"],
        "outputs": recipe["outputs"],
        "recipe": resolved,
        "hardware": fingerprint(),
        "targets": targets,
        "variants": summary["variants"],
        "best": summary["best"],
    }
    return write_archive(path, manifest, files)


def _portable(target_id: str, files: dict) -> bool:
    """Whether a target's artifacts may travel: names a reader accepts, and no code (a Triton
    python model's ``model.py`` is left out, so that target rebuilds where it is continued)."""
    return TARGET_ID_RE.fullmatch(target_id) is not None and all(
        member_problem(f"targets/{target_id}/{rel}") is None for rel in files)


def _portable_recipe(recipe: dict, source_name: str, include_samples: bool) -> dict:
    """The resolved recipe with this machine's paths replaced by the package's own names."""
    out = {**recipe, "source": {**recipe["source"], "torchscript": source_name, "watch": [], "packages": []},
           "samples": {**recipe["samples"], "file": "samples/samples.npz" if include_samples else None},
           "output_dir": None, "cache": {"dir": None}}
    return out
