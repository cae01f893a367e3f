"""The command line: ``navbuild [build|plan] recipe=NAME [overrides] [-m]`` and ``navbuild gc``.

A thin shell over :mod:`navbuild.api`: it reads the command, runs the API and prints. A sweep
(``-m``) is composed and checked point by point before any runs; Hydra's sweeper and launcher
run the points, and the sweep's exit code is the worst of the codes the launcher returns.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from navbuild.api import Prepared, build_prepared, check, load_recipe, prepare
from navbuild.cache.fs import NO_SPACE, disk_full
from navbuild.errors import NavbuildError, RecipeError
from navbuild.gc_command import gc_main
from navbuild.package.view import Package
from navbuild.planning.status import plan_statuses
from navbuild.recipe.load import (PRIMARY_CONFIG, check_override_keys, composition_message, normalize_overrides,
                                  package_data_dir, recipe_name, register, split_recipe_override)
from navbuild.recipe.paths import resolve_path
from navbuild.recipe.schema import Recipe
from navbuild.report.console import ConsoleReporter

USAGE = """\
usage: navbuild [build] [recipe=NAME|FILE.yaml] [key=value ...] [-m]   build a recipe (default: mlp)
       navbuild plan [recipe=NAME] [key=value ...] [-m]               show every target's status, run nothing
       navbuild gc [--max-size 2G] [--max-age 30d] [--verify] [--dry-run]  prune (and verify) the cache
       navbuild show model.nav                                       inspect a package (verified)
       navbuild [recipe=NAME] source.package=model.nav               continue from a package
       navbuild [recipe=NAME] --remeasure                            measure again (profiles, finalists, Triton), convert nothing

Overrides use Hydra syntax (profile.batch_sizes=[1,4], onnx.opset=18); -m sweeps
comma-separated values on one shared cache. Set NAVBUILD_TRACEBACK=1 (or pass
--traceback) to see tracebacks of recipe errors.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns (and exits with) the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    show_tb = os.environ.get("NAVBUILD_TRACEBACK", "") not in ("", "0")
    if "--traceback" in args:
        args.remove("--traceback")
        show_tb = True
    if argv is None:
        # `kill` (SIGTERM) stops a build as Ctrl-C does: the running step is stopped, and with
        # it the Triton server or Model Analyzer it started, instead of leaving them orphaned
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = _dispatch(args)
    except NavbuildError as err:
        code = _report_error(err, show_tb)
    except OSError as err:
        if err.errno not in NO_SPACE:
            raise
        # a write no narrower handler named: still one line, never a traceback
        code = _report_error(disk_full(Path(err.filename or Path.cwd()), "a file"), show_tb)
    except KeyboardInterrupt:
        print("navbuild: interrupted", file=sys.stderr)
        code = 130
    if argv is None:
        sys.exit(code)
    return code


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _dispatch(args: list[str]) -> int:
    if args and args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if args and args[0] == "show":
        return _show(args[1:])
    if args and args[0] == "gc":
        return gc_main(args[1:])
    multirun = False
    for flag in ("-m", "--multirun"):
        while flag in args:
            args.remove(flag)
            multirun = True
    if "--remeasure" in args:  # fresh profiles, finalists and Triton measurements; conversions stay cached
        args = [a for a in args if a != "--remeasure"] + ["profile.remeasure=true"]
    mode = "build"
    if args and args[0] in ("build", "plan"):
        mode = args.pop(0)
    unknown = [a for a in args if a.startswith("-")]
    if unknown:
        raise RecipeError(f"unknown option {unknown[0]}; see navbuild --help", where="command line")
    if not any(a.startswith("recipe=") for a in args):
        # `navbuild source.package=model.nav` continues the package with its own recipe
        default = "package" if any(a.startswith("source.package=") for a in args) else "mlp"
        args.insert(0, f"recipe={default}")
    cwd = Path.cwd()
    if multirun:
        return _multirun(mode, args, cwd)
    ref, rest = _recipe_and_rest(args)
    recipe, path = load_recipe(ref, rest, cwd)
    return _plan_or_build(mode, prepare(recipe, path, cwd, rest))


def _recipe_and_rest(overrides: Sequence[str]) -> tuple[str, list[str]]:
    """The ``recipe=`` value of one run's overrides, and the other overrides."""
    ref = next(a.split("=", 1)[1] for a in overrides if a.startswith("recipe="))
    return ref, [a for a in overrides if not a.startswith("recipe=")]


def _plan_or_build(mode: str, prep: Prepared) -> int:
    if mode == "plan":
        return _print_plan(prep)
    reporter = ConsoleReporter()
    try:
        result = build_prepared(prep, reporter)
    finally:
        reporter.close()  # a full disk or Ctrl-C must not leave the spinner drawing over the message
    return result.exit_code


def _show(args: list[str]) -> int:
    if len(args) != 1:
        raise RecipeError("usage: navbuild show PACKAGE.nav", where="command line")
    print(Package.open(args[0]).describe())
    return 0


def _print_plan(prep: Prepared) -> int:
    from rich.console import Console
    from rich.table import Table

    plan = plan_statuses(prep.graph, prep.store, prep.records.load(prep.build_dir))
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"plan of recipe {prep.recipe.name} → {prep.build_dir} (cache {prep.store.root})")
    table = Table()
    table.add_column("target", no_wrap=True)
    table.add_column("status", overflow="fold")
    colours = {"cached": "cyan", "stale": "yellow", "missing": "yellow", "unavailable": "magenta", "pending": "blue"}
    for t in [*plan.targets, *plan.pending]:
        table.add_row(t.id, f"[{colours.get(t.status, 'white')}]{t.label}[/]")
    console.print(table)
    for note in plan.notes:
        console.print(f"note: {note}")
    for warning in plan.warnings:
        console.print(f"warning: {warning}")
    return 0


@dataclass(frozen=True)
class _Point:
    """One point of a sweep, composed and checked: what its job needs to plan or build it."""

    recipe: Recipe
    recipe_file: Path | None
    overrides: tuple[str, ...]


def _multirun(mode: str, overrides: list[str], cwd: Path) -> int:
    """Run a Hydra multirun sweep; every sweep point builds on the same cache.

    Every point is composed and checked once, before any runs, so a bad value in the sweep is
    reported at once (exit 2) rather than after the first points have built. Hydra's sweeper
    and launcher then run the points (in this process or others: the job looks its point up
    by its overrides, and returns its exit code to the launcher).
    """
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    refs, _ = split_recipe_override(overrides)
    # a point names its recipe by Hydra option (the file's stem); run it from the file it came
    # from, so that `-m recipe=my.yaml` finds my.yaml as `recipe=my.yaml` does without -m
    files = {name: str(path) for name, path in register(refs, cwd).items()}
    if len(refs) > 1 and "mlp" not in files:
        # Hydra loads the primary config with its default recipe (mlp) before a sweep over
        # several recipes replaces it: that default must resolve, though no point uses it
        from hydra.core.config_store import ConfigStore

        ConfigStore.instance().store(group="recipe", name="mlp", node={}, package="_global_")
    normalized = normalize_overrides(overrides)
    parsed = check_override_keys(normalized)
    # the jobs Hydra's sweeper makes: every combination of the task's (not Hydra's) overrides
    jobs = _sweep_points([o.input_line for o in parsed if not o.is_hydra_override()])
    points = {tuple(job): _sweep_point(job, num, files, cwd) for num, job in enumerate(jobs)}

    def task(cfg: Any) -> int:
        point = points[tuple(HydraConfig.get().overrides.task)]
        try:
            prep = prepare(point.recipe, point.recipe_file, cwd, point.overrides, checked=True)
            return _plan_or_build(mode, prep)
        except NavbuildError as err:
            return _report_error(err, False)

    with initialize_config_dir(config_dir=str(package_data_dir("conf")), job_name="navbuild",
                               version_base="1.3"):
        try:
            returned = GlobalHydra.instance().hydra.multirun(PRIMARY_CONFIG, task, normalized)
        except (HydraException, OmegaConfBaseException) as exc:  # a bad hydra/... override: the user's to fix
            raise RecipeError(composition_message(exc), where="command line") from None
    return _sweep_exit_code(returned, points, mode, cwd)


def _sweep_point(job: list[str], num: int, files: Mapping[str, str], cwd: Path) -> _Point:
    """Compose and check one job of a sweep; its results go to ``build/<recipe>/<its overrides>``."""
    ref, rest = _recipe_and_rest(job)
    recipe, path = load_recipe(files.get(ref, ref), rest, cwd)
    if not recipe.output_dir:
        # --remeasure is how this run measures, not which point it is: same folder, same records
        label = _safe_dirname("+".join(o for o in rest if not o.startswith("profile.remeasure=")))
        recipe.output_dir = f"build/{recipe_name(ref)}/{label or f'job{num}'}"
    check(recipe, path, cwd)
    return _Point(recipe, path, tuple(rest))


def _sweep_exit_code(returned: Any, points: Mapping[tuple[str, ...], _Point], mode: str, cwd: Path) -> int:
    """The worst exit code of the sweep's jobs, as the launcher returned them.

    Hydra's sweeper returns one JobReturn per job, whichever launcher ran it (here or in other
    processes); a sweeper that returns none leaves each point's summary.json to say.
    """
    codes = [job.return_value for batch in returned for job in batch] if isinstance(returned, list) else []
    if not codes and mode == "build":
        codes = [_summary_exit_code(p, cwd) for p in points.values()]
    return max(codes, default=0)


def _summary_exit_code(point: _Point, cwd: Path) -> int:
    """A point's exit code as its summary.json records it (1 if it wrote none)."""
    summary = resolve_path(point.recipe.output_dir, cwd) / "summary.json"
    try:
        return int(json.loads(summary.read_text())["exit_code"])
    except (OSError, ValueError, KeyError, TypeError):
        return 1


def _sweep_points(overrides: list[str]) -> list[list[str]]:
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def _safe_dirname(text: str) -> str:
    """A sweep point's folder name from its overrides: ``profile.batch_sizes=[1,2]`` -> ``profile.batch_sizes=1,2``."""
    text = text.replace("[", "").replace("]", "").replace(" ", "")
    return re.sub(r"[^A-Za-z0-9_.=,+-]+", "_", text).strip("_")[:120]


def _report_error(err: NavbuildError, show_tb: bool) -> int:
    if show_tb:
        traceback.print_exception(err)
    print(f"navbuild: error: {err}", file=sys.stderr)
    return err.exit_code


if __name__ == "__main__":
    main()
