"""Benchmark: a no-op rebuild of a recipe (everything cached) vs its full build.

Target (issue 2): the no-op rebuild of recipes/minilm.yaml takes under 2 s of wall time and
under 5% of the full build's time. Runs the real CLI in subprocesses against a fresh cache
and prints the full build time, every no-op time, their median and the ratio.

    python benchmarks/noop_rebuild.py [--recipe minilm] [--repeats 5]
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


def run(args: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "navbuild", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"navbuild {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="minilm")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="navbuild-bench-") as tmp:
        work = Path(tmp)
        env = dict(os.environ, NAVBUILD_CACHE_DIR=str(work / "cache"))
        full = run([f"recipe={args.recipe}"], work, env)
        noops = [run([f"recipe={args.recipe}"], work, env) for _ in range(args.repeats)]
    median = statistics.median(noops)
    print(f"recipe {args.recipe}")
    print(f"full build           : {full:8.2f} s")
    print(f"no-op rebuilds       : {', '.join(f'{t:.2f}' for t in noops)} s")
    print(f"no-op median         : {median:8.2f} s   (target < 2 s: {'ok' if median < 2 else 'MISSED'})")
    print(f"no-op / full         : {median / full * 100:7.2f} %  (target < 5 %: {'ok' if median / full < 0.05 else 'MISSED'})")


if __name__ == "__main__":
    main()
