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


def prepare(recipe: Recipe, recipe_file: Path | None, cwd: Path | None = None,
            overrides: Sequence[str] = ()) -> Prepared:
    """Validate semantics, expand the graph and open the cache (nothing is built).

    A recipe whose source is a ``.nav`` package is first resolved against the package (which
    is verified, unpacked and seeds the cache with the targets it carries).
    """
    from navbuild.cache.records import Records
    from navbuild.cache.store import Store, resolve_cache_dir
    from navbuild.planning.planner import expand
    from navbuild.recipe.validate import check_semantics, resolve_path

    cwd = Path(cwd or Path.cwd()).resolve()
    where = f"recipe {recipe_file or recipe.name}"
    if recipe.source.package:
        pkg = resolve_path(recipe.source.package, cwd)
        if not pkg.is_file():
            raise RecipeError(f"source.package: file '{recipe.source.package}' does not exist (looked at {pkg})",
                              where=where)
    else:
        check_semantics(recipe, cwd, where=where)
    store = Store(resolve_cache_dir(recipe.cache.dir, cwd))
    records = Records(store.root / "records")

    def build_dir_of(r: Recipe) -> Path:
        return resolve_path(r.output_dir or f"build/{r.name}", cwd).resolve()

    if recipe.source.package:
        from navbuild.package.continue_from import resolve

        recipe, _ = resolve(recipe, recipe_file, overrides, cwd, store, records, build_dir_of)
        check_semantics(recipe, cwd, where=f"{where} (continued from {recipe.source.torchscript})")
    graph = expand(recipe, cwd)
    return Prepared(recipe, recipe_file, graph, store, records, build_dir_of(recipe), cwd)


def plan(recipe: RecipeLike = "mlp", overrides: Sequence[str] = (), *, cwd: Path | None = None) -> Plan:
    """Every target's status (cached / stale: why / missing / unavailable: why); runs nothing."""
    rec, path = load_recipe(recipe, overrides, cwd)
    prep = prepare(rec, path, cwd, overrides)
    return plan_statuses(prep.graph, prep.store, prep.records.load(prep.build_dir))


def build(recipe: RecipeLike = "mlp", overrides: Sequence[str] = (), *, cwd: Path | None = None,
          reporter: Reporter | None = None) -> BuildResult:
    """Build every target of a recipe, reusing the cache; write ``<build_dir>/summary.json``."""
    rec, path = load_recipe(recipe, overrides, cwd)
    return build_prepared(prepare(rec, path, cwd, overrides), reporter or Reporter())


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
    variants = {v: prep.graph.variant_models.get(v) for v in prep.graph.variants()}
    outcomes = _compare_finalists(prep, variants, outcomes, reporter)
    outcomes = _deploy_to_triton(prep, variants, outcomes, reporter)
    prep.store.memo.save()
    summary = make_summary(prep.recipe, prep.recipe_file, prep.build_dir, prep.store.root, outcomes,
                           variants, time.perf_counter() - start, lineage=_lineage(prep))
    from navbuild.report.triton_summary import publish_triton

    publish_triton(summary.get("triton"), prep.build_dir)
    write_summary(prep.build_dir, summary)
    # Targets that got no key this time (skipped, unavailable) keep their previous record,
    # so the next plan can still say why they changed.
    targets = {tid: rec for tid, rec in (previous or {}).get("targets", {}).items() if tid in outcomes}
    targets.update({o.id: {"key": o.key, "payload": o.payload, "digest": o.digest, "status": o.status}
                    for o in outcomes.values() if o.key})
    prep.records.save(prep.build_dir, {"recipe": prep.recipe.name, "targets": targets})
    reporter.build_finished(summary)
    return BuildResult(summary=summary, outcomes=outcomes)


def export(model: Any, samples: Any, **kwargs: Any) -> Any:
    """Build a live model at training time and write a ``.nav`` package; see :mod:`navbuild.package.export`."""
    from navbuild.package.export import export as _export

    return _export(model, samples, **kwargs)


def load(path: str | Path) -> Any:
    """Open and verify a ``.nav`` package (digests, format version) for inspection."""
    from navbuild.package.view import Package

    return Package.open(path)


def _deploy_to_triton(prep: Prepared, variants: dict[str, str | None], outcomes: dict[str, Any],
                      reporter: Reporter) -> dict[str, Any]:
    """Third phase (``triton.enabled``): the best correct variants to Triton, their configuration searched."""
    if not prep.recipe.triton.enabled:
        return outcomes
    from navbuild.execute.executor import execute
    from navbuild.planning.triton import expand_triton, triton_variants

    ranking = _final_ranking(prep, variants, outcomes)
    chosen = triton_variants(prep.recipe, ranking)
    if not chosen:
        reporter.warning("triton: no correct variant with a native Triton backend to deploy")
        return outcomes
    expand_triton(prep.graph, prep.recipe, chosen, prep.cwd)
    return execute(prep.graph, prep.store, prep.build_dir, prep.cwd, reporter,
                   keep_going=prep.recipe.keep_going, done=outcomes)


def _final_ranking(prep: Prepared, variants: dict[str, str | None], outcomes: dict[str, Any]) -> list[str]:
    """Correct variants, best first: the finalists' winner, then the profile ranking."""
    from navbuild.report.summary import variant_table
    from navbuild.select import choose, choose_from_finalists

    sel = prep.recipe.select
    table = variant_table(outcomes, variants, _lineage(prep), _accepts_trace_risk(prep))
    ranking = [n for n, _ in choose(table, sel.objective, sel.batch_size, sel.percentile, sel.noise).ranking]
    finalists = outcomes.get("finalists")
    if finalists is not None and finalists.status in ("built", "cached"):
        best = choose_from_finalists(finalists.result, sel.objective, sel.noise).variant
        if best:
            ranking = [best] + [n for n in ranking if n != best]
    return ranking


def _compare_finalists(prep: Prepared, variants: dict[str, str | None], outcomes: dict[str, Any],
                       reporter: Reporter) -> dict[str, Any]:
    """Second phase: once profiles name the fastest correct variants, re-measure them interleaved."""
    from navbuild.execute.executor import execute
    from navbuild.planning.finalists import finalists_target
    from navbuild.report.summary import variant_table
    from navbuild.select import choose

    sel = prep.recipe.select
    table = variant_table(outcomes, variants, _lineage(prep), _accepts_trace_risk(prep))
    first = choose(table, sel.objective, sel.batch_size, sel.percentile, sel.noise)
    target = finalists_target(prep.graph, prep.recipe, [n for n, _ in first.ranking], first.batch_size)
    if target is None:
        return outcomes
    prep.graph.add(target)
    return execute(prep.graph, prep.store, prep.build_dir, prep.cwd, reporter,
                   keep_going=prep.recipe.keep_going, done=outcomes)


def _lineage(prep: Prepared) -> dict[str, dict]:
    """How each variant was derived (navbuild.evidence), for the evidence its row carries."""
    from navbuild.evidence import variant_lineage

    return variant_lineage(prep.graph)


def _accepts_trace_risk(prep: Prepared) -> bool:
    """Whether the recipe accepts variants built from a trace that evidence calls unreliable."""
    return bool(prep.recipe.correctness.accept_trace_risk)


__all__ = ["build", "plan", "export", "load", "load_recipe", "prepare", "BuildResult", "RecipeError"]
