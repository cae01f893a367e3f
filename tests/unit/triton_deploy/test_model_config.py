"""Tests of navbuild.triton.model_config (config.pbtxt text parsed back by protobuf) and the repository writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from navbuild.triton.model_config import (backends, ModelConfig, TritonTensor, check_backend_parameters,
                                          config_text, data_type, default_config, local_runtime, parse_config)
from navbuild.triton.python_model import batch_groups, run_batched, runtime_settings, string_parameters
from navbuild.triton.repository import backend_for, write_local, write_native

INPUTS = [TritonTensor("x", "float32", (4,)), TritonTensor("mask", "int64", (-1,))]
OUTPUTS = [TritonTensor("y", "float16", (3,)), TritonTensor("ok", "bool", (-1, 2))]

#: one valid option per backend that has options, and how it must come back
OPTIONS = {
    "onnxruntime_onnx": {"intra_op_thread_count": "2", "inter_op_thread_count": "1", "enable_mem_arena": "true"},
    "pytorch_libtorch": {"INTRA_OP_THREAD_COUNT": "2", "INFERENCE_MODE": "true", "ENABLE_JIT_EXECUTOR": "false"},
    "openvino": {"INFERENCE_NUM_THREADS": "2", "NUM_STREAMS": "AUTO", "PERFORMANCE_HINT": "LATENCY"},
    "tensorrt_plan": {},
    "python": {"anything": "goes"},
}


def _parse(text: str):
    """parse_config, skipping where tritonclient (the triton extra) is not installed."""
    pytest.importorskip("tritonclient.grpc.model_config_pb2")
    return parse_config(text)


def _params(message) -> dict[str, str]:
    return {k: v.string_value for k, v in message.parameters.items()}


@pytest.mark.parametrize("backend", list(backends()))
@pytest.mark.parametrize("batching", [False, True])
def test_config_text_parses_back_for_every_backend(backend: str, batching: bool) -> None:
    kind = backends()[backend].kinds[0]  # KIND_CPU, or KIND_GPU for a backend that runs only that (tensorrt_plan)
    config = ModelConfig(max_batch_size=8, instance_count=3, instance_kind=kind, dynamic_batching=batching,
                         max_queue_delay_us=250 if batching else 0,
                         preferred_batch_sizes=(4, 8) if batching else (), backend_parameters=OPTIONS[backend])
    m = _parse(config_text("tiny", backend, INPUTS, OUTPUTS, config))
    spec = backends()[backend]
    assert (m.name, m.backend, m.platform) == ("tiny", spec.backend, spec.platform)
    assert m.max_batch_size == 8
    assert [(t.name, t.data_type, list(t.dims)) for t in m.input] == [("x", 11, [4]), ("mask", 9, [-1])]
    assert [(t.name, t.data_type, list(t.dims)) for t in m.output] == [("y", 10, [3]), ("ok", 1, [-1, 2])]
    assert [(g.count, g.kind) for g in m.instance_group] == [(3, 2 if kind == "KIND_CPU" else 1)]
    assert m.HasField("dynamic_batching") is batching
    if batching:
        assert m.dynamic_batching.max_queue_delay_microseconds == 250
        assert list(m.dynamic_batching.preferred_batch_size) == [4, 8]
    assert _params(m) == OPTIONS[backend]


@pytest.mark.parametrize("level, expected", [("disable", 2), ("basic", -1), ("extended", 1), ("all", None)])
def test_ort_graph_level_lands_in_optimization(level: str, expected: int | None) -> None:
    config = ModelConfig(backend_parameters={"graph_level": level, "intra_op_thread_count": 1})
    m = _parse(config_text("m", "onnxruntime_onnx", INPUTS, OUTPUTS, config))
    assert _params(m) == {"intra_op_thread_count": "1"}  # graph_level is not a parameter
    if expected is None:  # no block: the backend's default, ORT_ENABLE_ALL
        assert not m.HasField("optimization")
    else:
        assert m.optimization.graph.level == expected


def test_max_batch_size_zero_prepends_the_batch_dim() -> None:
    m = _parse(config_text("m", "onnxruntime_onnx", INPUTS, OUTPUTS, ModelConfig(max_batch_size=0)))
    assert m.max_batch_size == 0
    assert [list(t.dims) for t in m.input] == [[-1, 4], [-1, -1]]
    assert [list(t.dims) for t in m.output] == [[-1, 3], [-1, -1, 2]]


def test_scalar_per_item_is_reshaped_and_gpu_kind_and_extra_parameters() -> None:
    config = ModelConfig(instance_kind="KIND_GPU", instance_count=2)
    m = _parse(config_text('we"ird', "python", [TritonTensor("s", "float32", ())],
                                 [TritonTensor("t", "object", (2,))], config, {"navbuild_runner": "onnx"}))
    assert m.name == 'we"ird'
    assert list(m.input[0].dims) == [1] and m.input[0].HasField("reshape") and list(m.input[0].reshape.shape) == []
    assert m.output[0].data_type == 13  # TYPE_STRING
    assert [(g.count, g.kind) for g in m.instance_group] == [(2, 1)]  # 1 = KIND_GPU
    assert _params(m) == {"navbuild_runner": "onnx"}


@pytest.mark.parametrize("dtype, expected", [
    ("float32", "TYPE_FP32"), ("float16", "TYPE_FP16"), ("int64", "TYPE_INT64"), ("int32", "TYPE_INT32"),
    ("int8", "TYPE_INT8"), ("uint8", "TYPE_UINT8"), ("bool", "TYPE_BOOL"), ("bfloat16", "TYPE_BF16"),
    ("object", "TYPE_STRING"), ("float", "TYPE_FP64"), ("<U3", "TYPE_STRING")])
def test_data_types(dtype: str, expected: str) -> None:
    assert data_type(dtype) == expected


def test_unknown_dtype_is_an_error() -> None:
    with pytest.raises(ValueError, match="dtype 'complex64' has no Triton data type"):
        data_type("complex64")


def test_unknown_backend_option_gives_the_problem_with_a_suggestion() -> None:
    problems = check_backend_parameters("onnxruntime_onnx", {"foo": "1", "intra_op_threads": "2"})
    assert problems[0].startswith("unknown backend option 'foo' for onnxruntime_onnx (known: intra_op_thread_count, ")
    assert problems[1].endswith("did you mean 'intra_op_thread_count'?")
    assert "did you mean 'INTRA_OP_THREAD_COUNT'?" in check_backend_parameters(
        "pytorch_libtorch", {"intra_op_thread_count": 1})[0]
    assert check_backend_parameters("tensorrt_plan", {"x": 1}) == [
        "unknown backend option 'x' for tensorrt_plan (known: none)"]
    assert "unknown Triton backend 'onnxruntime'" in check_backend_parameters("onnxruntime", {})[0]


def test_bad_backend_option_values() -> None:
    assert check_backend_parameters("onnxruntime_onnx", {"intra_op_thread_count": "-1", "graph_level": "max",
                                                         "enable_mem_arena": "maybe"}) == [
        ("backend option 'enable_mem_arena' for onnxruntime_onnx: 'maybe' is not a boolean "
         "(true, false, yes, no, on, off, 1, 0)"),
        "backend option 'graph_level' for onnxruntime_onnx: 'max' is not one of disable, basic, extended, all",
        "backend option 'intra_op_thread_count' for onnxruntime_onnx: '-1' is not a whole number >= 0",
    ]
    assert check_backend_parameters("openvino", {"NUM_STREAMS": "numa", "HINT_BF16": "YES"}) == []
    assert "or one of AUTO, NUMA" in check_backend_parameters("openvino", {"NUM_STREAMS": "many"})[0]
    assert "navbuild's own" in check_backend_parameters("python", {"navbuild_runner": "x"})[0]
    # pairs may repeat a key (every value a search tries); an empty value checks the name only
    assert check_backend_parameters("openvino", [("NUM_STREAMS", 1), ("NUM_STREAMS", "x"), ("NUM_STREAMS", "")]) == [
        "backend option 'NUM_STREAMS' for openvino: 'x' is not a whole number >= 0 or one of AUTO, NUMA"]


def test_config_text_rejects_invalid_configs() -> None:
    with pytest.raises(ValueError, match="unknown backend option 'foo'"):
        config_text("m", "onnxruntime_onnx", INPUTS, OUTPUTS, ModelConfig(backend_parameters={"foo": 1}))
    with pytest.raises(ValueError, match=r"preferred_batch_sizes\[0\]: 16 must be between 1 and max_batch_size"):
        config_text("m", "python", INPUTS, OUTPUTS, ModelConfig(dynamic_batching=True, preferred_batch_sizes=(16,)))
    with pytest.raises(ValueError, match="dynamic_batching needs max_batch_size >= 1"):
        config_text("m", "python", INPUTS, OUTPUTS, ModelConfig(max_batch_size=0, dynamic_batching=True))
    with pytest.raises(ValueError, match="but dynamic_batching is off"):
        config_text("m", "python", INPUTS, OUTPUTS, ModelConfig(max_queue_delay_us=100))
    with pytest.raises(ValueError, match=r"dims \[0\] must be -1 \(dynamic\) or >= 1"):
        config_text("m", "python", [TritonTensor("x", "float32", (0,))], OUTPUTS, ModelConfig())


def test_parse_config_reports_invalid_text() -> None:
    with pytest.raises(ValueError, match="invalid config.pbtxt: .*no_such_field"):
        _parse('name: "m"\nno_such_field: 3\n')


def test_label_is_deterministic_distinct_and_safe() -> None:
    a = ModelConfig(max_batch_size=8, instance_count=2, dynamic_batching=True, max_queue_delay_us=100,
                    backend_parameters={"intra_op_thread_count": 1})
    assert a.label() == "mbs8-i2cpu-db100us-intra_op_thread_count=1"
    same = ModelConfig(max_batch_size=8, instance_count=2, dynamic_batching=True, max_queue_delay_us=100,
                       backend_parameters=(("intra_op_thread_count", "1"),))
    assert same == a and same.label() == a.label()
    variants = [a, ModelConfig(), ModelConfig(instance_count=2), ModelConfig(instance_kind="KIND_GPU"),
                ModelConfig(dynamic_batching=True), ModelConfig(dynamic_batching=True, preferred_batch_sizes=(4,)),
                ModelConfig(backend_parameters={"k": "a b"}), ModelConfig(backend_parameters={"k": "a_b"}),
                ModelConfig(backend_parameters={"k": "x" * 200}), ModelConfig(backend_parameters={"k": "x" * 201}),
                ModelConfig(backend_parameters={"a=b": "c"}), ModelConfig(backend_parameters={"a": "b=c"})]
    labels = [v.label() for v in variants]
    assert len(set(labels)) == len(labels)
    assert all(len(label) <= 96 and all(c.isalnum() or c in "_.=+-" for c in label) for label in labels)


def test_default_config_follows_triton_defaults() -> None:
    assert default_config(8) == ModelConfig(max_batch_size=8, instance_count=1)
    # Triton gives ONNX Runtime models without an instance_group 2 CPU instances
    assert default_config(4, "onnxruntime_onnx").instance_count == 2
    assert default_config(4, "pytorch_libtorch").instance_count == 1
    assert not default_config(4).dynamic_batching and default_config(4).backend_parameters == ()


def test_local_runtime_maps_native_options() -> None:
    assert local_runtime("onnxruntime_onnx", {"intra_op_thread_count": 3, "graph_level": "basic",
                                              "execution_mode": "1"}) == {"intra_op_threads": "3",
                                                                          "graph_level": "basic"}
    assert local_runtime("pytorch_libtorch", {"INTRA_OP_THREAD_COUNT": "0"}) == {}  # 0: runtime default
    assert local_runtime("openvino", {"HINT_BF16": "yes", "INFERENCE_NUM_THREADS": "1"}) == {
        "mode": "bf16", "intra_op_threads": "1"}


# --- repository writer -------------------------------------------------------------------------


def _tiny_onnx(path: Path, external: bool = False) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 3])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path), save_as_external_data=external, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    return path


def test_write_native_copies_model_and_external_data(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    src = _tiny_onnx(tmp_path / "src" / "exported.onnx", external=True)
    folder = write_native(tmp_path / "repo", "tiny", "onnxruntime_onnx", {"model.onnx": src},
                          [TritonTensor("x", "float32", (4,))], [TritonTensor("y", "float32", (3,))],
                          ModelConfig(backend_parameters={"intra_op_thread_count": 1}))
    assert folder == tmp_path / "repo" / "tiny"
    assert sorted(p.name for p in (folder / "1").iterdir()) == ["model.onnx", "weights.bin"]
    m = _parse((folder / "config.pbtxt").read_text())
    assert m.platform == "onnxruntime_onnx" and _params(m) == {"intra_op_thread_count": "1"}
    # rewriting replaces the model and leaves nothing else behind in or beside the repository
    write_native(tmp_path / "repo", "tiny", "onnxruntime_onnx", {"model.onnx": src},
                 [TritonTensor("x", "float32", (4,))], [TritonTensor("y", "float32", (3,))], ModelConfig())
    assert [p.name for p in (tmp_path / "repo").iterdir()] == ["tiny"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo", "src"]


def test_write_native_openvino_brings_the_bin(tmp_path: Path) -> None:
    (tmp_path / "ir.xml").write_text("<net/>")
    (tmp_path / "ir.bin").write_bytes(b"\0")
    folder = write_native(tmp_path / "repo", "ov", "openvino", {"model.xml": tmp_path / "ir.xml"},
                          [TritonTensor("x", "float32", (4,))], [TritonTensor("y", "float32", (3,))], ModelConfig())
    assert sorted(p.name for p in (folder / "1").iterdir()) == ["model.bin", "model.xml"]
    assert _parse((folder / "config.pbtxt").read_text()).backend == "openvino"


def test_write_native_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_native(tmp_path / "repo", "m", "onnxruntime_onnx", {"model.onnx": tmp_path / "nope.onnx"},
                     INPUTS, OUTPUTS, ModelConfig())


def test_write_local_layout_and_parameters(tmp_path: Path) -> None:
    src = _tiny_onnx(tmp_path / "m.onnx")
    config = ModelConfig(max_batch_size=8, dynamic_batching=True, max_queue_delay_us=100,
                         backend_parameters={"intra_op_thread_count": "1"})
    folder = write_local(tmp_path / "repo", "tiny_local", "onnx", {"model.onnx": src},
                         [TritonTensor("x", "float32", (4,))], [TritonTensor("y", "float32", (3,))], config,
                         {"intra_op_threads": "2", "graph_level": "basic"})
    assert sorted(p.name for p in (folder / "1").iterdir()) == ["model.onnx", "model.py"]
    m = _parse((folder / "config.pbtxt").read_text())
    assert m.backend == "python" and m.max_batch_size == 8 and m.dynamic_batching.max_queue_delay_microseconds == 100
    params = _params(m)
    assert params == {"navbuild_runner": "onnx", "navbuild_model_file": "model.onnx", "navbuild_output_names": "y",
                      "navbuild_intra_op_threads": "2", "navbuild_graph_level": "basic",
                      "intra_op_thread_count": "1"}
    # model.py reads them back the way the backend hands them over (JSON); the native option wins
    as_json = json.loads(json.dumps({"parameters": {k: {"string_value": v} for k, v in params.items()}}))
    assert runtime_settings(string_parameters(as_json)) == {"intra_op_threads": "1", "graph_level": "basic"}


def test_write_local_rejects_what_it_cannot_serve(tmp_path: Path) -> None:
    src = _tiny_onnx(tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="runner 'torch' has no Triton backend to emulate"):
        write_local(tmp_path, "m", "torch", {"model.onnx": src}, INPUTS, OUTPUTS, ModelConfig(), {})
    with pytest.raises(ValueError, match="unknown backend option 'INTRA_OP_THREAD_COUNT' for onnxruntime_onnx"):
        write_local(tmp_path, "m", "onnx", {"model.onnx": src}, INPUTS, OUTPUTS,
                    ModelConfig(backend_parameters={"INTRA_OP_THREAD_COUNT": 1}), {})
    with pytest.raises(ValueError, match=r"unknown runtime option\(s\) threads"):
        write_local(tmp_path, "m", "onnx", {"model.onnx": src}, INPUTS, OUTPUTS, ModelConfig(), {"threads": "1"})


def test_backend_for_runner() -> None:
    assert [backend_for(r) for r in ("onnx", "torchscript", "openvino", "torch", "torch-export")] == [
        "onnxruntime_onnx", "pytorch_libtorch", "openvino", None, None]


# --- python_model.py batching helpers (pure numpy; the server test runs them for real) ----------


def test_batch_groups_and_split() -> None:
    a = {"x": np.zeros((2, 4), np.float32)}
    b = {"x": np.ones((1, 4), np.float32)}
    c = {"x": np.ones((1, 5), np.float32)}
    assert batch_groups([a, c, None, b]) == [[0, 3], [1]]
    results = run_batched(lambda feeds: [feeds["x"].sum(axis=1)], [a, b], 1)
    assert [r[0].tolist() for r in results] == [[0.0, 0.0], [4.0]]
    with pytest.raises(ValueError, match="expected 3 rows"):
        run_batched(lambda feeds: [feeds["x"][:1]], [a, b], 1)
    with pytest.raises(ValueError, match="returned 1 outputs, the config declares 2"):
        run_batched(lambda feeds: [feeds["x"]], [a], 2)
