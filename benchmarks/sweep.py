"""Benchmark: a 4-point sweep run point after point vs. 2 at a time on a local Ray (issue 19).

Sweeps a recipe over two profile knobs (2 windows x 2 batch-size lists: 4 points whose
conversions and checks are the same targets, and whose profiles differ), with Triton off:

  (a) Hydra's basic launcher: the points one after another, in this process;
  (b) navbuild's Ray launcher (hydra/launcher=navbuild_ray) on a local Ray of 2 CPUs: 2 points at once.

Each run builds into its own fresh cache and folder. Prints each run's wall time, the targets
it built, those it served from the cache, and what building every point on its own would have
built (the sum over points of their targets), from the sweep's own summary (sweep.json).

    python benchmarks/sweep.py [--recipe minilm|mlp] [--windows 0.5,1.0] [--batches "[1],[1,8]"]
                               [--extra formats=[torch,onnx] ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_sweep(work: Path, overrides: list[str], launcher: list[str], timeout: float) -> tuple[float, dict]:
    """Run ``navbuild -m`` in a fresh folder with a fresh cache; its wall time and its sweep.json."""
    work.mkdir(parents=True)
    env = dict(os.environ, NAVBUILD_CACHE_DIR=str(work / "cache"))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "navbuild", "-m", *overrides, *launcher], cwd=work, env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    found = sorted((work / "build").glob("*/sweep.json"))
    if not found:
        sys.exit(f"navbuild -m {' '.join(overrides + launcher)} wrote no sweep.json (exit {proc.returncode}):\n"
                 f"{proc.stderr[-3000:]}")
    return seconds, json.loads(found[0].read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="minilm")
    parser.add_argument("--windows", default="0.5,1.0", help="profile.window_s values (seconds)")
    parser.add_argument("--batches", default="[1],[1,8]", help="profile.batch_sizes values")
    parser.add_argument("--extra", nargs="*", default=[], help="more overrides, the same in every point")
    parser.add_argument("--timeout", type=float, default=7200)
    args = parser.parse_args()

    overrides = [f"recipe={args.recipe}", "triton.enabled=false", f"profile.window_s={args.windows}",
                 f"profile.batch_sizes={args.batches}", *args.extra]
    runs = {
        "sequential (basic launcher)": [],
        "Ray, 2 workers (navbuild_ray)": ["hydra/launcher=navbuild_ray", "hydra.launcher.num_cpus=2"],
    }
    print(f"sweep: navbuild -m {' '.join(overrides)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="navbuild-sweep-bench-") as tmp:
        for num, (name, launcher) in enumerate(runs.items()):
            seconds, sweep = run_sweep(Path(tmp) / f"run{num}", overrides, launcher, args.timeout)
            rows.append((name, seconds, sweep))
            print(f"  {name}: done in {seconds:.1f} s (exit {sweep['exit_code']})", flush=True)
    print()
    print(f"{'run':32} {'points':>6} {'wall s':>8} {'built':>6} {'cached':>7} {'naive':>6} {'keys':>5} "
          f"{'shared':>7} {'built twice':>11} {'remeasured':>10}")
    for name, seconds, s in rows:
        print(f"{name:32} {len(s['points']):>6} {seconds:>8.1f} {s['built']:>6} {s['cached']:>7} {s['targets']:>6} "
              f"{s['distinct_keys']:>5} {s['shared']:>7} {s['built_by_several']:>11} {s['measured_again']:>10}")
    (_, seq, _), (_, ray, _) = rows
    print(f"\nRay (2 workers) vs sequential: {seq / ray:.2f}x the speed; 'naive' is what building each point "
          f"on its own would have built; 'built twice' counts keys more than one point built; "
          f"'remeasured': provisional measurements (taken under load) another point measured again")


if __name__ == "__main__":
    main()
