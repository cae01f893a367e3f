"""Benchmark: every torch-cuda mode (and torch-aoti-cuda) on one GPU against torch eager fp32 on the
same GPU, interleaved (issue 15).

Loads the recipe's torch source, builds each GPU runner (navbuild/runners/torch_cuda_runner.py;
with ``--aoti`` also an AOTInductor package for the device, navbuild/steps/aoti_from_torch.py),
checks its outputs against eager fp32 on the CPU, then times them in rounds (A B C A B C ...),
each turn one untimed call and ``--iters`` timed calls through ``bind`` (inputs on the device,
CUDA events), and prints each runner's median, its ratio over eager fp32, its accuracy and the
GPU memory it added at its peak.

    python benchmarks/gpu_runners.py [--recipe minilm] [--batch 8] [--rounds 10] [--iters 20] [--aoti]
    python benchmarks/gpu_runners.py --recipe mlp --device cpu --modes ,cast-bf16   # the same code on the CPU

Needs a CUDA GPU (``--device cuda``, the default); prints why and exits 2 without one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _recipe(name: str) -> Any:
    from navbuild.recipe.load import compose, to_recipe

    composed = compose([f"recipe={name}"], Path.cwd())
    return to_recipe(composed.config, composed.name)


def _feeds(recipe: Any, batch: int) -> dict:
    from navbuild.formats.common import tensor_specs
    from navbuild.samples import generate_samples

    return generate_samples(tensor_specs(recipe), batch, recipe.samples.seed, dict(recipe.samples.axes))


def _accuracy(got: Any, want: Any) -> tuple[float, float]:
    """Max abs error and the minimum per-row cosine of the first output against eager fp32."""
    import numpy as np

    g, w = np.asarray(got, np.float64).reshape(len(got), -1), np.asarray(want, np.float64).reshape(len(want), -1)
    cos = (g * w).sum(1) / np.maximum(np.linalg.norm(g, axis=1) * np.linalg.norm(w, axis=1), 1e-30)
    return float(np.abs(g - w).max()), float(cos.min())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="minilm")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=20, help="untimed calls per runner before the rounds")
    ap.add_argument("--modes", default=None, help="comma-separated torch-cuda modes ('' is fp32); default: all")
    ap.add_argument("--aoti", action="store_true", help="also compile and time an AOTInductor package")
    ap.add_argument("--device", default="cuda", help="cuda (the default) or cpu, to try the script without a GPU")
    args = ap.parse_args()

    import torch

    from navbuild.formats.common import torch_factory
    from navbuild.runners import make_runner
    from navbuild.runners.device_timing import is_cuda
    from navbuild.runners.torch_cuda_runner import TORCH_CUDA_MODES, on_device

    if is_cuda(args.device) and not torch.cuda.is_available():
        print(f"no CUDA GPU: torch {torch.__version__} sees none (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    recipe = _recipe(args.recipe)
    factory, names = torch_factory(recipe), [i.name for i in recipe.inputs]
    feeds = _feeds(recipe, args.batch)
    modes = TORCH_CUDA_MODES if args.modes is None else tuple(args.modes.split(","))
    (reference,) = on_device("cpu", factory, names, "", 1).run(feeds)[:1]
    gpu = torch.cuda.get_device_name() if is_cuda(args.device) else "cpu"
    print(f"{args.recipe} at batch {args.batch} on {gpu} (torch {torch.__version__}); "
          f"{args.rounds} rounds x {args.iters} timed calls, interleaved", flush=True)

    def allocated() -> float:
        return torch.cuda.memory_allocated() / 2**20 if is_cuda(args.device) else 0.0

    runners: dict[str, Any] = {}
    facts: dict[str, dict] = {}

    def add(label: str, make: Any) -> None:
        before, t0 = allocated(), time.perf_counter()
        runner = make()
        bound = runner.bind(feeds)
        for _ in range(args.warmup):  # compiles (torch.compile is lazy), settles the clocks
            bound()
        peak = runner.peak_memory_mb()
        err, cos = _accuracy(bound.outputs()[0], reference)
        facts[label] = {"ready_s": time.perf_counter() - t0, "max_abs": err, "cos_min": cos,
                        "peak_mb": None if peak is None else peak - before}
        runners[label] = bound
        print(f"  {label:<34} ready in {facts[label]['ready_s']:.1f}s", flush=True)

    for mode in modes:
        add(f"torch-cuda[{mode or 'fp32'}]" if is_cuda(args.device) else f"torch[{mode or 'fp32'}]",
            lambda mode=mode: on_device(args.device, factory, names, mode, 1))
    if args.aoti:
        from navbuild.runtime import RuntimeOptions
        from navbuild.steps.aoti_from_torch import AotiFromTorch
        from navbuild.steps.base import StepContext
        from navbuild.formats.common import traced_export

        workdir = tempfile.TemporaryDirectory(prefix="gpu_runners_aoti_")  # removed when main returns
        out = Path(workdir.name)
        kind = "cuda" if is_cuda(args.device) else "cpu"
        params = AotiFromTorch.Params(**traced_export(recipe), device=kind, packages=tuple(recipe.source.packages))
        AotiFromTorch().run(params, StepContext(inputs={}, out=out))
        add(f"torch-aoti ({kind})", lambda: make_runner("torch-aoti", out / "model.pt2", None, names,
                                                       RuntimeOptions(intra_op_threads=1)))

    times: dict[str, list[float]] = {label: [] for label in runners}
    for _ in range(args.rounds):
        for label, bound in runners.items():
            bound()
            times[label].extend(bound() for _ in range(args.iters))
    base_label = next(iter(runners))
    base = statistics.median(times[base_label])
    print(f"\n{'runner':<34} {'median ms':>10} {'vs ' + base_label:>24} {'max abs err':>12} {'cos min':>10} "
          f"{'peak MiB':>9}")
    for label, samples in times.items():
        med = statistics.median(samples)
        f = facts[label]
        peak = "-" if f["peak_mb"] is None else f"{f['peak_mb']:.1f}"
        print(f"{label:<34} {med:>10.3f} {base / med:>23.2f}x {f['max_abs']:>12.3g} {f['cos_min']:>10.6f} {peak:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
