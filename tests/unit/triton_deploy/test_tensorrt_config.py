"""Triton's tensorrt_plan configs of an engine: the engine's profiles on every GPU instance group, max_batch_size
within the engine's, -1 for dynamic axes, CUDA graphs as a search knob; generated and parsed back with protobuf."""

from __future__ import annotations

import pytest

from navbuild.formats.common import tensor_specs
from navbuild.formats.tensorrt_profiles import derive_profiles, recipe_sizes
from navbuild.key_fields import key_data
from navbuild.planning.triton import engine_batch_sizes, search_configs
from navbuild.triton.model_config import ModelConfig, TritonTensor, config_text, parse_config
from tests.unit.formats.test_tensorrt_profiles import bert_like

INPUTS = [TritonTensor("input_ids", "int64", (-1,)), TritonTensor("mask", "int64", (-1,))]
OUTPUTS = [TritonTensor("logits", "float32", (2,))]


def engine_recipe(mode: str = "per_batch_size"):
    r = bert_like()  # batch 1, 4 profiled (probe 3), seq 65..193
    r.device = "cuda"
    r.tensorrt.profiles = mode
    r.triton.search.max_batch_sizes = [4, 16]
    r.triton.search.instance_counts = [1, 2]
    r.triton.search.dynamic_batching = [True]
    r.triton.search.cuda_graphs = [False, True]
    return r, derive_profiles(tensor_specs(r), recipe_sizes(r), mode)


def test_the_search_serves_the_engine_within_its_batch_and_with_all_its_profiles() -> None:
    r, engine = engine_recipe()
    assert len(engine) == 2 and engine_batch_sizes([4, 16], engine) == [4]  # 16 is beyond the engine's 4
    assert engine_batch_sizes([16, 32], engine) == [4]  # none fits: the engine's own largest batch
    configs = search_configs(r, "tensorrt_plan", {}, "KIND_GPU", engine)
    assert {c.max_batch_size for c in configs} == {4}
    assert all(c.profiles == ("0", "1") and c.instance_kind == "KIND_GPU" for c in configs)  # the default too
    assert sorted((c.instance_count, c.cuda_graphs) for c in configs[1:]) == [
        (1, False), (1, True), (2, False), (2, True)]
    assert "cudagraphs" in next(c for c in configs if c.cuda_graphs).label()


def test_other_backends_get_no_engine_fields() -> None:
    r, _ = engine_recipe()
    configs = search_configs(r, "onnxruntime_onnx", {}, "KIND_GPU")
    assert all(not c.profiles and not c.cuda_graphs for c in configs)
    # CPU configurations keep their keys: the new fields stay out while unset
    assert "profiles" not in key_data(ModelConfig()) and "cuda_graphs" not in key_data(ModelConfig())


def test_the_config_text_parses_back_with_profiles_dims_and_cuda_graphs() -> None:
    pytest.importorskip("tritonclient.grpc.model_config_pb2")
    r, engine = engine_recipe()
    config = next(c for c in search_configs(r, "tensorrt_plan", {}, "KIND_GPU", engine)
                  if c.cuda_graphs and c.instance_count == 2)
    m = parse_config(config_text("bert_tensorrt_fp16", "tensorrt_plan", INPUTS, OUTPUTS, config))
    assert (m.platform, m.backend, m.max_batch_size) == ("tensorrt_plan", "", 4)
    assert [(t.name, list(t.dims)) for t in m.input] == [("input_ids", [-1]), ("mask", [-1])]
    (group,) = m.instance_group
    assert (group.count, group.kind, list(group.profile), list(group.gpus)) == (2, 1, ["0", "1"], [0])  # 1 = KIND_GPU
    assert m.optimization.cuda.graphs is True
    assert m.dynamic_batching.max_queue_delay_microseconds == 0


def test_engine_fields_are_refused_where_triton_would_refuse_them() -> None:
    with pytest.raises(ValueError, match="profiles: a TensorRT engine's setting on GPU instances, but instance_kind "
                                         "is KIND_CPU"):
        config_text("m", "tensorrt_plan", INPUTS, OUTPUTS, ModelConfig(profiles=("0",)))
    with pytest.raises(ValueError, match="instance_kind KIND_CPU: the tensorrt_plan backend runs KIND_GPU only"):
        config_text("m", "tensorrt_plan", INPUTS, OUTPUTS, ModelConfig())
    with pytest.raises(ValueError, match="the onnxruntime_onnx backend does not read them"):
        config_text("m", "onnxruntime_onnx", INPUTS, OUTPUTS, ModelConfig(instance_kind="KIND_GPU", cuda_graphs=True))
    assert ModelConfig(instance_kind="KIND_GPU", profiles=("0", "x")).problems() == [
        "profiles: ['0', 'x'] must be profile indices (\"0\", \"1\", ...)"]


def test_the_triton_targets_of_an_engine_carry_its_profiles_and_batch(monkeypatch, tmp_path) -> None:
    """The planner's own path: a tensorrt-fp16 engine planned for a recorded H200, then its Triton targets."""
    from navbuild import device as device_module
    from navbuild.device import Machine, TorchBuild, parse_gpu_query
    from navbuild.planning import planner
    from navbuild.planning.triton import expand_triton

    h200 = Machine(parse_gpu_query("0, NVIDIA H200, 9.0, 143771, 570.124.06\n"), "nvidia-smi",
                   TorchBuild("2.11.0+cu128", "12.8"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(device_module, "read_machine", lambda: h200)
    monkeypatch.setattr(planner, "read_machine", lambda: h200)
    r, _ = engine_recipe()
    r.variants = ["tensorrt-fp16"]
    graph = planner.expand(r, tmp_path)
    expand_triton(graph, r, ["tensorrt-fp16"], tmp_path)
    engine = graph.targets["tensorrt-fp16"].params.profiles
    assert len(engine) == 2
    assert graph.targets["triton/model/tensorrt-fp16"].params.max_batch_size == 4
    assert graph.targets["triton/model/tensorrt-fp16"].params.backend == "tensorrt_plan"
    configs = graph.targets["triton/search/tensorrt-fp16"].params.configs
    assert {(c.instance_kind, c.profiles, c.max_batch_size) for c in configs} == {("KIND_GPU", ("0", "1"), 4)}
    assert {c.cuda_graphs for c in configs} == {False, True}
