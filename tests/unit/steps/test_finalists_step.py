"""CompareFinalists: real worker processes timed in alternation, each turn opened by untimed runs."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Callable

import pytest

from navbuild.steps.base import StepContext
from navbuild.runtime import RuntimeOptions
from navbuild.steps.finalists import CompareFinalists, FinalistSpec, FinalistsParams

from tests.unit.steps.conftest import factory

pytest.importorskip("onnxruntime")


def test_each_turn_is_warmed_then_timed_and_rounds_are_paired(
        tmp_path: Path, make_reference: Callable[..., Path], make_onnx: Callable[..., Path]) -> None:
    one = RuntimeOptions(intra_op_threads=1)
    specs = (FinalistSpec("torch", "torch", one, factory("tiny_mlp"), "source"),
             FinalistSpec("onnx", "onnx", one, None, "model-onnx"))
    params = FinalistsParams(finalists=specs, batch_size=4, rounds=3, iters=2, pin_cores=False, warmup=2)
    out = tmp_path / "finalists"
    out.mkdir()
    result = CompareFinalists().run(params, StepContext(
        inputs={"reference": make_reference(), "model-onnx": make_onnx()}, out=out))
    assert (result["rounds"], result["iters"], result["warmup"]) == (3, 2, 2)
    for variant in ("torch", "onnx"):
        figures = result["variants"][variant]
        assert len(figures["rounds_ms"]) == 3 and all(t > 0 for t in figures["rounds_ms"])
        assert figures["throughput"] == pytest.approx(4 / (figures["latency_ms"] / 1000.0))
    # the conditions the rounds ran under (mostly pauses between turns for a model this small)
    cond = result["conditions"]
    assert cond["seconds"] > 0 and cond["own_cores"] >= 0 and cond["background_cores"] >= 0



@pytest.mark.parametrize("calls", [0, 5])  # dies while loading; dies in its first timed turn
def test_a_worker_that_dies_fails_the_step_by_name_instead_of_hanging(
        tmp_path: Path, make_reference: Callable[..., Path], make_onnx: Callable[..., Path], calls: int) -> None:
    one = RuntimeOptions(intra_op_threads=1)
    specs = (FinalistSpec("onnx", "onnx", one, None, "model-onnx"),
             FinalistSpec("torch", "torch", one, factory("exits_after", calls=calls), "source"))
    params = FinalistsParams(finalists=specs, batch_size=4, rounds=3, iters=2, pin_cores=False, warmup=0)
    out = tmp_path / "finalists"
    out.mkdir()
    with pytest.raises(RuntimeError, match=r"finalist torch: its worker process died \(exit code 3\)"):
        CompareFinalists().run(params, StepContext(
            inputs={"reference": make_reference(), "model-onnx": make_onnx()}, out=out))
    assert multiprocessing.active_children() == []  # the healthy worker was stopped too
