"""The Python API: ``build`` and ``plan`` a recipe, ``export`` a live model, ``load`` a package.

The CLI is a thin layer over these; a build runs through navbuild.session."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from navbuild.errors import InputError, RecipeError
from navbuild.export_package import export as export_package
from navbuild.package.view import Package
from navbuild.planning.status import Plan, plan_statuses
from navbuild.report.events import Reporter
from navbuild.session import (BuildResult, Prepared, RecipeLike, build_prepared, check, check_arguments, load_recipe,
                              prepare)


def plan(recipe: RecipeLike = "mlp", overrides: Sequence[str] = (), *, cwd: Path | None = None,
         remeasure: bool = False) -> Plan:
    """Every target's status (cached / stale: why / missing / unavailable: why); runs nothing."""
    check_arguments(recipe, overrides, cwd, where="navbuild.plan")
    overrides = _remeasured(overrides, remeasure)
    rec, path = load_recipe(recipe, overrides, cwd)
    prep = prepare(rec, path, cwd, overrides)
    return plan_statuses(prep.graph, prep.store, prep.records.load(prep.build_dir))


def build(recipe: RecipeLike = "mlp", overrides: Sequence[str] = (), *, cwd: Path | None = None,
          reporter: Reporter | None = None, remeasure: bool = False) -> BuildResult:
    """Build every target of a recipe, reusing the cache; write ``<build_dir>/summary.json``.

    ``remeasure`` (the recipe key ``profile.remeasure``) re-runs every profile, the finalists
    and the Triton measurements even when cached; conversions and checks stay cached.
    """
    check_arguments(recipe, overrides, cwd, where="navbuild.build")
    overrides = _remeasured(overrides, remeasure)
    rec, path = load_recipe(recipe, overrides, cwd)
    return build_prepared(prepare(rec, path, cwd, overrides), reporter or Reporter())


def _remeasured(overrides: Sequence[str], remeasure: bool) -> list[str]:
    return [*overrides, "profile.remeasure=true"] if remeasure else list(overrides)


def export(model: Any, samples: Any, **kwargs: Any) -> Any:
    """Build a live model at training time and write a ``.nav`` package; see :mod:`navbuild.export_package`."""
    return export_package(model, samples, **kwargs)


def load(path: str | Path) -> Any:
    """Open and verify a ``.nav`` package (digests, format version) for inspection."""
    if not isinstance(path, (str, Path)):
        raise InputError(f"navbuild.load: path: expected a .nav file path, got {type(path).__name__} {path!r:.60}")

    return Package.open(path)


__all__ = ["build", "plan", "export", "load", "load_recipe", "check", "prepare", "build_prepared", "Prepared",
           "BuildResult", "RecipeError"]
