"""WriteTritonModel writes a function of its key: nothing of the machine that ran it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from navbuild.model_io import TensorSpec
from navbuild.samples import save_npz
from navbuild.steps.base import StepContext
from navbuild.steps.reference import SAMPLES_FILE, reference_file
from navbuild.steps.triton_model import LOCAL, TritonModelParams, WriteTritonModel, local_runtime_options
from navbuild.triton.python_model import serving_threads
from navbuild.triton.repository import EVERY_CORE


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _tiny_onnx(path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((8, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 3])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _write(tmp_path: Path, name: str) -> Path:
    (tmp_path / "reference").mkdir(exist_ok=True)
    save_npz(tmp_path / "reference" / SAMPLES_FILE, {"x": np.linspace(-1, 1, 32, dtype=np.float32).reshape(4, 8)})
    save_npz(tmp_path / "reference" / reference_file(2), {"y": np.zeros((2, 3), np.float32)})
    model = _tiny_onnx(tmp_path / "model.onnx")
    params = TritonModelParams(name="m_onnx", variant="onnx", runner="onnx", backend="onnxruntime_onnx", mode="",
                               inputs=(TensorSpec("x", "float32", ("batch", 8)),), batch_size=2, max_batch_size=8)
    out = tmp_path / name
    out.mkdir()
    WriteTritonModel().run(params, StepContext(inputs={"reference": tmp_path / "reference", "model": model}, out=out))
    return out


def test_the_output_is_the_same_on_machines_with_other_core_counts(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # the key has no hardware: a cached or packaged model is used on machines it was not written on
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    three = _tree(_write(tmp_path, "three"))
    monkeypatch.setattr(os, "cpu_count", lambda: 96)
    assert _tree(_write(tmp_path, "ninety-six")) == three
    config = three[f"{LOCAL}/m_onnx/config.pbtxt"].decode()
    assert 'key: "navbuild_intra_op_threads"\n  value { string_value: "0" }' in config


def test_the_twin_runs_on_every_core_of_the_machine_that_serves_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert local_runtime_options("onnxruntime_onnx", "", ())["intra_op_threads"] == EVERY_CORE
    monkeypatch.setattr(os, "cpu_count", lambda: 12)
    assert serving_threads(EVERY_CORE) == 12
    assert serving_threads("2") == 2
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert serving_threads(EVERY_CORE) == 1
    # a search point's native thread count still wins over the default
    assert local_runtime_options("onnxruntime_onnx", "", {"intra_op_thread_count": "4"})["intra_op_threads"] == "4"
