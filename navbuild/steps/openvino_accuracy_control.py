"""OpenVinoQuantizedAccuracyAware: NNCF int8 quantization with accuracy control, the recipe's budget as its validation."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Optional

from navbuild.lazy import lazy_import
from navbuild.runners.openvino_runner import ir_size, numpy_dtype, port_name, read_model, save_ir
from navbuild.samples import read_npz, take_batch
from navbuild.settings import params_of
from navbuild.steps.base import Step, StepContext
from navbuild.steps.common import load_callable
from navbuild.steps.correctness import MetricSpec, budget_ratio, compare
from navbuild.steps.openvino_quantized import (OpenVinoQuantConfig, calibration_batches, check_quant_params,
                                               nothing_quantized)
from navbuild.steps.reference import SAMPLES_FILE, reference_file

np = lazy_import("numpy")

#: NNCF's log line that names the operations it reverted to floating point (one per line after it)
_REVERTED = re.compile(r"Reverted (\d+) operations to the floating-point precision:\s*\n(.*)", re.S)


@dataclass(frozen=True)
class _Budget:
    """The budget the quantized model must meet, as the correctness check of its precision judges it."""

    outputs: tuple[str, ...]                 # outputs judged; empty = every reference output
    batch_sizes: tuple[int, ...]             # the validation items: the samples at each batch size
    atol: float
    range_rtol: float
    cosine_min: Optional[float]
    output_tolerances: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    metric: Optional[MetricSpec] = None
    max_iterations: int = 8                  # NNCF's max_num_iterations (quantization.accuracy_aware.max_trials)


OpenVinoAccuracyAwareParams = params_of(OpenVinoQuantConfig, "OpenVinoAccuracyAwareParams", __name__,
                                        bases=(_Budget,))


class OpenVinoQuantizedAccuracyAware(Step):
    """``nncf.quantize_with_accuracy_control`` on the fp32 IR: quantize like openvino-int8, then revert the
    operations whose quantization costs the most accuracy to float, one group at a time, until the budget
    is met.

    The validation function runs the compiled model on the samples at every batch size and scores it
    against the reference outputs: with a recipe metric, its worst value over the batch sizes (negated
    when the metric has a ``max``, since NNCF's metric is higher-is-better); else minus the worst error
    ratio (:func:`navbuild.steps.correctness.budget_ratio`: <= 1 within the precision's budget). NNCF
    bounds the absolute drop from the fp32 model's own score, so ``max_drop`` = the fp32 model's score
    minus the budget's bound (``metric.min``; ``-metric.max``; -1 for the error ratio), measured here
    with the same function before quantizing. NNCF's trials (each reverted group, validated) happen
    inside this one step: they are not cached targets, and the key holds the budget.
    """

    name: ClassVar[str] = "OpenVinoQuantizedAccuracyAware"
    version: ClassVar[int] = 1
    Params: ClassVar[type] = OpenVinoAccuracyAwareParams
    requires: ClassVar[tuple[str, ...]] = ("openvino", "nncf")
    tools: ClassVar[tuple[str, ...]] = ("openvino", "nncf", "numpy")

    def run(self, params: Any, ctx: StepContext) -> dict:
        check_quant_params(params)
        import nncf
        import openvino as ov

        ref_dir = ctx.inputs["reference"]
        model = read_model(ctx.inputs["openvino"])
        score, bound = validation(params, model, ref_dir)
        initial = score(ov.Core().compile_model(model, "CPU"), range(len(params.batch_sizes)))[0]
        max_drop = initial - bound
        print(f"fp32 model's score {initial:.6g}; the budget's bound {bound:.6g}: max_drop {max_drop:.6g}",
              flush=True)
        if max_drop <= 0:
            raise RuntimeError(f"the fp32 model itself scores {initial:.6g}, not better than the budget's bound "
                               f"{bound:.6g}: no quantized model can meet it; widen the budget")
        batches = calibration_batches(model, ref_dir / SAMPLES_FILE)
        with _nncf_log() as log:
            quantized = nncf.quantize_with_accuracy_control(
                model, nncf.Dataset(batches), nncf.Dataset(list(range(len(params.batch_sizes)))),
                validation_fn=score, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE,
                preset=getattr(nncf.QuantizationPreset, params.preset.upper()),
                subset_size=params.subset_size, fast_bias_correction=params.fast_bias_correction,
                model_type=nncf.ModelType.TRANSFORMER if params.model_type == "transformer" else None,
                ignored_scope=(nncf.IgnoredScope(patterns=list(params.ignored_patterns))
                               if params.ignored_patterns else None),
                advanced_accuracy_restorer_parameters=nncf.AdvancedAccuracyRestorerParameters(
                    max_num_iterations=params.max_iterations))
        fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
        if fake_quantize == 0:
            raise nothing_quantized("nncf.quantize_with_accuracy_control left no FakeQuantize node", model,
                                    "openvino.quantization.ignored_patterns / the budget")
        final = score(ov.Core().compile_model(quantized, "CPU"), range(len(params.batch_sizes)))[0]
        kept = reverted_operations(log)
        print(f"{fake_quantize} FakeQuantize node(s); {len(kept)} operation(s) kept in float: "
              f"{', '.join(kept) or 'none'}; score {final:.6g}", flush=True)
        save_ir(quantized, ctx.out)
        return {"preset": params.preset, "fake_quantize": fake_quantize, "size_bytes": ir_size(ctx.out),
                "kept_fp32": kept, "trials": sum(1 for line in log if _REVERTED.search(line)),
                "score": {"fp32": initial, "int8": final, "bound": bound, "max_drop": max_drop},
                "budget_met": final >= bound}


def validation(params: Any, model: Any, ref_dir: Any) -> tuple[Callable[[Any, Any], tuple[float, list]], float]:
    """NNCF's validation function for the budget of ``params`` and the bound its score must reach.

    Items are indexes of the batch sizes; the score of a set of items is their worst (higher is better).
    """
    samples = read_npz(ref_dir / SAMPLES_FILE)
    dtypes = {port_name(p, f"input_{i}"): numpy_dtype(p.get_element_type()) for i, p in enumerate(model.inputs)}
    cases = []
    for b in params.batch_sizes:
        feeds = take_batch({n: samples[n] for n in dtypes}, b)
        cases.append(({n: a if dtypes[n] is None else a.astype(dtypes[n]) for n, a in feeds.items()},
                      read_npz(ref_dir / reference_file(b))))
    metric = params.metric
    metric_fn = load_callable(metric.function, "correctness.metric.function") if metric else None
    sign = -1.0 if metric is not None and metric.min is None else 1.0

    def score_one(compiled: Any, i: int) -> float:
        feeds, reference = cases[i]
        result = compiled(feeds)
        names = [port_name(p, "") for p in compiled.outputs]
        arrays = [np.asarray(result[p]) for p in compiled.outputs]
        got = (dict(zip(names, arrays)) if set(reference) <= set(names) else dict(zip(reference, arrays)))
        if metric_fn is not None:
            values = metric_fn(reference_outputs=dict(reference), variant_outputs=got, inputs=feeds)
            return sign * float(dict(values)[metric.name])
        ratio = 0.0
        for name in list(params.outputs) or list(reference):
            tol = {"atol": params.atol, "range_rtol": params.range_rtol, "cosine_min": params.cosine_min,
                   **params.output_tolerances.get(name, {})}
            m = compare(got[name], reference[name], 0.0, 0.0)
            ratio = max(ratio, budget_ratio(m, float(tol["atol"]), float(tol["range_rtol"]), tol["cosine_min"]))
        return -ratio

    def score(compiled: Any, items: Any) -> tuple[float, list[float]]:
        each = [score_one(compiled, int(i)) for i in items]
        return min(each), each

    if metric is None:
        bound = -1.0
    else:
        bound = metric.min if metric.min is not None else -metric.max
    return score, bound


def reverted_operations(log: list[str]) -> list[str]:
    """The operations NNCF reverted to float, from its log (each ``Reverted N operations`` message)."""
    kept: list[str] = []
    for message in log:
        if (m := _REVERTED.search(message)):
            kept += [line.strip() for line in m.group(2).splitlines() if line.strip()]
    return list(dict.fromkeys(kept))


class _nncf_log:
    """Collect NNCF's log messages for the block (NNCF reports what it reverted only there)."""

    def __enter__(self) -> list[str]:
        self.messages: list[str] = []
        self.handler = _Collect(self.messages)
        self.logger = logging.getLogger("nncf")
        self.logger.addHandler(self.handler)
        return self.messages

    def __exit__(self, *exc: Any) -> None:
        self.logger.removeHandler(self.handler)


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.INFO)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


__all__ = ["OpenVinoQuantizedAccuracyAware", "OpenVinoAccuracyAwareParams", "validation", "reverted_operations"]
