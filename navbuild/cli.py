"""The command line: ``navbuild [build|plan] recipe=NAME [overrides] [-m]`` and ``navbuild gc``.

A thin shell over :mod:`navbuild.api`: it reads the command, runs the API and prints. A sweep
(``-m``) is composed and checked point by point before any runs; Hydra's sweeper and launcher
run the points, each point's result (exit code, keys built and served) comes back as its job's
return value, and the sweep's summary and exit code (the worst point's) are made from them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from navbuild.api import BuildResult, Prepared, build_prepared, check, load_recipe, prepare
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
from navbuild.report.sweep import point_result, render_sweep, sweep_dir, sweep_summary, write_sweep_summary

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
    return _print_plan(prep) if mode == "plan" else _build(prep).exit_code


def _build(prep: Prepared) -> BuildResult:
    reporter = ConsoleReporter()
    try:
        return build_prepared(prep, reporter)
    finally:
        reporter.close()  # a full disk or Ctrl-C must not leave the spinner drawing over the message


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
    device = prep.graph.device
    said = f"device: {device.text} ({device.why})" if device is not None else ""
    if said and said not in plan.notes:  # a GPU in question: the notes say it, as the build's header does
        console.print(said)
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
    by its overrides, and returns its result, plain data, to the launcher). A build sweep ends
    with its summary (printed, and written to sweep.json in the folder its points share).
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
    launcher = next((o.value() for o in parsed if o.is_hydra_override() and o.key_or_group == "hydra/launcher"),
                    "basic")

    def task(cfg: Any) -> dict:
        return _run_point(mode, points[tuple(HydraConfig.get().overrides.task)], cwd)

    started = time.time()
    returned: Any = None
    stopped = ""
    with initialize_config_dir(config_dir=str(package_data_dir("conf")), job_name="navbuild",
                               version_base="1.3"):
        try:
            returned = GlobalHydra.instance().hydra.multirun(PRIMARY_CONFIG, task, normalized)
        except (HydraException, OmegaConfBaseException) as exc:  # a bad hydra/... override: the user's to fix
            raise RecipeError(composition_message(exc), where="command line") from None
        except Exception as exc:  # noqa: BLE001 - a job failed (its process killed) or the launcher did
            # Hydra's sweeper raises the first failed job's error, dropping the others' results:
            # each point is then judged by what it wrote during the sweep; the sweep still ends
            stopped = f"the {launcher} launcher stopped: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            print(f"navbuild: sweep: {stopped}", file=sys.stderr)
    results = _sweep_results(returned, points, cwd, started, stopped)
    if mode != "build":
        return max((r["exit_code"] for r in results), default=0)
    summary = sweep_summary(results, launcher)
    where = write_sweep_summary(sweep_dir([Path(r["output_dir"]) for r in results]), summary)
    for line in [*render_sweep(summary), f"  sweep summary: {where}"]:
        print(line, file=sys.stderr)
    return summary["exit_code"]


def _run_point(mode: str, point: _Point, cwd: Path) -> dict:
    """Plan or build one sweep point (in whichever process the launcher runs it); its result as plain data."""
    out_dir = resolve_path(point.recipe.output_dir, cwd)
    try:
        prep = prepare(point.recipe, point.recipe_file, cwd, point.overrides, checked=True)
        if mode == "plan":
            return point_result(point.overrides, prep.build_dir, _print_plan(prep))
        result = _build(prep)
        return point_result(point.overrides, prep.build_dir, result.exit_code, result.outcomes.values())
    except NavbuildError as err:
        return point_result(point.overrides, out_dir, _report_error(err, False), error=str(err))


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


def _sweep_results(returned: Any, points: Mapping[tuple[str, ...], _Point], cwd: Path, since: float,
                   stopped: str = "") -> list[dict]:
    """Every point's result, in sweep order, as the launcher returned it.

    Hydra's sweeper returns one JobReturn per job, whichever launcher ran it (here or in other
    processes). A job that raised, or whose process died where the launcher reports that, is a
    failed point; a point the launcher returned nothing for (it stopped: ``stopped`` says why) is
    judged by the summary.json it wrote during this sweep, and failed if it wrote none.
    """
    from hydra.core.utils import JobStatus

    jobs = [job for batch in returned for job in batch] if isinstance(returned, list) else []
    by_overrides = {tuple(job.overrides or ()): job for job in jobs}
    results = []
    for job_overrides, point in points.items():
        job = by_overrides.get(job_overrides)
        if job is not None and job.status == JobStatus.COMPLETED and isinstance(job._return_value, dict):
            results.append(job._return_value)
            continue
        out_dir = resolve_path(point.recipe.output_dir, cwd)
        if job is not None:
            why = job._return_value if job.status == JobStatus.FAILED else f"returned {job._return_value!r}"
            error = f"the point's job failed: {type(why).__name__}: {why}" if isinstance(why, BaseException) else why
            results.append(point_result(point.overrides, out_dir, 1, error=str(error), ran_here=False))
        else:
            results.append(_result_from_summary(point, out_dir, since, stopped))
    return results


def _result_from_summary(point: _Point, out_dir: Path, since: float, stopped: str) -> dict:
    """A point's result from the summary.json it wrote during this sweep (failed if it wrote none)."""
    summary = out_dir / "summary.json"
    try:
        if summary.stat().st_mtime >= since:
            data = json.loads(summary.read_text())
            return point_result(point.overrides, out_dir, int(data["exit_code"]),
                                [_Row(t["id"], t.get("key"), t["status"], t.get("reason", "")) for t in data["targets"]],
                                ran_here=False)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    why = f"no result came back ({stopped})" if stopped else "no result came back from the launcher"
    return point_result(point.overrides, out_dir, 1, error=why, ran_here=False)


@dataclass(frozen=True)
class _Row:
    """A target as summary.json lists it (what a point result needs of an outcome)."""

    id: str
    key: str | None
    status: str
    reason: str


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
