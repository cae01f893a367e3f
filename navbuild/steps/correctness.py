"""CheckCorrectness: run a variant at every batch size and compare its outputs with the reference under a tolerance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Mapping, Optional

from navbuild.lazy import lazy_import
from navbuild.runners import make_runner
from navbuild.runtime import RuntimeOptions, TorchFactory
from navbuild.samples import read_npz, take_batch
from navbuild.settings import REQUIRED, params_of, setting
from navbuild.steps.base import Step, StepContext, variant_runtimes
from navbuild.steps.common import describe_error, load_callable
from navbuild.steps.probes import load_probes, probe_files
from navbuild.steps.reference import SAMPLES_FILE, reference_file

np = lazy_import("numpy")

#: floor of the denominator of relative errors, so exact zeros in the reference do not divide by 0
_TINY = 1e-12


@dataclass
class MetricConfig:
    """The recipe's ``correctness.metric``: a user metric ``module:function(reference_outputs,
    variant_outputs, inputs) -> {name: value}`` and its pass condition on ``name`` (the worst value
    over batch sizes must satisfy min/max)."""

    function: str = setting(REQUIRED, doc="'module:function(reference_outputs, variant_outputs, inputs) -> "
                                          "{name: value}'")
    name: str = setting(REQUIRED, doc="the value the pass condition is on")
    min: Optional[float] = setting(None, doc="the worst value over batch sizes must be >= min")
    max: Optional[float] = setting(None, doc="the worst value over batch sizes must be <= max")
    replaces_tolerance: bool = setting(True, doc="the metric alone decides pass/fail (tolerance figures are "
                                                 "still reported)")


MetricSpec = params_of(MetricConfig, "MetricSpec", __name__)


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
    # scale-aware budget: + range_rtol x (the reference output's max - min) per element, and a
    # floor on every sample's cosine similarity (reduced precisions; 0 / None: off)
    range_rtol: float = 0.0
    cosine_min: float | None = None
    probe: bool = False             # also judge the reference's probes (other shapes) ...
    stress: bool = False            # ... and its stressed-values probe (exact-precision variants)


class CheckCorrectness(Step):
    """Compare a variant with the source at every batch size and on every probe; a mismatch is a ``fail`` verdict, not an error.

    Checking every batch size matters: an export that traced the batch size as a constant is
    right at batch 1 and wrong everywhere else. Probes do the same for every dynamic axis
    (sizes the samples do not have) and for values the samples do not exercise.
    """

    name: ClassVar[str] = "CheckCorrectness"
    # 3: probes, scale-aware budgets, an error (not zero figures) for a variant that raised
    version: ClassVar[int] = 3
    Params: ClassVar[type] = CorrectnessParams
    requires: ClassVar[tuple[str, ...]] = ("numpy",)

    @classmethod
    def runtimes(cls, params: Any = None) -> tuple[str, ...]:
        return variant_runtimes(params)
    tools: ClassVar[tuple[str, ...]] = ("torch", "onnxruntime", "numpy")

    def run(self, params: CorrectnessParams, ctx: StepContext) -> dict:

        ref_dir = ctx.inputs["reference"]
        samples = read_npz(ref_dir / SAMPLES_FILE)
        # the model's file or folder: each runner finds its own file in a folder (model.onnx, model.xml, ...)
        model_path = ctx.inputs.get("model")
        try:
            runner = make_runner(params.variant_format, model_path, params.factory,
                                 list(samples), params.runtime,
                                 source=ctx.inputs.get("source"))
        except Exception as e:  # a variant that cannot even load fails the check
            reason = f"load: {describe_error(e)}"
            print(f"FAIL {reason}", flush=True)
            return {"verdict": "fail", "reason": reason, "atol": params.atol, "rtol": params.rtol,
                    "batches": {}, "worst": _raised(reason)}

        return judge_runner(runner, params, ref_dir, samples)


def _raised(message: str) -> dict[str, Any]:
    """The worst figures of a variant that raised: none, and the error (never zero error, cosine 1)."""
    return {"max_abs": None, "max_rel": None, "cosine_min": None, "error": message}


def _cases(params: CorrectnessParams, ref_dir: Any, samples: Mapping[str, np.ndarray],
           max_batch: int | None) -> Iterator[tuple]:
    """(label, report key, is a probe, feeds, reference outputs) for each batch size, then each probe
    (those of at most ``max_batch`` rows, when a server caps the batch)."""
    for b in params.batch_sizes:
        yield f"batch {b}", str(b), False, take_batch(samples, b), read_npz(ref_dir / reference_file(b))
    if not params.probe:
        return
    for probe in load_probes(ref_dir):
        if probe.get("skipped") or (probe["kind"] == "stress" and not params.stress) or \
                (max_batch is not None and probe["batch"] > max_batch):
            continue
        inputs, outputs = probe_files(ref_dir, probe["id"])
        yield f"probe {probe['label']}", probe["id"], True, read_npz(inputs), read_npz(outputs)


def judge_runner(runner: Any, params: CorrectnessParams, ref_dir: Any, samples: Mapping[str, np.ndarray],
                 max_batch: int | None = None) -> dict:
    """Run ``runner`` at every batch size and probe of ``params`` and judge its outputs against the reference.

    The verdict of a correctness check; also how a model served by Triton is judged.
    """
    reasons: list[str] = []
    batches: dict[str, Any] = {}
    probes: dict[str, Any] = {}
    worst: dict[str, Any] = {"max_abs": 0.0, "max_rel": 0.0, "cosine_min": 1.0}
    raised: str | None = None
    metric_fn = load_callable(params.metric.function, "correctness.metric.function") if params.metric else None
    metric_values: dict[str, dict[str, float]] = {}
    labels: dict[str, str] = {}
    tolerance_reasons: list[str] = []
    for label, key, is_probe, feeds, reference in _cases(params, ref_dir, samples, max_batch):
        reports = probes if is_probe else batches
        labels[key] = label
        names = list(params.outputs) or list(reference)
        try:
            got = _named_outputs(runner, runner.run(feeds), list(reference))
        except Exception as e:
            msg = f"{label}: {describe_error(e)}"
            reasons.append(msg)
            reports[key] = {"error": msg}
            raised = raised or msg
            print(f"FAIL {msg}", flush=True)
            continue
        report: dict[str, Any] = {}
        for name in names:
            if name not in got:
                msg = f"{label}, output {name}: missing from the variant's outputs ({', '.join(got)})"
                report[name] = {"within_tolerance": False, "error": msg}
                reasons.append(msg)
                continue
            budget = _budget(params, name)
            m = compare(got[name], reference[name], **budget)
            report[name] = m
            if not m["within_tolerance"]:
                where = reasons if "max_abs" not in m else tolerance_reasons
                where.append(f"{label}, output {name}: {_describe_failure(m, **budget)}")
                if "max_abs" not in m:  # a wrong shape has no figures: show the error, not the other cases'
                    raised = raised or where[-1]
            if "max_abs" in m:
                worst["max_abs"] = max(worst["max_abs"], m["max_abs"])
                worst["max_rel"] = max(worst["max_rel"], m["max_rel"])
                worst["cosine_min"] = min(worst["cosine_min"], m["cosine_min"])
            status = "ok" if m["within_tolerance"] else "OUT"
            print(f"{label}, output {name}: {status} max_abs {m.get('max_abs', float('nan')):.3g} "
                  f"max_rel {m.get('max_rel', float('nan')):.3g} "
                  f"cosine_min {m.get('cosine_min', float('nan')):.6f}", flush=True)
        reports[key] = report
        if metric_fn is not None:
            try:
                values = metric_fn(reference_outputs=dict(reference), variant_outputs=got, inputs=feeds)
                metric_values[key] = {k: float(v) for k, v in dict(values).items()}
            except Exception as e:  # noqa: BLE001 - a metric that breaks fails the check, visibly
                reasons.append(f"{label}: metric {params.metric.function} raised {describe_error(e)}")

    metric_report = None
    if params.metric is not None and metric_values:
        metric_report, problem = judge_metric(params.metric, metric_values, labels)
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
    pass_rate = _pass_rate({**batches, **{f"probe:{k}": v for k, v in probes.items()}})
    if raised is not None:  # figures of the runs that worked would read as "no error": show the error
        worst = _raised(raised)
    return {"verdict": verdict, "reason": reason, "atol": params.atol, "rtol": params.rtol,
            "range_rtol": params.range_rtol, "cosine_min": params.cosine_min,
            "precision": params.precision, "batches": batches, "probes": probes,
            # probes the source itself rejected (beyond what the model accepts): not checked, and why
            "probes_skipped": {p["id"]: p["skipped"] for p in (load_probes(ref_dir) if params.probe else [])
                               if p.get("skipped")},
            "worst": {**worst, "tolerance_pass_rate": pass_rate}, "metric": metric_report,
            "tolerance_verdict": "fail" if tolerance_reasons else "pass"}


def _budget(params: CorrectnessParams, output: str) -> dict[str, Any]:
    """The budget of one output: the precision's, with the recipe's per-output overrides on top."""
    tol = params.output_tolerances.get(output, {})
    cosine = tol.get("cosine_min", params.cosine_min)
    return {"atol": float(tol.get("atol", params.atol)), "rtol": float(tol.get("rtol", params.rtol)),
            "range_rtol": float(tol.get("range_rtol", params.range_rtol)),
            "cosine_min": None if cosine is None else float(cosine)}


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


def judge_metric(spec: MetricSpec, values: dict[str, dict[str, float]],
                 labels: Mapping[str, str]) -> tuple[dict, str | None]:
    """The worst value of ``spec.name`` over batch sizes and probes and the problem when it misses the
    condition (None: it meets it); also how an accuracy-aware search judges a trial's metric values."""
    named = {b: v[spec.name] for b, v in values.items() if spec.name in v}
    report: dict[str, Any] = {"name": spec.name, "min": spec.min, "max": spec.max, "per_batch": values}
    if not named:
        return report, f"metric {spec.function} returned no value named '{spec.name}'"
    worst_low, worst_high = min(named.values()), max(named.values())
    report["worst"] = worst_low if spec.min is not None or spec.max is None else worst_high
    if spec.min is not None and worst_low < spec.min:
        b = min(named, key=named.get)
        return report, f"{labels.get(b, b)}: {spec.name} {worst_low:.6g} < {spec.min:g}"
    if spec.max is not None and worst_high > spec.max:
        b = max(named, key=named.get)
        return report, f"{labels.get(b, b)}: {spec.name} {worst_high:.6g} > {spec.max:g}"
    return report, None


def _named_outputs(runner: Any, arrays: list[np.ndarray], reference_names: list[str]) -> dict[str, np.ndarray]:
    """Key the variant's outputs by name: by the runner's names when they match the reference, else by position."""
    names = getattr(runner, "output_names", None)
    if names is not None and set(reference_names) <= set(names):
        return dict(zip(names, arrays))
    return dict(zip(reference_names, arrays))


def compare(actual: np.ndarray, expected: np.ndarray, atol: float, rtol: float, range_rtol: float = 0.0,
            cosine_min: float | None = None) -> dict[str, Any]:
    """Tolerance metrics of ``actual`` against ``expected``.

    An element is within budget when |a-e| <= atol + rtol*|e| + range_rtol*scale, where scale is
    the reference output's range (max - min; its largest magnitude if it is constant): a budget
    that follows the output's own scale, so 0.001 probabilities cannot be 100% off inside it and
    logits of range 100 are not failed for an error of 0.2. With ``cosine_min`` every sample's
    cosine similarity must reach it too. Cosine similarity is per sample (each row flattened),
    so one bad row in a batch is visible in ``cosine_min`` instead of being averaged away.
    """
    if tuple(actual.shape) != tuple(expected.shape):
        return {"within_tolerance": False, "shape": list(actual.shape),
                "expected_shape": list(expected.shape),
                "error": f"shape {tuple(actual.shape)} != reference {tuple(expected.shape)}"}
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    if a.size == 0:
        return {"within_tolerance": True, "max_abs": 0.0, "max_rel": 0.0, "out_fraction": 0.0,
                "cosine_min": 1.0, "cosine_mean": 1.0, "shape": list(a.shape), "scale": 0.0}
    diff = np.abs(a - e)
    # NaN/inf in one and not the other is a mismatch; identical non-finite values are not
    same = (a == e) | (np.isnan(a) & np.isnan(e))
    diff = np.where(same, 0.0, diff)
    diff = np.where(np.isnan(diff), np.inf, diff)
    finite = e[np.isfinite(e)]
    scale = float(finite.max() - finite.min()) if finite.size else 0.0
    if scale == 0.0 and finite.size:
        scale = float(np.abs(finite).max())
    within = diff <= atol + rtol * np.abs(np.where(np.isfinite(e), e, 0.0)) + range_rtol * scale
    rel = diff / np.maximum(np.abs(e), _TINY)
    cos = _cosine_rows(a, e)
    out_fraction = float(1.0 - within.mean())
    cosine_ok = cosine_min is None or float(cos.min()) >= cosine_min
    return {"within_tolerance": bool(within.all()) and cosine_ok, "max_abs": float(diff.max()),
            "max_rel": float(np.nan_to_num(rel, nan=np.inf).max()), "out_fraction": out_fraction,
            "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()), "shape": list(a.shape),
            "scale": scale}


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


def budget_ratio(m: Mapping[str, Any], atol: float, range_rtol: float = 0.0,
                 cosine_min: float | None = None) -> float:
    """How much of its budget one :func:`compare` report spends: at most 1 within budget, above 1 out of it.

    The largest of ``max_abs / (atol + range_rtol * scale)`` and, with a cosine floor,
    ``(1 - cosine_min) / (1 - floor)``. The ``rtol * |reference|`` term is left out (it is per element
    and the report keeps only the largest error), so this reads a report as at least as far out of
    budget as ``compare`` itself: a ratio <= 1 is within budget. A report without figures (a wrong
    shape) is infinitely out.
    """
    if "max_abs" not in m:
        return float("inf")
    limit = atol + range_rtol * float(m.get("scale", 0.0))
    ratios = [m["max_abs"] / limit if limit > 0 else (0.0 if m["max_abs"] == 0 else float("inf"))]
    if cosine_min is not None:
        slack = 1.0 - cosine_min
        spent = 1.0 - m["cosine_min"]
        ratios.append(spent / slack if slack > 0 else (0.0 if spent <= 0 else float("inf")))
    return max(ratios)


def _describe_failure(m: dict[str, Any], atol: float, rtol: float, range_rtol: float = 0.0,
                      cosine_min: float | None = None) -> str:
    if "max_abs" not in m:
        return str(m.get("error", "mismatch"))
    budget = f"atol {atol:g} + rtol {rtol:g}"
    if range_rtol:
        budget += f" + {range_rtol:g} of the output's range {m.get('scale', 0.0):.3g}"
    parts = []
    if m["out_fraction"] > 0:
        parts.append(f"max_abs {m['max_abs']:.3g} > {budget} ({100 * m['out_fraction']:.3g}% of elements out)")
    if cosine_min is not None and m["cosine_min"] < cosine_min:
        parts.append(f"cosine_min {m['cosine_min']:.6f} < {cosine_min:g}")
    return "; ".join(parts) or "mismatch"


__all__ = ["CheckCorrectness", "CorrectnessParams", "MetricConfig", "MetricSpec", "compare", "judge_runner",
           "judge_metric", "budget_ratio"]
