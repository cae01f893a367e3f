"""The command line: ``navbuild [build|plan] recipe=NAME [overrides] [-m]`` and ``navbuild gc``.

A thin layer over :mod:`navbuild.api`; Hydra composes recipes and runs multirun sweeps.
"""

from __future__ import annotations

import os
import signal
import re
import sys
import traceback
from pathlib import Path
from typing import Sequence

from navbuild.errors import NavbuildError

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

_exit_codes: list[int] = []


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
        from navbuild.cache.fs import NO_SPACE, disk_full

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
        from navbuild.gc_command import gc_main

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
        from navbuild.errors import RecipeError

        raise RecipeError(f"unknown option {unknown[0]}; see navbuild --help", where="command line")
    if not any(a.startswith("recipe=") for a in args):
        # `navbuild source.package=model.nav` continues the package with its own recipe
        default = "package" if any(a.startswith("source.package=") for a in args) else "mlp"
        args.insert(0, f"recipe={default}")
    cwd = Path.cwd()
    if multirun:
        return _multirun(mode, args, cwd)
    return _run_one(mode, args, cwd)


def _run_one(mode: str, overrides: list[str], cwd: Path, output_dir: str | None = None) -> int:
    from navbuild.api import build_prepared, load_recipe, prepare
    from navbuild.report.console import ConsoleReporter

    ref = next(a.split("=", 1)[1] for a in overrides if a.startswith("recipe="))
    recipe, path = load_recipe(ref, [a for a in overrides if not a.startswith("recipe=")], cwd)
    if output_dir and not recipe.output_dir:
        recipe.output_dir = output_dir
    prep = prepare(recipe, path, cwd, [a for a in overrides if not a.startswith("recipe=")])
    if mode == "plan":
        return _print_plan(prep)
    reporter = ConsoleReporter()
    try:
        result = build_prepared(prep, reporter)
    finally:
        reporter.close()  # a full disk or Ctrl-C must not leave the spinner drawing over the message
    return result.exit_code


def _show(args: list[str]) -> int:
    from navbuild.errors import RecipeError
    from navbuild.package.view import Package

    if len(args) != 1:
        raise RecipeError("usage: navbuild show PACKAGE.nav", where="command line")
    print(Package.open(args[0]).describe())
    return 0


def _print_plan(prep) -> int:
    from rich.console import Console
    from rich.table import Table

    from navbuild.planning.status import plan_statuses

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


def _multirun(mode: str, overrides: list[str], cwd: Path) -> int:
    """Run a Hydra multirun sweep; every sweep point builds on the same cache.

    Every point is composed and validated before any runs, so a bad value in the sweep is
    reported at once (exit 2) rather than after the first points have built.
    """
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from navbuild.recipe.load import (PRIMARY_CONFIG, check_override_keys, normalize_overrides,
                                      package_data_dir, register, split_recipe_override)

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
    check_override_keys(normalized)
    points = _sweep_points(normalized)
    from navbuild.api import load_recipe, prepare

    for point in points:
        ref = next(a.split("=", 1)[1] for a in point if a.startswith("recipe="))
        ref = files.get(ref, ref)
        recipe, path = load_recipe(ref, [a for a in point if not a.startswith("recipe=")], cwd)
        prepare(recipe, path, cwd)
    _exit_codes.clear()

    def task(cfg) -> None:
        hc = HydraConfig.get()
        name = hc.runtime.choices.get("recipe") or "recipe"
        job_overrides = [o for o in hc.overrides.task if not o.startswith("recipe=")]
        # --remeasure is how this run measures, not which point it is: same folder, same records
        label = _safe_dirname("+".join(o for o in job_overrides if not o.startswith("profile.remeasure=")))
        label = label or f"job{hc.job.num}"
        try:
            code = _run_one(mode, [f"recipe={files.get(name, name)}", *job_overrides], cwd,
                            output_dir=f"build/{name}/{label}")
        except NavbuildError as err:
            code = _report_error(err, False)
        _exit_codes.append(code)

    saved = sys.argv
    sys.argv = [saved[0], "-m", *normalized]
    try:
        hydra.main(config_path=str(package_data_dir("conf")), config_name=PRIMARY_CONFIG,
                   version_base="1.3")(task)()
    finally:
        sys.argv = saved
    return max(_exit_codes, default=0)


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
