"""Continue a build from a .nav package: verify it, seed the cache with its targets, resolve the recipe."""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

from navbuild.package.archive import PackageError, unpack
from navbuild.package.manifest import portable_recipe
from navbuild.recipe.paths import resolve_path
from navbuild.recipe.schema import Recipe
from navbuild.recipe.validate import check_semantics

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
            records: Any, build_dir_of: Any, where: str = "recipe") -> tuple[Any, dict]:
    """Verify and unpack the package, seed the cache, and return the recipe to build with it.

    The package decides the source, inputs, outputs and samples; the user's explicit keys
    (recipe file and overrides) decide everything else, on top of the package's own recipe
    less the keys it never decides (:data:`NOT_FROM_PACKAGE`: code to import, programs, folders).
    The resolved recipe is validated before the cache is seeded; if anything is refused, the
    unpacked folder and every entry this call seeded are removed again.
    """
    from omegaconf import OmegaConf


    path = resolve_path(recipe.source.package, cwd)
    folder, manifest, placed = unpack(path, store.root / "packages")
    seeded: list[str] = []
    try:
        base, dropped = portable_recipe(manifest["recipe"])
        mine = dataclasses.asdict(recipe)
        chosen = explicit_keys(recipe_file, overrides) - set(PACKAGE_OWNED)
        merged = {k: (mine[k] if k in chosen else v) for k, v in base.items() if k in mine}
        for k in (chosen - set(base)) & set(mine):
            merged[k] = mine[k]
        merged["name"] = recipe.name
        merged["source"] = {"torchscript": str(folder / manifest["source"]["file"])}
        samples = manifest["samples"]
        merged["samples"] = {**base.get("samples", {}), "file": str(folder / samples) if samples else None}
        resolved = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Recipe), merged))
        check_semantics(resolved, cwd, where=f"{where} (continued from {path.name})")
        seed_cache(folder, manifest, store, seeded)
        build_dir = build_dir_of(resolved)
        if records.load(build_dir) is None:
            # Record what the package built, so `plan` can say why a target rebuilds here
            # (another machine's hardware, a changed knob) instead of just "missing".
            records.save(build_dir, {"recipe": resolved.name, "from_package": str(path),
                                     "targets": {tid: {k: t[k] for k in ("key", "payload", "digest", "status")}
                                                 for tid, t in manifest["targets"].items()}})
    except BaseException:
        for key in seeded:
            store.remove(key)
        if placed:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return resolved, {"package": str(path), "seeded": seeded, "folder": str(folder), "not_taken": dropped}


def seed_cache(folder: Path, manifest: dict, store: Any, seeded: list[str] | None = None) -> list[str]:
    """Publish every included target of the (verified) package into the store, unless present.

    Appends the key of each entry it publishes to ``seeded`` as it goes, so a caller can undo them.
    Every path comes from a checked manifest (:func:`navbuild.package.manifest.check_manifest`)
    and is resolved inside its folder once more before a byte is copied.
    """
    seeded = [] if seeded is None else seeded
    root = folder.resolve()
    for tid, t in manifest["targets"].items():
        if not t.get("included") or store.peek(t["key"]) is not None:
            continue
        with store.lock(t["key"]):
            if store.peek(t["key"]) is not None:
                continue
            staging = store.staging(t["key"])
            try:
                out = (staging / "out").resolve()
                for rel in t["files"]:
                    src, dest = (root / "targets" / tid / rel).resolve(), (out / rel).resolve()
                    if not src.is_relative_to(root) or not dest.is_relative_to(out):
                        raise PackageError(f"package target {tid}: file '{rel}' points outside its folder; "
                                           "the package was refused")
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, dest)
                entry = store.publish(t["key"], staging, payload=t["payload"], result=t["result"],
                                      info={"target_id": tid, "seconds": t.get("seconds", 0.0),
                                            "created": time.time(), "from_package": True})
            except BaseException:
                store.discard(staging)
                raise
            seeded.append(t["key"])
            if entry.digest != t["digest"]:
                store.remove(t["key"])
                raise PackageError(f"package target {tid}: its files do not match the recorded output "
                                   "digest; the package was refused")
    return seeded
