"""Benchmark: the Triton configuration navbuild chooses against Triton's default config, and a cached re-run.

Targets (issue 4), on recipes/minilm.yaml:
- under a p99 budget that Triton's default config misses or barely meets, the chosen
  configuration's throughput is at least 1.3x the default config's (same variant, same run);
- a re-run with the search already measured takes under 5% of the first search's time.

Runs the real CLI (real Triton server, perf_analyzer, Model Analyzer) on a fresh cache:
1. builds the recipe with no p99 bound, which measures every configuration at every load point;
2. sets the budget to ``--slack`` x the default config's p99 at its highest-throughput load
   point (so the default barely meets it there), and re-runs: constraints are not part of a measurement's key,
   so this only re-ranks the cached measurements;
3. re-runs again unchanged, timed.
Prints the default's and the winner's throughput under the budget and their ratio, then the
first search's time, the re-run's time and their ratio.

    python benchmarks/triton_search.py [--recipe minilm] [--slack 1.1] [--repeats 3] [--override KEY=VALUE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def navbuild(args: list[str], cwd: Path, env: dict, check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "navbuild", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if check and proc.returncode != 0:
        sys.exit(f"navbuild {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-3000:]}")
    return elapsed, proc


def runtime_bound(row: dict) -> None:
    """Print how much batching can lift the variant's own throughput (its profile, no Triton).

    Triton's default config already keeps one model instance busy with batch-1 requests; a
    search can add batching and instances, but on a saturated CPU no config beats the
    runtime's best per-sample throughput, so (best batch) / (batch 1) bounds the margin.
    """
    profile = row.get("profile") or {}
    if "1" not in profile or len(profile) < 2:
        return
    one = profile["1"]["throughput"]
    batch, best = max(((b, p["throughput"]) for b, p in profile.items()), key=lambda bp: bp[1])
    print(f"runtime bound: the variant alone runs batch 1 at {one:.1f}/s and batch {batch} at {best:.1f}/s "
          f"({best / one:.2f}x); on a saturated CPU a config can gain about that much over batch-1 serving")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="minilm")
    parser.add_argument("--slack", type=float, default=1.1,
                        help="budget = slack x the default config's p99 at its highest-throughput load point")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--override", action="append", default=[],
                        help="a recipe override for every run, e.g. 'triton.variants=[onnx-opt]'")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder (reuses its cache)")
    args = parser.parse_args()
    tmp = None if args.keep else tempfile.TemporaryDirectory(prefix="navbuild-triton-bench-")
    work = args.keep or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, NAVBUILD_CACHE_DIR=str(work / "cache"))
    build = work / "build" / args.recipe
    try:
        # 1. measure everything, no p99 bound
        first, _ = navbuild([f"recipe={args.recipe}", *args.override, "triton.constraints.p99_latency_ms=null"], work, env)
        summary = json.loads((build / "summary.json").read_text())
        search_s = sum(t["seconds"] for t in summary["targets"] if t["id"].startswith("triton/"))
        triton = summary["triton"]
        variant = triton["winner"]
        entry = triton["variants"][variant]
        default_peak = max((r for r in entry["table"] if r["config"] == entry["default"]),
                           key=lambda r: r["throughput"])
        budget = round(default_peak["p99_ms"] * args.slack, 2)
        print(f"variant {variant}: {len(entry['table'])} measurements of "
              f"{len({r['config'] for r in entry['table']})} configurations; first search {search_s:.1f} s "
              f"(whole build {first:.1f} s)")
        runtime_bound(summary["variants"].get(variant, {}))
        print(f"p99 budget: {budget} ms = {args.slack} x the default config's p99 at its highest-throughput "
              f"load point, concurrency {default_peak['concurrency']} ({default_peak['p99_ms']:.2f} ms, "
              f"{default_peak['throughput']:.1f}/s)")

        # 2. the same measurements ranked under the budget
        _, proc = navbuild([f"recipe={args.recipe}", *args.override, f"triton.constraints.p99_latency_ms={budget}"], work, env,
                           check=False)
        summary = json.loads((build / "summary.json").read_text())
        entry = summary["triton"]["variants"][variant]
        remeasured = [t["id"] for t in summary["targets"]
                      if t["id"].startswith("triton/measure/") and t["status"] == "built"]
        print(f"re-ranked under the budget (re-measured: {remeasured or 'nothing'})")
        for row in entry["table"]:
            print(f"  {'ok' if row['meets_constraints'] else '--'} {row['config']:<28} c={row['concurrency']:<2} "
                  f"{row['throughput']:8.1f}/s  p99 {row['p99_ms']:8.2f} ms")
        default_best, best = entry.get("default_best"), entry.get("best")
        if best is None:
            sys.exit(f"nothing meets the budget:\n{proc.stdout[-2000:]}")
        print(f"Triton default ({entry['default']}): "
              + (f"{default_best['throughput']:.1f}/s at concurrency {default_best['concurrency']}, "
                 f"p99 {default_best['p99_ms']:.2f} ms" if default_best else "meets the budget at no load point"))
        print(f"navbuild's choice ({best['label']}): {best['throughput']:.1f}/s at concurrency "
              f"{best['concurrency']}, p99 {best['p99_ms']:.2f} ms")
        if default_best:
            ratio = best["throughput"] / default_best["throughput"]
            print(f"throughput under the budget: {ratio:.2f}x the default config (target >= 1.3x: "
                  f"{'met' if ratio >= 1.3 else 'MISSED'})")

        # 3. unchanged re-runs
        times = [navbuild([f"recipe={args.recipe}", *args.override, f"triton.constraints.p99_latency_ms={budget}"], work, env,
                          check=False)[0] for _ in range(args.repeats)]
        med = statistics.median(times)
        print(f"re-run with the search measured: {', '.join(f'{t:.2f}' for t in times)} s, median {med:.2f} s = "
              f"{100 * med / search_s:.2f}% of the first search's {search_s:.1f} s (target < 5%: "
              f"{'met' if med < 0.05 * search_s else 'MISSED'})")
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
