"""CheckCorrectness: run a variant at every batch size and compare its outputs with the reference under a tolerance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np

from navbuild.samples import read_npz, take_batch
from navbuild.steps.base import Step, StepContext, variant_runtimes
from navbuild.steps.common import RuntimeOptions, TorchFactory, first_line, load_callable
from navbuild.steps.reference import SAMPLES_FILE, reference_file

#: floor of the denominator of relative errors, so exact zeros in the reference do not divide by 0
_TINY = 1e-12


@dataclass(frozen=True)
class MetricSpec:
    """A user metric ``module:function(reference_outputs, variant_outputs, inputs) -> {name: value}``
    and the pass condition on ``name``: the worst value over batch sizes within [min, max]."""

    function: str
    name: str
    min: float | None = None
    max: float | None = None
    replaces_tolerance: bool = True  # the metric alone decides (tolerance figures still reported)


@dataclass(frozen=True)
class CorrectnessParams:
    variant_format: str             # a runner format: "torch" | "onnx" | "openvino" | ...
    factory: TorchFactory | None    # for variants that run the source
    outputs: tuple[str, ...]        # outputs to compare; empty = every reference output
    batch_sizes: tuple[int, ...]
    atol: float                     # the variant's precision's tolerance ...
    rtol: float
    runtime: RuntimeOptions
    precision: str = "fp32"
    output_tolerances: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # ... per output
    metric: MetricSpec | None = None


class CheckCorrectness(Step):
    """Compare a variant with the source at every batch size; a mismatch is a ``fail`` verdict, not an error.

    Checking every batch size matters: an export that traced the batch size as a constant is
    right at batch 1 and wrong everywhere else.
    """

    name: ClassVar[str] = "CheckCorrectness"
    version: ClassVar[int] = 2
    Params: ClassVar[type] = CorrectnessParams
    requires: ClassVar[tuple[str, ...]] = ("numpy",)

    @classmethod
    def runtimes(cls, params: Any = None) -> tuple[str, ...]:
        return variant_runtimes(params)
    tools: ClassVar[tuple[str, ...]] = ("torch", "onnxruntime", "numpy")

    def run(self, params: CorrectnessParams, ctx: StepContext) -> dict:
        from navbuild.runners import make_runner

        ref_dir = ctx.inputs["reference"]
        samples = read_npz(ref_dir / SAMPLES_FILE)
        # the model's file or folder: each runner finds its own file in a folder (model.onnx, model.xml, ...)
        model_path = ctx.inputs.get("model")
        try:
            runner = make_runner(params.variant_format, model_path, params.factory,
                                 list(samples), params.runtime,
                                 source=ctx.inputs.get("source"))
        except Exception as e:  # a variant that cannot even load fails the check
            reason = f"load: {type(e).__name__}: {first_line(e)}"
            print(f"FAIL {reason}", flush=True)
            return {"verdict": "fail", "reason": reason, "atol": params.atol, "rtol": params.rtol,
                    "batches": {}, "worst": {"max_abs": 0.0, "max_rel": 0.0, "cosine_min": 1.0}}

        return judge_runner(runner, params, ref_dir, samples)


def judge_runner(runner: Any, params: CorrectnessParams, ref_dir: Any, samples: Mapping[str, np.ndarray]) -> dict:
    """Run ``runner`` at every batch size of ``params`` and judge its outputs against the reference.

    The verdict of a correctness check; also how a model served by Triton is judged.
    """
    reasons: list[str] = []
    batches: dict[str, Any] = {}
    worst = {"max_abs": 0.0, "max_rel": 0.0, "cosine_min": 1.0}
    metric_fn = load_callable(params.metric.function, "correctness.metric.function") if params.metric else None
    metric_values: dict[str, dict[str, float]] = {}
    tolerance_reasons: list[str] = []
    for b in params.batch_sizes:
        reference = read_npz(ref_dir / reference_file(b))
        names = list(params.outputs) or list(reference)
        feeds = take_batch(samples, b)
        try:
            got = _named_outputs(runner, runner.run(feeds), list(reference))
        except Exception as e:
            msg = f"batch {b}: {type(e).__name__}: {first_line(e)}"
            reasons.append(msg)
            batches[str(b)] = {"error": msg}
            print(f"FAIL {msg}", flush=True)
            continue
        batch_report: dict[str, Any] = {}
        for name in names:
            if name not in got:
                msg = f"batch {b}, output {name}: missing from the variant's outputs ({', '.join(got)})"
                batch_report[name] = {"within_tolerance": False, "error": msg}
                reasons.append(msg)
                continue
            tol = params.output_tolerances.get(name, {})
            atol, rtol = float(tol.get("atol", params.atol)), float(tol.get("rtol", params.rtol))
            m = compare(got[name], reference[name], atol, rtol)
            batch_report[name] = m
            if not m["within_tolerance"]:
                where = reasons if "max_abs" not in m else tolerance_reasons
                where.append(f"batch {b}, output {name}: {_describe_failure(m, atol, rtol)}")
            if "max_abs" in m:
                worst["max_abs"] = max(worst["max_abs"], m["max_abs"])
                worst["max_rel"] = max(worst["max_rel"], m["max_rel"])
                worst["cosine_min"] = min(worst["cosine_min"], m["cosine_min"])
            status = "ok" if m["within_tolerance"] else "OUT"
            print(f"batch {b}, output {name}: {status} max_abs {m.get('max_abs', float('nan')):.3g} "
                  f"max_rel {m.get('max_rel', float('nan')):.3g} "
                  f"cosine_min {m.get('cosine_min', float('nan')):.6f}", flush=True)
        batches[str(b)] = batch_report
        if metric_fn is not None:
            try:
                values = metric_fn(reference_outputs=dict(reference), variant_outputs=got, inputs=feeds)
                metric_values[str(b)] = {k: float(v) for k, v in dict(values).items()}
            except Exception as e:  # noqa: BLE001 - a metric that breaks fails the check, visibly
                reasons.append(f"batch {b}: metric {params.metric.function} raised "
                               f"{type(e).__name__}: {first_line(e)}")

    metric_report = None
    if params.metric is not None and metric_values:
        metric_report, problem = _judge_metric(params.metric, metric_values)
        if problem:
            reasons.append(problem)
        print(f"metric {params.metric.name}: worst {metric_report.get('worst')}", flush=True)
    if params.metric is None or not params.metric.replaces_tolerance:
        reasons.extend(tolerance_reasons)
    verdict = "fail" if reasons else "pass"
    reason = reasons[0] if reasons else ""
    if len(reasons) > 1:
        reason += f" (and {len(reasons) - 1} more)"
    print(f"verdict: {verdict}{': ' + reason if reason else ''}", flush=True)
    pass_rate = _pass_rate(batches)
    return {"verdict": verdict, "reason": reason, "atol": params.atol, "rtol": params.rtol,
            "precision": params.precision, "batches": batches,
            "worst": {**worst, "tolerance_pass_rate": pass_rate}, "metric": metric_report,
            "tolerance_verdict": "fail" if tolerance_reasons else "pass"}


def _pass_rate(batches: dict[str, Any]) -> float:
    """Fraction of compared elements within atol/rtol, over every batch and output (element-weighted)."""
    inside = total = 0.0
    for report in batches.values():
        for m in report.values() if isinstance(report, dict) else ():
            if isinstance(m, dict) and "out_fraction" in m:
                n = float(np.prod(m["shape"])) if m.get("shape") else 1.0
                total += n
                inside += n * (1.0 - m["out_fraction"])
    return inside / total if total else 0.0


def _judge_metric(spec: MetricSpec, values: dict[str, dict[str, float]]) -> tuple[dict, str | None]:
    """The worst value of ``spec.name`` over batch sizes and whether it meets the condition."""
    named = {b: v[spec.name] for b, v in values.items() if spec.name in v}
    report: dict[str, Any] = {"name": spec.name, "min": spec.min, "max": spec.max, "per_batch": values}
    if not named:
        return report, f"metric {spec.function} returned no value named '{spec.name}'"
    worst_low, worst_high = min(named.values()), max(named.values())
    report["worst"] = worst_low if spec.min is not None or spec.max is None else worst_high
    if spec.min is not None and worst_low < spec.min:
        b = min(named, key=named.get)
        return report, f"batch {b}: {spec.name} {worst_low:.6g} < {spec.min:g}"
    if spec.max is not None and worst_high > spec.max:
        b = max(named, key=named.get)
        return report, f"batch {b}: {spec.name} {worst_high:.6g} > {spec.max:g}"
    return report, None


def _named_outputs(runner: Any, arrays: list[np.ndarray], reference_names: list[str]) -> dict[str, np.ndarray]:
    """Key the variant's outputs by name: by the runner's names when they match the reference, else by position."""
    names = getattr(runner, "output_names", None)
    if names is not None and set(reference_names) <= set(names):
        return dict(zip(names, arrays))
    return dict(zip(reference_names, arrays))


def compare(actual: np.ndarray, expected: np.ndarray, atol: float, rtol: float) -> dict[str, Any]:
    """Tolerance metrics of ``actual`` against ``expected`` (allclose: |a-e| <= atol + rtol*|e|).

    Cosine similarity is per sample (each row flattened), so one bad row in a batch is visible
    in ``cosine_min`` instead of being averaged away.
    """
    if tuple(actual.shape) != tuple(expected.shape):
        return {"within_tolerance": False, "shape": list(actual.shape),
                "expected_shape": list(expected.shape),
                "error": f"shape {tuple(actual.shape)} != reference {tuple(expected.shape)}"}
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    if a.size == 0:
        return {"within_tolerance": True, "max_abs": 0.0, "max_rel": 0.0, "out_fraction": 0.0,
                "cosine_min": 1.0, "cosine_mean": 1.0, "shape": list(a.shape)}
    diff = np.abs(a - e)
    # NaN/inf in one and not the other is a mismatch; identical non-finite values are not
    same = (a == e) | (np.isnan(a) & np.isnan(e))
    diff = np.where(same, 0.0, diff)
    diff = np.where(np.isnan(diff), np.inf, diff)
    within = diff <= atol + rtol * np.abs(np.where(np.isfinite(e), e, 0.0))
    rel = diff / np.maximum(np.abs(e), _TINY)
    cos = _cosine_rows(a, e)
    out_fraction = float(1.0 - within.mean())
    return {"within_tolerance": bool(within.all()), "max_abs": float(diff.max()),
            "max_rel": float(np.nan_to_num(rel, nan=np.inf).max()), "out_fraction": out_fraction,
            "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()), "shape": list(a.shape)}


def _cosine_rows(a: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Cosine similarity of each sample (row of dim 0) flattened; two all-zero rows count as 1."""
    if a.ndim == 0:
        a, e = a.reshape(1, 1), e.reshape(1, 1)
    a2 = np.nan_to_num(a.reshape(a.shape[0], -1), nan=0.0, posinf=0.0, neginf=0.0)
    e2 = np.nan_to_num(e.reshape(e.shape[0], -1), nan=0.0, posinf=0.0, neginf=0.0)
    na = np.linalg.norm(a2, axis=1)
    ne = np.linalg.norm(e2, axis=1)
    dot = (a2 * e2).sum(axis=1)
    both_zero = (na == 0) & (ne == 0)
    cos = dot / np.maximum(na * ne, _TINY)
    return np.where(both_zero, 1.0, np.clip(cos, -1.0, 1.0))


def _describe_failure(m: dict[str, Any], atol: float, rtol: float) -> str:
    if "max_abs" not in m:
        return str(m.get("error", "mismatch"))
    return (f"max_abs {m['max_abs']:.3g} > atol {atol:g} + rtol {rtol:g} "
            f"({100 * m['out_fraction']:.3g}% of elements out)")


__all__ = ["CheckCorrectness", "CorrectnessParams", "MetricSpec", "compare", "judge_runner"]
