"""OnnxSanitizedFromOnnx on real ONNX files: an IR 3 one whose weights are listed as graph inputs, one with a
constant subgraph for Polygraphy to fold."""

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
    assert result == {"weights_removed_from_inputs": 3, "ir_version_before": 3, "ir_version": 4, "inputs": ["x"],
                      "nodes_before": 4, "nodes": 4, "inferred_shapes": 4}
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


def _with_a_constant_subgraph(path: Path) -> Path:
    """x [batch, 8] @ Transpose(wt) -> y [batch, 16]: the Transpose of an initializer is a constant subgraph."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    wt = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32), "wt")
    nodes = [helper.make_node("Transpose", ["wt"], ["w"], perm=[1, 0]), helper.make_node("MatMul", ["x", "w"], ["y"])]
    graph = helper.make_graph(nodes, "folding", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])], initializer=[wt])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_polygraphy_folds_a_constant_subgraph_and_infers_the_shapes_with_the_same_outputs(tmp_path: Path) -> None:
    import onnx

    source = _with_a_constant_subgraph(tmp_path / "m.onnx")
    out = tmp_path / "sanitized"
    out.mkdir()
    result = OnnxSanitizedFromOnnx().run(OnnxSanitizedParams(), StepContext({"onnx": source}, out))
    assert (result["nodes_before"], result["nodes"], result["weights_removed_from_inputs"]) == (2, 1, 0)
    proto = onnx.load(str(out / "model.onnx"))
    assert [n.op_type for n in proto.graph.node] == ["MatMul"]
    assert [tuple(i.dims) for i in proto.graph.initializer] == [(8, 16)]
    x = np.random.default_rng(2).standard_normal((5, 8)).astype(np.float32)
    options = RuntimeOptions(intra_op_threads=1, graph_level="disable")
    np.testing.assert_allclose(OrtRunner(out / "model.onnx", options).run({"x": x})[0],
                               OrtRunner(source, options).run({"x": x})[0], rtol=1e-6, atol=1e-6)


def test_its_reproduce_script_holds_polygraphys_sanitizer_line_which_runs_from_the_inputs_folder(
        tmp_path: Path) -> None:
    import subprocess
    import sys

    from navbuild.execute.isolation import write_job

    write_job(tmp_path, "onnx-sanitized", "OnnxSanitizedFromOnnx", {}, {"onnx": tmp_path / "in"}, tmp_path)
    script = (tmp_path / "reproduce.sh").read_text()
    line = "polygraphy surgeon sanitize model.onnx --fold-constants -o sanitized/model.onnx"
    assert f"#   {line}\n" in script
    # the line as written, with the real CLI, from a folder holding the input
    source = _with_a_constant_subgraph(tmp_path / "model.onnx")
    subprocess.run([str(Path(sys.executable).parent / "polygraphy"), *line.split()[1:]], cwd=tmp_path, check=True,
                   capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    x = np.random.default_rng(3).standard_normal((2, 8)).astype(np.float32)
    options = RuntimeOptions(intra_op_threads=1, graph_level="disable")
    np.testing.assert_allclose(OrtRunner(tmp_path / "sanitized/model.onnx", options).run({"x": x})[0],
                               OrtRunner(source, options).run({"x": x})[0], rtol=1e-6, atol=1e-6)
