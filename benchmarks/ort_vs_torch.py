"""Benchmark: the onnx-opt variant of a recipe against its torch source, measured interleaved.

Target (issue 2): onnx-opt of MiniLM is faster than torch eager at batch 8, seq 128, with 2
threads. Builds the recipe's onnx-opt target through navbuild (cached if already built),
then times torch and ONNX Runtime alternately (A B A B ...), each in its own worker process
(as navbuild's profiles run), so that one runtime's idle thread pool cannot slow the other.
Prints per-runtime medians over the rounds and the ratio; the machine is shared and noisy,
so only these interleaved medians are compared.

    python benchmarks/ort_vs_torch.py [--recipe minilm] [--batch 8] [--threads 2] [--rounds 12]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from pathlib import Path


def worker(conn, kind: str, recipe_ref: str, overrides: list[str], model_path: str | None,
           batch: int, threads: int) -> None:
    """Load one runtime, then on each request run it ``n`` times and send the latencies (ms)."""
    from navbuild.api import load_recipe
    from navbuild.planning.planner import tensor_specs
    from navbuild.runners.ort_runner import OrtRunner
    from navbuild.runners.torch_runner import TorchRunner, load_torch_model
    from navbuild.samples import generate_samples, take_batch
    from navbuild.steps.common import RuntimeOptions, TorchFactory

    recipe, _ = load_recipe(recipe_ref, overrides)
    specs = tensor_specs(recipe)
    feeds = take_batch(generate_samples(specs, recipe.samples.count, recipe.samples.seed,
                                        dict(recipe.samples.axes)), batch)
    if kind == "torch":
        runner = TorchRunner(load_torch_model(TorchFactory(recipe.source.torch, dict(recipe.source.kwargs))),
                             [s.name for s in specs], threads)
    else:
        runner = OrtRunner(Path(model_path), RuntimeOptions(intra_op_threads=threads, inter_op_threads=1,
                                                            graph_level="all"))
    for _ in range(3):
        runner.run(feeds)
    conn.send("ready")
    while (n := conn.recv()) > 0:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            runner.run(feeds)
            times.append((time.perf_counter() - start) * 1000)
        conn.send(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="minilm")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--iters", type=int, default=5, help="runs per round and runtime")
    args = parser.parse_args()

    import navbuild

    overrides = ["formats=[onnx-opt]", f"profile.batch_sizes=[{args.batch}]",
                 f"runtime.intra_op_threads={args.threads}"]
    result = navbuild.build(args.recipe, overrides)
    model_path = str(Path(result.summary["variants"]["onnx-opt"]["artifact"]) / "model.onnx")

    ctx = mp.get_context("spawn")
    workers = {}
    for kind in ("torch", "onnx-opt"):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=worker, args=(child, kind, args.recipe, overrides, model_path,
                                                args.batch, args.threads), daemon=True)
        proc.start()
        assert parent.recv() == "ready"
        workers[kind] = (parent, proc)
    rounds: dict[str, list[float]] = {k: [] for k in workers}
    from navbuild.steps.finalists import SETTLE_S

    for _ in range(args.rounds):
        for kind, (conn, _) in workers.items():
            time.sleep(SETTLE_S)  # let the other runtime's spinning threads go idle first
            conn.send(args.iters)
            rounds[kind].append(statistics.median(conn.recv()))
    for conn, proc in workers.values():
        conn.send(0)
        proc.join(timeout=30)

    med = {k: statistics.median(v) for k, v in rounds.items()}
    print(f"recipe {args.recipe}: batch {args.batch}, {args.threads} threads, {args.rounds} interleaved rounds "
          f"of {args.iters} runs each (one worker process per runtime)")
    for k, v in rounds.items():
        print(f"{k:>9}: median {med[k]:8.2f} ms/batch   round medians min {min(v):.2f} max {max(v):.2f}")
    ratio = med["torch"] / med["onnx-opt"]
    print(f"onnx-opt speed-up over torch eager: {ratio:.2f}x  (target > 1: {'ok' if ratio > 1 else 'MISSED'})")


if __name__ == "__main__":
    main()
