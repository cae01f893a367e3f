"""ReferenceFromSource: the samples and the source model's outputs at every batch size, the ground truth for correctness."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from navbuild.errors import InputError
from navbuild.lazy import lazy_import
from navbuild.model_io import TensorSpec, model_file
from navbuild.runners.ort_runner import OrtRunner
from navbuild.runners.torch_runner import TorchRunner, call_model, load_torch_model
from navbuild.runtime import RuntimeOptions, TorchFactory
from navbuild.samples import generate_samples, load_samples, save_npz, take_batch
from navbuild.steps.base import Step, StepContext, runtime_requirements
from navbuild.steps.common import (describe_error, describe_feeds, first_line, load_callable, order_by_name,
                                   resolve_output_names)
from navbuild.steps.probes import PROBES_FILE, ProbeParams, probe_feeds, probe_files, probe_plan

np = lazy_import("numpy")

SOURCE_FORMATS: tuple[str, ...] = ("torch", "onnx")
#: the samples every downstream check and profile feeds, inside a reference target's folder
SAMPLES_FILE = "samples.npz"


def reference_file(batch: int) -> str:
    """File name of the reference outputs at ``batch`` inside a reference target's folder."""
    return f"reference_b{batch}.npz"


@dataclass(frozen=True)
class ReferenceParams:
    source_format: str                 # "torch" | "onnx"
    factory: TorchFactory | None       # the torch source; None for onnx
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[str, ...]           # declared output names; empty = model's names or output_i
    count: int                         # rows of generated samples
    seed: int
    axes: Mapping[str, int]            # sizes of the non-batch dynamic axes
    batch_sizes: tuple[int, ...]
    threads: int
    generator: str | None = None       # "module:function(count, seed, axes, **kwargs)" making samples
    generator_kwargs: Mapping[str, Any] = field(default_factory=dict)
    # other shapes and values the variants must also match the source on (None: none)
    probe: ProbeParams | None = None


def _call_generator(params: ReferenceParams) -> dict:
    fn = load_callable(params.generator, "samples.generator")
    arrays = fn(count=params.count, seed=params.seed, axes=dict(params.axes), **dict(params.generator_kwargs))
    return {k: np.asarray(v) for k, v in dict(arrays).items()}


def _count_flops(runner: Any, samples: Mapping[str, Any], batch_sizes: tuple[int, ...]) -> dict[str, float]:
    """FLOPs of one forward of a torch source per batch size (torch's FlopCounterMode); {} otherwise.

    Profiles turn these into achieved GFLOP/s, to compare with the machine's GEMM peak.
    """
    model = getattr(runner, "model", None)
    if model is None:
        return {}
    try:
        import torch
        from torch.utils.flop_counter import FlopCounterMode


        out = {}
        for b in batch_sizes:
            feeds = {n: torch.from_numpy(a) for n, a in take_batch(samples, b).items()}
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                call_model(model, feeds, runner.by_name)
            out[str(b)] = float(counter.get_total_flops())
        return out
    except Exception as e:  # noqa: BLE001 - a count is a nicety; never fail the reference for it
        print(f"FLOP count skipped: {type(e).__name__}: {first_line(e)}", flush=True)
        return {}


class ReferenceFromSource(Step):
    """Generate (or load) the samples and run the source model on them at each batch size.

    Each batch size gets its own run rather than a slice of batch 1, so a source whose
    outputs depend on batch composition is still the ground truth for that batch.
    """

    name: ClassVar[str] = "ReferenceFromSource"
    # 3: probe feeds (other axis sizes, other batches, stressed values) and their outputs
    version: ClassVar[int] = 3
    Params: ClassVar[type] = ReferenceParams
    # torch or onnxruntime is needed depending on the source format; the planner checks the
    # source's own step for those, so only numpy is a hard requirement here
    requires: ClassVar[tuple[str, ...]] = ("numpy",)

    @classmethod
    def runtimes(cls, params: Any = None) -> tuple[str, ...]:
        return runtime_requirements(getattr(params, "source_format", None))
    tools: ClassVar[tuple[str, ...]] = ("torch", "onnxruntime", "numpy")

    def run(self, params: ReferenceParams, ctx: StepContext) -> dict:
        specs = tuple(params.inputs)
        if "samples_file" in ctx.inputs:
            samples = load_samples(ctx.inputs["samples_file"], specs, params.axes)
            print(f"loaded {next(iter(samples.values())).shape[0]} samples from "
                  f"{ctx.inputs['samples_file'].name}", flush=True)
        elif params.generator:
            save_npz(ctx.out / SAMPLES_FILE, _call_generator(params))
            # the same checks as a user's samples file: names, dtypes, shapes
            samples = load_samples(ctx.out / SAMPLES_FILE, specs, params.axes)
            print(f"generated {params.count} samples with {params.generator} (seed {params.seed})", flush=True)
        else:
            samples = generate_samples(specs, params.count, params.seed, params.axes)
            print(f"generated {params.count} samples (seed {params.seed})", flush=True)
        save_npz(ctx.out / SAMPLES_FILE, samples)

        runner, strict_names = self._runner(params, ctx)
        outputs_info: dict[str, dict[str, Any]] = {}
        names: list[str] | None = None
        for b in params.batch_sizes:
            feeds = take_batch(samples, b)
            try:
                arrays = runner.run(feeds)
            except InputError:
                raise
            except Exception as e:  # the user's model rejected the user's inputs
                against = "the ONNX file's inputs" if params.source_format == "onnx" else "the model's forward"
                raise InputError(
                    f"source: the model raised on the recipe's inputs ({describe_feeds(feeds)}) "
                    f"at batch {b}: {describe_error(e)}; check inputs' names, "
                    f"dtypes and shapes against {against}") from e
            model_names = runner.output_names
            batch_names = resolve_output_names(params.outputs, model_names, len(arrays), strict_names)
            if names is not None and batch_names != names:
                raise InputError(f"outputs: the model returns {batch_names} at batch {b} but "
                                 f"{names} at batch {params.batch_sizes[0]}")
            names = batch_names
            arrays = order_by_name(names, model_names, arrays)
            save_npz(ctx.out / reference_file(b), dict(zip(names, arrays)))
            for n, a in zip(names, arrays):
                info = outputs_info.setdefault(n, {"name": n, "dtype": str(a.dtype), "shape_at_batch": {}})
                info["shape_at_batch"][str(b)] = list(a.shape)
            print(f"batch {b}: " + ", ".join(f"{n} {tuple(a.shape)}" for n, a in zip(names, arrays)),
                  flush=True)
        result = {
            "inputs": [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in specs],
            "outputs": list(outputs_info.values()),
            "count": int(next(iter(samples.values())).shape[0]),
            "flops": _count_flops(runner, samples, params.batch_sizes),
        }
        if params.probe is not None:
            result["probes"] = self._probes(params, specs, samples, runner, names or [], ctx)
        return result

    @staticmethod
    def _probes(params: ReferenceParams, specs: tuple[TensorSpec, ...], samples: Mapping[str, np.ndarray],
                runner: Any, names: list[str], ctx: StepContext) -> list[dict]:
        """Run the source on every probe feed; write the feeds, its outputs and ``probes.json``.

        A probe the source itself rejects (a size beyond its position table, a value outside its
        domain) is no input the deployed model will see: it is kept in the list, marked skipped,
        with the source's error, so the report says which shapes were not probed and why.
        """
        import json

        plan = probe_plan(specs, samples, params.probe)
        for probe in plan:
            feeds = probe_feeds(specs, samples, probe, params.seed)
            inputs_file, outputs_file = probe_files(ctx.out, probe["id"])
            try:
                arrays = runner.run(feeds)
                arrays = order_by_name(names, runner.output_names, arrays) if len(arrays) == len(names) else None
            except Exception as e:  # noqa: BLE001 - the source decides what it accepts
                probe["skipped"] = f"the source raised: {describe_error(e)}"
                arrays = None
            if arrays is None:
                probe.setdefault("skipped", "the source returned another number of outputs")
                print(f"probe {probe['label']}: skipped ({probe['skipped']})", flush=True)
                continue
            inputs_file.parent.mkdir(exist_ok=True)
            save_npz(inputs_file, feeds)
            save_npz(outputs_file, dict(zip(names, arrays)))
            print(f"probe {probe['label']}: " + ", ".join(f"{n} {tuple(a.shape)}" for n, a in zip(names, arrays)),
                  flush=True)
        (ctx.out / PROBES_FILE).write_text(json.dumps(plan, indent=1, sort_keys=True))
        return plan

    @staticmethod
    def _runner(params: ReferenceParams, ctx: StepContext) -> tuple[Any, bool]:
        """The source's runner and whether its output names are binding (ONNX graph outputs)."""
        names = [s.name for s in params.inputs]
        if params.source_format == "torch":
            if params.factory is None:
                raise ValueError("a torch source needs a factory")

            # dict outputs make the runner report names; those are binding too (strict)
            return TorchRunner(load_torch_model(params.factory, ctx.inputs.get("source")), names,
                               params.threads), True
        if params.source_format == "onnx":

            path = model_file(ctx.inputs["source"])
            # no graph rewrites: the reference must be the model exactly as the user gave it
            options = RuntimeOptions(intra_op_threads=params.threads, inter_op_threads=1,
                                     graph_level="disable")
            try:
                runner = OrtRunner(path, options)
            except Exception as e:
                raise InputError(f"source.onnx: {path.name} cannot be loaded by ONNX Runtime: "
                                 f"{first_line(e)}") from e
            missing = [n for n in runner.input_names if n not in names]
            if missing:
                raise InputError(f"inputs: {path.name} has input(s) {', '.join(missing)} that the "
                                 f"recipe does not declare (it declares {', '.join(names)})")
            return runner, True
        raise ValueError(f"source format '{params.source_format}' is not one of {SOURCE_FORMATS}")


__all__ = ["ReferenceFromSource", "ReferenceParams", "SAMPLES_FILE", "reference_file", "ProbeParams"]
