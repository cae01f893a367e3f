"""CompareFinalists: re-measure the fastest correct variants interleaved (A B A B ...) in one run."""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

from navbuild.measure_conditions import Probe, describe
from navbuild.runners import make_runner
from navbuild.runtime import RuntimeOptions, TorchFactory
from navbuild.samples import read_npz, take_batch
from navbuild.settings import params_of
from navbuild.steps.base import Step, StepContext, runtime_requirements
from navbuild.steps.profile import ProfileConfig
from navbuild.steps.reference import SAMPLES_FILE
from navbuild.supervise import die_with_parent

#: pause between two finalists' turns. Without it, MiniLM's openvino-int8 timed between torch
#: turns measured 45.6 ms against 38.7 ms in its own profile: the previous runtime's threads
#: were still spinning.
SETTLE_S = 0.3


@dataclass(frozen=True)
class FinalistSpec:
    variant: str
    runner: str  # runner format
    runtime: RuntimeOptions
    factory: TorchFactory | None  # for variants that run the source
    input: str  # the name of its model in ctx.inputs ("model-<variant>" or "source")


@dataclass(frozen=True)
class _Finalists:
    """What the comparison reads besides the recipe's ``profile.finalist_*`` settings."""

    finalists: tuple[FinalistSpec, ...]
    batch_size: int


FinalistsParams = params_of(ProfileConfig, "FinalistsParams", __name__, bases=(_Finalists,),
                            only=("finalist_rounds", "finalist_iters", "pin_cores", "finalist_warmup_iters"),
                            rename={"finalist_rounds": "rounds", "finalist_iters": "iters",
                                    "finalist_warmup_iters": "warmup"})


class CompareFinalists(Step):
    """Profiles measured one variant after another see different moments of a noisy machine.

    Here every finalist lives in its own worker process (so one runtime's thread pool cannot
    slow another) and all are timed in alternation, round after round, so slow periods hit
    every variant alike. Rankings use these paired measurements; the spread across rounds is
    the noise a difference must beat.
    """

    name: ClassVar[str] = "CompareFinalists"
    version: ClassVar[int] = 4
    Params: ClassVar[type] = FinalistsParams
    requires: ClassVar[tuple[str, ...]] = ("numpy",)
    tools: ClassVar[tuple[str, ...]] = ("torch", "onnxruntime", "openvino", "numpy")
    hardware_dependent: ClassVar[bool] = True
    # its ranking decides the best variant: a ranking taken on a busy machine is provisional too
    timed: ClassVar[bool] = True

    @classmethod
    def runtimes(cls, params: Any = None) -> tuple[str, ...]:
        return tuple(r for spec in getattr(params, "finalists", ())
                     for r in runtime_requirements(spec.runner, spec.runtime.mode))

    def run(self, params: FinalistsParams, ctx: StepContext) -> dict:

        feeds = take_batch(read_npz(ctx.inputs["reference"] / SAMPLES_FILE), params.batch_size)
        threads = max(s.runtime.intra_op_threads for s in params.finalists)
        cpus = _cpus(threads) if params.pin_cores else None
        context = mp.get_context("spawn")
        workers: dict[str, Any] = {}
        try:
            for spec in params.finalists:
                parent, child = context.Pipe()
                path = ctx.inputs.get(spec.input)
                proc = context.Process(target=_worker, daemon=True,
                                       args=(child, spec, str(path) if path else None, feeds, cpus, os.getpid()))
                proc.start()
                child.close()  # the worker's end: a worker that dies now ends the parent's recv
                status = _receive(parent, proc, spec.variant)
                if status != "ready":
                    raise RuntimeError(f"finalist {spec.variant} could not start: {status}")
                workers[spec.variant] = (parent, proc)
                print(f"{spec.variant}: ready", flush=True)
            per_round: dict[str, list[float]] = {v: [] for v in workers}
            order = list(workers)
            with Probe() as probe:  # the workers are this process's children: their CPU is ours
                for r in range(params.rounds):
                    # rotate who goes first, so no variant always runs right after the same neighbour
                    for variant in order[r % len(order):] + order[:r % len(order)]:
                        # let the previous runtime's idle threads stop spinning (OpenMP, TBB and
                        # ONNX Runtime spin-wait after work) before the next one is timed
                        time.sleep(SETTLE_S)
                        conn, proc = workers[variant]
                        conn.send((params.warmup, params.iters))
                        per_round[variant].append(statistics.median(_receive(conn, proc, variant)))
            print(f"rounds ran under: {describe(probe.conditions)}", flush=True)
            for conn, _ in workers.values():
                conn.send((0, 0))
        finally:
            for conn, proc in workers.values():
                conn.close()  # a worker still waiting for a turn sees the end and exits
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.kill()
        figures = {}
        for variant, times in per_round.items():
            med = statistics.median(times)
            q = statistics.quantiles(times, n=4) if len(times) >= 2 else [med, med, med]
            figures[variant] = {"latency_ms": med, "throughput": params.batch_size / (med / 1000.0),
                                "spread": (q[2] - q[0]) / med if med else 0.0, "rounds_ms": times}
            print(f"{variant}: median {med:.3f} ms over {len(times)} rounds, "
                  f"spread {figures[variant]['spread']:.3f}", flush=True)
        return {"batch_size": params.batch_size, "rounds": params.rounds, "iters": params.iters,
                "warmup": params.warmup,
                "pinned_cpus": sorted(cpus) if cpus else None, "variants": figures,
                "conditions": probe.conditions}


def _receive(conn: Any, proc: Any, variant: str) -> Any:
    """The worker's next message; a worker that died (a runtime crashing in native code, the
    OOM killer) is a clear error rather than a parent waiting forever."""
    try:
        return conn.recv()
    except (EOFError, ConnectionError):
        proc.join(timeout=5)
        raise RuntimeError(f"finalist {variant}: its worker process died (exit code {proc.exitcode}) "
                           "before it answered") from None


def _cpus(threads: int) -> set[int] | None:
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    return set(allowed[:max(1, threads)])


def _timed_run(runner: Any, feeds: dict) -> Callable[[], float]:
    """One timed run of the finalist in ms, as its profile timed it: the runner's own time on its
    device where it offers ``bind`` (inputs already there), else the host clock around ``run``."""
    bind = getattr(runner, "bind", None)
    if bind is not None:
        return bind(feeds)

    def run() -> float:
        start = time.perf_counter()
        runner.run(feeds)
        return (time.perf_counter() - start) * 1000.0
    return run


def _worker(conn: Any, spec: FinalistSpec, path: str | None, feeds: dict, cpus: set[int] | None,
            parent: int) -> None:
    """Load one finalist; on each ``(warmup, n)`` request run it ``warmup`` times untimed, then
    ``n`` times timed, and send those latencies in ms; ``n`` = 0 ends the worker."""
    # a daemon worker is stopped by its parent's normal exit only: a SIGKILLed step must not
    # leave it timing on
    die_with_parent(parent)
    try:
        if cpus:
            os.sched_setaffinity(0, cpus)

        model = Path(path) if path and spec.input != "source" else None
        source = Path(path) if path and spec.input == "source" else None
        runner = make_runner(spec.runner, model, spec.factory, list(feeds), spec.runtime, source=source)
        timed = _timed_run(runner, feeds)
        for _ in range(3):
            timed()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the step
        conn.send(f"{type(exc).__name__}: {exc}")
        return
    conn.send("ready")
    while True:
        try:
            warmup, n = conn.recv()
        except EOFError:  # the parent stopped (another finalist failed)
            break
        if n <= 0:
            break
        for _ in range(warmup):
            timed()
        conn.send([timed() for _ in range(n)])
