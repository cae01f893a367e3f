"""OnnxSanitizedFromOnnx on a real IR 3 file whose weights are listed as graph inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from navbuild.runners.ort_runner import OrtRunner
from navbuild.steps.base import StepContext
from navbuild.runtime import RuntimeOptions
from navbuild.steps.onnx_sanitized import OnnxSanitizedFromOnnx, OnnxSanitizedParams
from navbuild.steps.ort_optimized import OrtOptimizedFromOnnx, OrtOptimizedParams
from tests.models import onnx_mlp


def _graph_inputs(path: Path) -> list[str]:
    import onnx

    return [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]


def _optimized_inputs(source: Path, out: Path) -> list[str]:
    out.mkdir()
    OrtOptimizedFromOnnx().run(OrtOptimizedParams(level="all", fusion=None), StepContext({"onnx": source}, out))
    return _graph_inputs(out / "model.onnx")


def test_weights_leave_the_inputs_and_the_ir_version_rises_with_the_same_outputs(tmp_path: Path) -> None:
    import onnx

    source = onnx_mlp(tmp_path / "old.onnx", ir_version=3, opset=8, weights_as_inputs=True)
    out = tmp_path / "sanitized"
    out.mkdir()
    result = OnnxSanitizedFromOnnx().run(OnnxSanitizedParams(), StepContext({"onnx": source}, out))
    assert result == {"weights_removed_from_inputs": 3, "ir_version_before": 3, "ir_version": 4, "inputs": ["x"]}
    proto = onnx.load(str(out / "model.onnx"))
    assert proto.ir_version == 4 and [i.name for i in proto.graph.input] == ["x"]
    assert len(proto.graph.initializer) == 3
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    options = RuntimeOptions(intra_op_threads=1, graph_level="disable")
    np.testing.assert_array_equal(OrtRunner(out / "model.onnx", options).run({"x": x})[0],
                                  OrtRunner(source, options).run({"x": x})[0])


def test_ort_optimization_of_the_old_file_keeps_weights_as_inputs_and_of_the_sanitized_one_does_not(
        tmp_path: Path) -> None:
    # why the planner puts onnx-sanitized before ORT's optimizer and the quantizers
    source = onnx_mlp(tmp_path / "old.onnx", ir_version=3, opset=8, weights_as_inputs=True)
    assert _optimized_inputs(source, tmp_path / "raw-opt") == ["x", "w1", "b1", "w2"]
    out = tmp_path / "sanitized"
    out.mkdir()
    OnnxSanitizedFromOnnx().run(OnnxSanitizedParams(), StepContext({"onnx": source}, out))
    assert _optimized_inputs(out / "model.onnx", tmp_path / "opt") == ["x"]
