"""Tests of OrtOptimizedFromOnnx: ORT offline optimization, and transformer fusion on a tiny BERT."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from navbuild.model_io import TensorSpec
from navbuild.runners.ort_runner import OrtRunner
from navbuild.samples import generate_samples
from navbuild.steps.base import StepContext
from navbuild.runtime import RuntimeOptions
from navbuild.steps.ort_optimized import OrtOptimizedFromOnnx

BERT_INPUTS = (TensorSpec("input_ids", "int64", ("batch", "seq"), low=0, high=1000),
               TensorSpec("attention_mask", "int64", ("batch", "seq"), low=1, high=2))


def _optimize(tmp_path: Path, source: Path, name: str = "opt", **params) -> tuple[Path, dict]:
    out = tmp_path / name
    out.mkdir()
    result = OrtOptimizedFromOnnx().run(OrtOptimizedFromOnnx.Params(**params),
                                        StepContext(inputs={"onnx": source}, out=out))
    return out / "model.onnx", result


def _same_outputs(a: Path, b: Path, feeds: dict[str, np.ndarray], atol: float) -> None:
    # graph level "disable" so the comparison sees each file as written
    opts = RuntimeOptions(intra_op_threads=1, graph_level="disable")
    for x, y in zip(OrtRunner(a, opts).run(feeds), OrtRunner(b, opts).run(feeds)):
        np.testing.assert_allclose(x, y, atol=atol)


@pytest.mark.parametrize("level", ["basic", "extended"])
def test_session_optimization(tmp_path: Path, make_onnx: Callable[..., Path], level: str) -> None:
    source = make_onnx()  # a folder: the step finds model.onnx in it
    path, result = _optimize(tmp_path, source, level=level, fusion=None)
    assert result["level"] == level and result["fusion"] is None
    assert result["nodes_before"] > 0 and result["nodes_after"] > 0
    feeds = generate_samples((TensorSpec("x", "float32", ("batch", 8)),), 4, seed=0, axes={})
    _same_outputs(source / "model.onnx", path, feeds, atol=1e-5)


def test_transformer_fusion_on_tiny_bert(tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    source = make_onnx(model="tiny_bert", inputs=BERT_INPUTS, outputs=("last_hidden_state",),
                       axes={"seq": 8})
    path, result = _optimize(tmp_path, source / "model.onnx", level="basic", fusion="bert",
                             num_heads=2, hidden_size=32)
    assert result["nodes_after"] < result["nodes_before"]
    fused = result["fused_ops"]
    assert fused.get("Attention", 0) + fused.get("SkipLayerNormalization", 0) > 0, fused
    feeds = generate_samples(BERT_INPUTS, 3, seed=1, axes={"seq": 6})
    _same_outputs(source / "model.onnx", path, feeds, atol=1e-4)


def test_unknown_level(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="level 'max' is not one of"):
        _optimize(tmp_path, tmp_path / "missing.onnx", level="max", fusion=None)
