"""Benchmark: the onnx-opt variant of a recipe against its torch source, measured interleaved.

Target (issue 2): onnx-opt of MiniLM is faster than torch eager at batch 8, seq 128, with 2
threads. Builds the recipe's onnx-opt target through navbuild (cached if already built),
then times torch and ONNX Runtime alternately (A B A B ...) with navbuild's own finalists
step: each runtime in its own worker process, a pause between turns, rounds compared pairwise.
Prints per-runtime medians over the rounds and the ratio; the machine is shared and noisy,
so only these interleaved medians are compared.

    python benchmarks/ort_vs_torch.py [--recipe minilm] [--batch 8] [--threads 2] [--rounds 12]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="minilm")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--iters", type=int, default=5, help="runs per round and runtime")
    args = parser.parse_args()

    from navbuild.api import build_prepared, load_recipe, prepare
    from navbuild.planning.planner import SOURCE_ID
    from navbuild import formats
    from navbuild.report.events import Reporter
    from navbuild.steps.base import StepContext
    from navbuild.steps.finalists import CompareFinalists, FinalistSpec, FinalistsParams

    overrides = ["formats=[torch,onnx-opt]", "precisions=[fp32]", f"profile.batch_sizes=[{args.batch}]",
                 f"runtime.intra_op_threads={args.threads}"]
    recipe, path = load_recipe(args.recipe, overrides)
    prep = prepare(recipe, path, overrides=overrides)
    build_prepared(prep, Reporter())
    specs, inputs = [], {"reference": prep.build_dir / "reference",
                         "source": prep.graph.leaves[SOURCE_ID].path,
                         "model-onnx-opt": prep.build_dir / "onnx-opt"}
    for name, slot in (("torch", "source"), ("onnx-opt", "model-onnx-opt")):
        profile = prep.graph.targets[f"profile/{name}"].params
        specs.append(FinalistSpec(variant=name, runner=formats.variant(name).runner, runtime=profile.runtime,
                                  factory=profile.factory, input=slot))
    params = FinalistsParams(finalists=tuple(specs), batch_size=args.batch, rounds=args.rounds,
                             iters=args.iters, pin_cores=True)
    with tempfile.TemporaryDirectory() as tmp:
        figures = CompareFinalists().run(params, StepContext(inputs=inputs, out=Path(tmp)))["variants"]

    print(f"recipe {args.recipe}: batch {args.batch}, {args.threads} threads, {args.rounds} interleaved rounds "
          f"of {args.iters} runs each (one worker process per runtime)")
    for name, fig in figures.items():
        print(f"{name:>9}: median {fig['latency_ms']:8.2f} ms/batch   round medians min {min(fig['rounds_ms']):.2f} "
              f"max {max(fig['rounds_ms']):.2f}")
    ratio = figures["torch"]["latency_ms"] / figures["onnx-opt"]["latency_ms"]
    wins = sum(t > o for t, o in zip(figures["torch"]["rounds_ms"], figures["onnx-opt"]["rounds_ms"]))
    print(f"onnx-opt faster than torch in {wins} of {len(figures['torch']['rounds_ms'])} rounds")
    print(f"onnx-opt speed-up over torch eager: {ratio:.2f}x  (target > 1: {'ok' if ratio > 1 else 'MISSED'})")


if __name__ == "__main__":
    main()
