"""Continue a build from a .nav package: verify it, seed the cache with its targets, resolve the recipe."""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

from navbuild.package.archive import PackageError, extract

#: what a package always decides: the model, its interface and its data.
PACKAGE_OWNED = ("source", "inputs", "outputs", "samples")


def explicit_keys(recipe_file: Path | None, overrides: Sequence[str]) -> set[str]:
    """Top-level recipe keys the user set: in the recipe file, or on the command line."""
    keys: set[str] = set()
    if recipe_file is not None:
        from omegaconf import OmegaConf

        raw = OmegaConf.to_container(OmegaConf.load(recipe_file), resolve=False)
        keys.update(k for k in raw if k != "defaults")
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        keys.add(key.split(".", 1)[0])
    return keys


def resolve(recipe: Any, recipe_file: Path | None, overrides: Sequence[str], cwd: Path, store: Any,
            records: Any, build_dir_of: Any) -> tuple[Any, dict]:
    """Verify and unpack the package, seed the cache, and return the recipe to build with it.

    The package decides the source, inputs, outputs and samples; the user's explicit keys
    (recipe file and overrides) decide everything else, on top of the package's own recipe.
    """
    from omegaconf import OmegaConf

    from navbuild.recipe.schema import Recipe
    from navbuild.recipe.validate import resolve_path

    path = resolve_path(recipe.source.package, cwd)
    folder, manifest = extract(path, store.root / "packages")
    base = manifest["recipe"]
    mine = dataclasses.asdict(recipe)
    chosen = explicit_keys(recipe_file, overrides) - set(PACKAGE_OWNED)
    merged = {k: (mine[k] if k in chosen else v) for k, v in base.items() if k in mine}
    merged["name"] = recipe.name
    merged["source"] = {**base["source"], "torchscript": str(folder / manifest["source"]["file"]), "package": None}
    samples = manifest.get("samples")
    merged["samples"] = {**base["samples"], "file": str(folder / samples) if samples else None}
    resolved = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Recipe), merged))
    seeded = seed_cache(folder, manifest, store)
    build_dir = build_dir_of(resolved)
    if records.load(build_dir) is None:
        # Record what the package built, so `plan` can say why a target rebuilds here
        # (another machine's hardware, a changed knob) instead of just "missing".
        records.save(build_dir, {"recipe": resolved.name, "from_package": str(path),
                                 "targets": {tid: {k: t[k] for k in ("key", "payload", "digest", "status")}
                                             for tid, t in manifest["targets"].items()}})
    return resolved, {"package": str(path), "seeded": seeded, "folder": str(folder)}


def seed_cache(folder: Path, manifest: dict, store: Any) -> list[str]:
    """Publish every included target of the (verified) package into the store, unless present."""
    seeded = []
    for tid, t in manifest["targets"].items():
        if not t.get("included") or store.peek(t["key"]) is not None:
            continue
        with store.lock(t["key"]):
            if store.peek(t["key"]) is not None:
                continue
            staging = store.staging(t["key"])
            try:
                for rel in t["files"]:
                    dest = staging / "out" / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(folder / "targets" / tid / rel, dest)
                entry = store.publish(t["key"], staging, payload=t["payload"], result=t["result"],
                                      info={"target_id": tid, "seconds": t.get("seconds", 0.0),
                                            "created": time.time(), "from_package": True})
            except BaseException:
                store.discard(staging)
                raise
            if entry.digest != t["digest"]:
                store.remove(t["key"])
                raise PackageError(f"package target {tid}: its files do not match the recorded output "
                                   "digest; the package was refused")
            seeded.append(tid)
    return seeded
