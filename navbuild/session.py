"""A build session: a recipe composed, checked, planned (its graph expanded, its cache opened) and built.

Below the public API (navbuild.api) and the training-time export, which both run builds through it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from navbuild.cache.fs import NOT_WRITABLE, writing
from navbuild.cache.records import Records
from navbuild.cache.open import open_store
from navbuild.device import expose
from navbuild.errors import RecipeError
from navbuild.evidence import variant_lineage
from navbuild.execute.executor import execute
from navbuild.execute.source_deps import refresh_source_record
from navbuild.package.continue_from import resolve
from navbuild.planning.accuracy_search import searches
from navbuild.planning.graph import Graph
from navbuild.planning.phases import declare_later_phases, ranking_of
from navbuild.planning.planner import SOURCE_ID, expand, fit_to_source, source_discovery_params
from navbuild.planning.ranking import variant_models
from navbuild.planning.source_record import SourceRecord, attach, changes, read_record, record_path
from navbuild.planning.status import plan_statuses
from navbuild.recipe.load import check_override_keys, compose, to_recipe
from navbuild.recipe.paths import resolve_path
from navbuild.recipe.schema import Recipe
from navbuild.recipe.validate import check_semantics, check_structure
from navbuild.report.events import Reporter
from navbuild.report.summary import make_summary, write_summary
from navbuild.report.tradeoff import write_tradeoff
from navbuild.report.triton_summary import publish_triton
from navbuild.steps.base import installed

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
    #: a torch source's record of discovered dependencies (None for file sources)
    source_record: Any = None
    #: the source leaf as the recipe declares it, before its discovered dependencies join it
    declared_source: Any = None


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

    check_arguments(recipe, overrides, cwd)
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
        check_override_keys(overrides)
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    return to_recipe(cfg, data.get("name") or "recipe"), None


def check_arguments(recipe: Any, overrides: Any, cwd: Any, where: str = "navbuild API") -> None:
    """The types of an API call's recipe, overrides and cwd: one RecipeError naming each wrong one."""
    def show(value: Any) -> str:
        text = repr(value)
        return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"

    p = []
    if isinstance(recipe, str) and not recipe.strip():
        p.append("recipe: empty; give a recipe name, a .yaml file, a Recipe or a mapping")
    elif not isinstance(recipe, (str, Path, Recipe, Mapping)):
        p.append(f"recipe: expected a recipe name, a .yaml file, a Recipe or a mapping of recipe keys, "
                 f"got {show(recipe)}")
    if isinstance(overrides, (str, bytes)) or not isinstance(overrides, Sequence) or not all(
            isinstance(o, str) for o in overrides):
        p.append(f"overrides: expected a list of 'key=value' strings, got {show(overrides)}")
    if cwd is not None and not isinstance(cwd, (str, Path)):
        p.append(f"cwd: expected a folder path, got {show(cwd)}")
    if p:
        raise RecipeError(p, where=where)


def check(recipe: Recipe, recipe_file: Path | None, cwd: Path | None = None) -> None:
    """Check a composed recipe's semantics, every problem at once; nothing is planned or opened."""
    cwd = Path(cwd or Path.cwd()).resolve()
    where = f"recipe {recipe_file or recipe.name}"
    if recipe.source.package:
        pkg = resolve_path(recipe.source.package, cwd)
        if not pkg.is_file():
            raise RecipeError(f"source.package: file '{recipe.source.package}' does not exist (looked at {pkg})",
                              where=where)
    else:
        check_semantics(recipe, cwd, where=where)


def prepare(recipe: Recipe, recipe_file: Path | None, cwd: Path | None = None,
            overrides: Sequence[str] = (), *, checked: bool = False) -> Prepared:
    """Validate semantics (unless ``checked`` says :func:`check` passed), expand the graph and
    open the cache (nothing is built).

    A recipe whose source is a ``.nav`` package is first resolved against the package (which
    is verified, unpacked and seeds the cache with the targets it carries).
    """
    cwd = Path(cwd or Path.cwd()).resolve()
    where = f"recipe {recipe_file or recipe.name}"
    if not checked:
        check(recipe, recipe_file, cwd)
    store = open_store(recipe.cache.dir, cwd)
    records = Records(store.root / "records")

    def build_dir_of(r: Recipe) -> Path:
        return resolve_path(r.output_dir or f"build/{r.name}", cwd).resolve()

    if recipe.source.package:

        recipe, _ = resolve(recipe, recipe_file, overrides, cwd, store, records, build_dir_of, where=where)
    graph = expand(recipe, cwd)
    # the selection and the finalists use the sizes the checks and profiles ran at
    recipe = fit_to_source(recipe, cwd)
    declare_later_phases(graph, recipe, cwd)
    build_dir = build_dir_of(recipe)
    _check_output_dir(build_dir, recipe, where)
    prep = Prepared(recipe, recipe_file, graph, store, records, build_dir, cwd)
    if recipe.source.torch:
        _attach_source_record(prep)
    return prep


def _attach_source_record(prep: Prepared) -> None:
    """Key the torch source on what it was last found to depend on, and say what changed since."""

    declared = prep.graph.leaves[SOURCE_ID]
    path = record_path(prep.store.root, declared, prep.recipe.source.kwargs)
    prep.store.pull_shared(path)  # another machine may have discovered it already
    data = read_record(path)
    prep.declared_source = declared
    prep.source_record = SourceRecord(path, data, changes(data, prep.store.memo, prep.cwd))
    attach(prep.graph, SOURCE_ID, prep.source_record)


def _check_output_dir(build_dir: Path, recipe: Recipe, where: str) -> None:
    """The build folder (or a folder above it) must not be a file: say so before anything runs."""
    for p in (build_dir, *build_dir.parents):
        if p.is_dir():
            return
        if p.exists():
            setting = f"'{recipe.output_dir}'" if recipe.output_dir else f"the build folder build/{recipe.name}"
            raise RecipeError(f"output_dir: {setting} cannot be created: {p} is a file, not a folder; "
                              f"remove or rename that file, or set output_dir to another folder", where=where)


def build_prepared(prep: Prepared, reporter: Reporter) -> BuildResult:
    """Build a prepared recipe (see :func:`prepare`): every target, the later phases, summary.json."""

    start = time.perf_counter()
    # cuda:N: the steps, workers and servers this build starts see only GPU N, as their "cuda"
    expose(prep.graph.device)
    previous = prep.records.load(prep.build_dir)
    for w in prep.records.warnings:
        reporter.warning(w)
    if prep.source_record is not None:

        prep.source_record = refresh_source_record(
            prep.graph, prep.declared_source, prep.source_record, source_discovery_params(prep.recipe),
            prep.store, prep.build_dir, prep.cwd, reporter)
    # The finalists and the Triton targets join once the profiles have ranked the variants:
    # until then the count of targets may still grow, unless the plan could already expand
    # every later phase from what the cache holds.
    planned = plan_statuses(prep.graph, prep.store, previous)
    reporter.targets_total(len(planned.targets), final=not prep.graph.unexpanded() or not planned.pending)
    reporter.planned(planned)
    outcomes = execute(prep.graph, prep.store, prep.build_dir, prep.cwd, reporter,
                       keep_going=prep.recipe.keep_going, executor=prep.recipe.executor)
    variants = variant_models(prep.graph)
    reporter.targets_total(len(prep.graph.targets), final=True)
    if (why := prep.store.save_memo()) is not None:
        reporter.warning(f"could not record the digest memo ({why}); the next build re-hashes its files")
    cache = getattr(prep.store, "url", prep.store.root)  # an object store is named by its URL
    summary = make_summary(prep.recipe, prep.recipe_file, prep.build_dir, cache, outcomes,
                           variants, time.perf_counter() - start, lineage=variant_lineage(prep.graph),
                           ranking=ranking_of(prep.graph), searches=searches(prep.graph))
    summary["notes"] = list(prep.graph.notes)  # what the plan changed to fit the source


    with writing(prep.build_dir, "summary.json and the Triton deliverable"):
        publish_triton(summary.get("triton"), prep.build_dir)
        write_summary(prep.build_dir, summary)
        if installed("matplotlib"):
            write_tradeoff(prep.build_dir, summary, prep.recipe.select.percentile)
    # Targets that got no key this time (skipped, unavailable) keep their previous record,
    # so the next plan can still say why they changed.
    targets = {tid: rec for tid, rec in (previous or {}).get("targets", {}).items() if tid in outcomes}
    targets.update({o.id: {"key": o.key, "payload": o.payload, "digest": o.digest, "status": o.status}
                    for o in outcomes.values() if o.key})
    _save_record(prep, {"recipe": prep.recipe.name, "targets": targets}, reporter)
    reporter.build_finished(summary)
    return BuildResult(summary=summary, outcomes=outcomes)


def _save_record(prep: Prepared, record: dict, reporter: Reporter) -> None:
    """Record the build; a cache that cannot be written (read-only) served what it had: say so."""

    path = prep.records.path_for(prep.build_dir)
    try:
        with writing(path, "the build record"):
            prep.records.save(prep.build_dir, record)
    except OSError as e:
        if e.errno not in NOT_WRITABLE:
            raise
        reporter.warning(f"could not record this build in {path} ({e.strerror}): what the cache held was "
                         "served, but `navbuild plan` compares with the last build recorded there and "
                         "`navbuild gc` keeps only the entries that recorded builds refer to")


__all__ = ["RecipeLike", "Prepared", "BuildResult", "load_recipe", "check_arguments", "check", "prepare", "build_prepared"]
