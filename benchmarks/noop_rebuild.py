"""Benchmark: a no-op rebuild of a recipe (everything cached) and its `navbuild plan`, vs its full build.

Targets (issue 14): the no-op rebuild of recipes/mlp.yaml and `navbuild plan recipe=mlp` each
take at most 1.0 s of wall time (issue 2's: the no-op under 5% of the full build). Runs the
real CLI in subprocesses: a full build on a fresh cache (or on --cache, already built), then
the no-op rebuilds and the plans, and prints every time, the medians, the CPU time the
process used (what the wall time would be on an otherwise idle machine) and the verdicts.

Python writes its bytecode to a folder of this run (the environment may forbid it), so the
runs after the first one import compiled modules, as an installed navbuild does.

    python benchmarks/noop_rebuild.py [--recipe mlp] [--repeats 5] [--cache DIR] [override ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 1.0
RATIO_TARGET = 0.05


def run(args: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one ``navbuild`` command."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "navbuild", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"navbuild {' '.join(args)} failed ({os.waitstatus_to_exitcode(status)}):\n"
                 f"{proc.stderr.read()[-3000:]}")
    proc.stderr.close()
    return elapsed, usage.ru_utime + usage.ru_stime


def line(label: str, runs: list[tuple[float, float]], target: float | None = None) -> str:
    wall = statistics.median(t for t, _ in runs)
    cpu = statistics.median(c for _, c in runs)
    verdict = f"   (target <= {target:.1f} s: {'ok' if wall <= target else 'MISSED'})" if target else ""
    return (f"{label:<21}: {wall:6.2f} s median wall, {cpu:5.2f} s CPU{verdict}\n"
            f"{'':<21}  runs {', '.join(f'{t:.2f}' for t, _ in runs)} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="mlp")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cache", help="an existing cache that holds the recipe's build (skips the full build)")
    parser.add_argument("overrides", nargs="*", help="recipe overrides for every command (key=value)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="navbuild-bench-") as tmp:
        work = Path(tmp)
        env = dict(os.environ, NAVBUILD_CACHE_DIR=str(Path(args.cache).resolve() if args.cache else work / "cache"),
                   PYTHONPYCACHEPREFIX=str(work / "pycache"))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        build = [f"recipe={args.recipe}", *args.overrides]
        full = run(build, work, env)  # with --cache: the first rebuild, which also compiles the bytecode
        noops = [run(build, work, env) for _ in range(args.repeats)]
        plans = [run(["plan", *build], work, env) for _ in range(args.repeats)]
    print(f"recipe {args.recipe} {' '.join(args.overrides)}".rstrip())
    print(f"{'first build' if not args.cache else 'first rebuild'} : {full[0]:8.2f} s")
    print(line("no-op rebuild", noops, TARGET_S))
    print(line("plan", plans, TARGET_S))
    if not args.cache:
        ratio = statistics.median(t for t, _ in noops) / full[0]
        print(f"{'no-op / full build':<21}: {ratio * 100:6.2f} %  (target < {RATIO_TARGET * 100:.0f} %: "
              f"{'ok' if ratio < RATIO_TARGET else 'MISSED'})")


if __name__ == "__main__":
    main()
