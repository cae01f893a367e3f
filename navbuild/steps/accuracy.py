"""MeasureAccuracy: a model's error figures against the reference, with no verdict (an accuracy-aware search's trial)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from navbuild.runners import make_runner
from navbuild.runtime import RuntimeOptions
from navbuild.samples import read_npz
from navbuild.settings import setting
from navbuild.steps.base import Step, StepContext, variant_runtimes
from navbuild.steps.correctness import CorrectnessParams, MetricSpec, judge_runner
from navbuild.steps.reference import SAMPLES_FILE


@dataclass
class AccuracyAwareConfig:
    """The recipe's ``quantization.accuracy_aware``: the search of onnx-int8-aa and openvino-int8-aa over
    how many of the layers that drift most stay in fp32."""

    max_trials: int = setting(8, minimum=1, doc="trials (a conversion and its accuracy measurement each) the "
                                                "search may spend; the best passing one found by then is chosen")


@dataclass(frozen=True)
class AccuracyParams:
    """What is measured, never the budget: widening or narrowing the budget reuses every measurement."""

    variant_format: str                    # the runner format of the model ("onnx")
    outputs: tuple[str, ...]               # outputs compared; empty = every reference output
    batch_sizes: tuple[int, ...]
    runtime: RuntimeOptions
    metric_function: Optional[str] = None  # the recipe's correctness.metric.function, when it has one
    metric_name: Optional[str] = None


class MeasureAccuracy(Step):
    """Run a model at every batch size and record its error figures against the reference (max abs error,
    the output's range, cosine per output; the recipe's metric values), through the correctness check's own
    comparison (``judge_runner`` with a zero budget), and no verdict: the search compares them with the budget.
    """

    name: ClassVar[str] = "MeasureAccuracy"
    version: ClassVar[int] = 1
    Params: ClassVar[type] = AccuracyParams
    requires: ClassVar[tuple[str, ...]] = ("numpy",)
    tools: ClassVar[tuple[str, ...]] = ("numpy",)

    @classmethod
    def runtimes(cls, params: AccuracyParams | None = None) -> tuple[str, ...]:
        return variant_runtimes(params)

    def run(self, params: AccuracyParams, ctx: StepContext) -> dict:
        ref_dir = ctx.inputs["reference"]
        samples = read_npz(ref_dir / SAMPLES_FILE)
        runner = make_runner(params.variant_format, ctx.inputs["model"], None, list(samples), params.runtime)
        metric = (None if params.metric_function is None else
                  MetricSpec(function=params.metric_function, name=params.metric_name, min=None, max=None,
                             replaces_tolerance=False))
        judged = judge_runner(runner, CorrectnessParams(
            variant_format=params.variant_format, factory=None, outputs=params.outputs,
            batch_sizes=params.batch_sizes, atol=0.0, rtol=0.0, runtime=params.runtime, metric=metric), ref_dir,
            samples)
        # a zero budget fails every inexact model: the verdict is not this step's to give
        return {"batches": judged["batches"], "worst": judged["worst"], "metric": judged["metric"]}


__all__ = ["MeasureAccuracy", "AccuracyParams", "AccuracyAwareConfig"]
