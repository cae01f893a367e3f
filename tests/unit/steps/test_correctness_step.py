"""Tests of CheckCorrectness: a good export passes; a batch-1-only export fails at batch 4, not at batch 1."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from navbuild.steps.base import StepContext
from navbuild.runtime import RuntimeOptions, TorchFactory
from navbuild.steps.correctness import CheckCorrectness, compare


def _check(tmp_path: Path, inputs: dict[str, Path], variant_format: str = "onnx",
           factory: TorchFactory | None = None, batch_sizes: tuple[int, ...] = (1, 4),
           atol: float = 1e-5, rtol: float = 1e-4, outputs: tuple[str, ...] = ()) -> dict:
    params = CheckCorrectness.Params(variant_format=variant_format, factory=factory, outputs=outputs,
                                     batch_sizes=batch_sizes, atol=atol, rtol=rtol,
                                     runtime=RuntimeOptions(intra_op_threads=1))
    out = tmp_path / "check"
    out.mkdir(exist_ok=True)
    return CheckCorrectness().run(params, StepContext(inputs=inputs, out=out))


def test_good_export_passes(tmp_path: Path, make_reference: Callable[..., Path],
                            make_onnx: Callable[..., Path]) -> None:
    result = _check(tmp_path, {"model": make_onnx(), "reference": make_reference()})
    assert result["verdict"] == "pass" and result["reason"] == ""
    assert set(result["batches"]) == {"1", "4"}
    m = result["batches"]["4"]["y"]
    assert m["within_tolerance"] and m["max_abs"] <= 1e-5 and m["out_fraction"] == 0.0
    assert m["cosine_min"] > 0.999999 and m["shape"] == [4, 4]
    assert result["worst"]["cosine_min"] == pytest.approx(1.0, abs=1e-6)


def test_torch_variant_passes_exactly(tmp_path: Path, make_reference: Callable[..., Path]) -> None:
    result = _check(tmp_path, {"reference": make_reference()}, variant_format="torch",
                    factory=TorchFactory("tests.models:tiny_mlp", {}), atol=0.0, rtol=0.0)
    assert result["verdict"] == "pass"
    assert result["worst"]["max_abs"] == 0.0


def test_batch_one_only_fails_at_batch_4(tmp_path: Path, make_reference: Callable[..., Path],
                                         make_onnx: Callable[..., Path]) -> None:
    reference = make_reference(model="batch_one_only")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TracerWarning is the point of this model
        model = make_onnx(model="batch_one_only")
    at_one = _check(tmp_path, {"model": model, "reference": reference}, batch_sizes=(1,))
    assert at_one["verdict"] == "pass"
    result = _check(tmp_path, {"model": model, "reference": reference})
    assert result["verdict"] == "fail"
    assert result["reason"] == "batch 4, output y: shape (2, 4) != reference (4, 4)"
    assert result["batches"]["1"]["y"]["within_tolerance"]
    assert not result["batches"]["4"]["y"]["within_tolerance"]


def test_fixed_batch_export_raises_at_batch_4(tmp_path: Path, make_reference: Callable[..., Path]) -> None:
    import torch

    from navbuild.runners.torch_runner import load_torch_model

    model = load_torch_model(TorchFactory("tests.models:tiny_mlp", {}))
    path = tmp_path / "fixed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # no dynamic_axes: the batch is fixed at 1, as a naive export would do
        torch.onnx.export(model, (), str(path), kwargs={"x": torch.zeros(1, 8)}, dynamo=False,
                          input_names=["x"], output_names=["y"], opset_version=17)
    result = _check(tmp_path, {"model": path, "reference": make_reference()})
    assert result["verdict"] == "fail"
    assert result["reason"].startswith("batch 4: InvalidArgument: [ONNXRuntimeError]")
    assert "error" in result["batches"]["4"] and result["batches"]["1"]["y"]["within_tolerance"]


def test_out_of_tolerance_reason(tmp_path: Path, make_reference: Callable[..., Path],
                                 make_onnx: Callable[..., Path]) -> None:
    # a differently seeded model is "the same network with wrong weights"
    result = _check(tmp_path, {"model": make_onnx(seed=1), "reference": make_reference()},
                    batch_sizes=(4,), atol=1e-4, rtol=1e-3)
    assert result["verdict"] == "fail"
    assert result["reason"].startswith("batch 4, output y: max_abs ")
    assert "> atol 0.0001 + rtol 0.001 (" in result["reason"]
    assert result["reason"].endswith("% of elements out)")
    assert result["worst"]["cosine_min"] < 0.99


def test_unloadable_variant_fails(tmp_path: Path, make_reference: Callable[..., Path]) -> None:
    (tmp_path / "broken.onnx").write_bytes(b"not onnx")
    result = _check(tmp_path, {"model": tmp_path / "broken.onnx", "reference": make_reference()})
    assert result["verdict"] == "fail" and result["reason"].startswith("load: ")


def test_compare_metrics() -> None:
    expected = np.array([[1.0, 2.0], [0.0, 0.0]], np.float32)
    actual = np.array([[1.0, 2.5], [0.0, 0.0]], np.float32)
    m = compare(actual, expected, atol=0.1, rtol=0.0)
    assert not m["within_tolerance"]
    assert m["max_abs"] == pytest.approx(0.5) and m["max_rel"] == pytest.approx(0.25)
    assert m["out_fraction"] == pytest.approx(0.25)
    assert m["cosine_min"] < 1.0 and m["cosine_min"] > 0.99
    assert compare(expected, expected, 0.0, 0.0)["within_tolerance"]
    nan = np.array([[np.nan, 2.0], [0.0, 0.0]], np.float32)
    assert not compare(nan, expected, 1.0, 1.0)["within_tolerance"]
    assert compare(nan, nan, 0.0, 0.0)["within_tolerance"]
    assert compare(expected[:1], expected, 1.0, 1.0)["error"] == "shape (1, 2) != reference (2, 2)"


def test_named_outputs_match_by_name_through_export(tmp_path: Path, make_reference: Callable[..., Path],
                                                    make_onnx: Callable[..., Path]) -> None:
    # declared in the opposite order of the model's dict: names, not positions, must line up
    declared = ("norm", "logits")
    reference = make_reference(model="dict_outputs", outputs=declared)
    model = make_onnx(model="dict_outputs", outputs=declared)
    result = _check(tmp_path, {"model": model, "reference": reference})
    assert result["verdict"] == "pass", result["reason"]
    assert set(result["batches"]["4"]) == {"norm", "logits"}
