"""The Python API: ``build`` and ``plan`` a recipe. The CLI is a thin layer over these."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from navbuild.errors import RecipeError
from navbuild.planning.graph import Graph
from navbuild.planning.status import Plan, plan_statuses
from navbuild.recipe.schema import Recipe
from navbuild.report.events import Reporter

RecipeLike = str | Path | Recipe | Mapping[str, Any]


@dataclass
class Prepared:
    """A validated recipe with its graph and where its cache and outputs live."""

    recipe: Recipe
    recipe_file: Path | None
    graph: Graph
    store: Any
    records: Any
    build_dir: Path
    cwd: Path


@dataclass
class BuildResult:
    """What ``build`` returns: the summary (as in summary.json) and each target's outcome."""

    summary: dict
    outcomes: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return int(self.summary["exit_code"])

    @property
    def best(self) -> str | None:
        return self.summary["best"]["variant"]


def load_recipe(recipe: RecipeLike, overrides: Sequence[str] = (), cwd: Path | None = None) -> tuple[Recipe, Path | None]:
    """Compose a recipe from a name/path (with Hydra overrides), a dict, or a Recipe object."""
    from omegaconf import OmegaConf

    from navbuild.recipe.load import compose, to_recipe
    from navbuild.recipe.validate import check_structure

    cwd = Path(cwd or Path.cwd()).resolve()
    if isinstance(recipe, (str, Path)):
        composed = compose([f"recipe={recipe}", *overrides], cwd)
        return to_recipe(composed.config, composed.name), composed.path
    if isinstance(recipe, Recipe):
        data = OmegaConf.to_container(OmegaConf.structured(recipe))
    else:
        data = dict(recipe)
    check_structure(data, where="recipe (Python)")
    cfg = OmegaConf.merge(OmegaConf.structured(Recipe), data)
    if overrides:
        from navbuild.recipe.load import check_override_keys

        check_override_keys(overrides)
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    return to_recipe(cfg, data.get("name") or "recipe"), None


def prepare(recipe: Recipe, recipe_file: Path | None, cwd: Path | None = None) -> Prepared:
    """Validate semantics, expand the graph and open the cache (nothing is built)."""
    from navbuild.cache.records import Records
    from navbuild.cache.store import Store, resolve_cache_dir
    from navbuild.planning.planner import expand
    from navbuild.recipe.validate import check_semantics, resolve_path

    cwd = Path(cwd or Path.cwd()).resolve()
    check_semantics(recipe, cwd, where=f"recipe {recipe_file or recipe.name}")
    graph = expand(recipe, cwd)
    store = Store(resolve_cache_dir(recipe.cache.dir, cwd))
    records = Records(store.root / "records")
    build_dir = resolve_path(recipe.output_dir or f"build/{recipe.name}", cwd).resolve()
    return Prepared(recipe, recipe_file, graph, store, records, build_dir, cwd)


def plan(recipe: RecipeLike = "mlp", overrides: Sequence[str] = (), *, cwd: Path | None = None) -> Plan:
    """Every target's status (cached / stale: why / missing / unavailable: why); runs nothing."""
    rec, path = load_recipe(recipe, overrides, cwd)
    prep = prepare(rec, path, cwd)
    return plan_statuses(prep.graph, prep.store, prep.records.load(prep.build_dir))


def build(recipe: RecipeLike = "mlp", overrides: Sequence[str] = (), *, cwd: Path | None = None,
          reporter: Reporter | None = None) -> BuildResult:
    """Build every target of a recipe, reusing the cache; write ``<build_dir>/summary.json``."""
    rec, path = load_recipe(recipe, overrides, cwd)
    return build_prepared(prepare(rec, path, cwd), reporter or Reporter())


def build_prepared(prep: Prepared, reporter: Reporter) -> BuildResult:
    from navbuild.execute.executor import execute
    from navbuild.report.summary import make_summary, write_summary

    start = time.perf_counter()
    previous = prep.records.load(prep.build_dir)
    for w in prep.records.warnings:
        reporter.warning(w)
    reporter.planned(plan_statuses(prep.graph, prep.store, previous))
    outcomes = execute(prep.graph, prep.store, prep.build_dir, prep.cwd, reporter,
                       keep_going=prep.recipe.keep_going)
    prep.store.memo.save()
    summary = make_summary(prep.recipe, prep.recipe_file, prep.build_dir, prep.store.root, outcomes,
                           prep.graph.variants(), time.perf_counter() - start)
    write_summary(prep.build_dir, summary)
    # Targets that got no key this time (skipped, unavailable) keep their previous record,
    # so the next plan can still say why they changed.
    targets = {tid: rec for tid, rec in (previous or {}).get("targets", {}).items() if tid in outcomes}
    targets.update({o.id: {"key": o.key, "payload": o.payload, "digest": o.digest, "status": o.status}
                    for o in outcomes.values() if o.key})
    prep.records.save(prep.build_dir, {"recipe": prep.recipe.name, "targets": targets})
    reporter.build_finished(summary)
    return BuildResult(summary=summary, outcomes=outcomes)


__all__ = ["build", "plan", "load_recipe", "prepare", "BuildResult", "RecipeError"]
