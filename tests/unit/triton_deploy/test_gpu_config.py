"""Triton on GPU, generated and parsed here (this machine has no GPU): KIND_GPU config.pbtxt of every backend
parsed back with protobuf, the GPU search space and its checks, Model Analyzer's GPU config read back by Model
Analyzer's own parser, and a Model Analyzer checkpoint with GPU metrics read by navbuild and by Model Analyzer."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from navbuild.formats.onnxruntime import ORT_BACKEND
from navbuild.key_fields import added, key_data
from navbuild.planning.triton import _space, search_configs, triton_variants, variant_parameters
from navbuild.recipe.schema import Recipe
from navbuild.recipe.validate_triton import check_triton, deployable
from navbuild.report.triton_summary import render_triton_text
from navbuild.steps.base import params_from_dict, params_to_dict
from navbuild.steps.triton_search import SearchParams, _write_table
from navbuild.triton.analyzer import (Constraints, LoadSpec, analyzer_config, constraints_section, deployment_config,
                                      parse_checkpoint)
from navbuild.triton.model_config import ModelConfig, TritonTensor, Warmup, config_text, parse_config
from navbuild.triton.placement import deployment_gpus, instance_kind, kind_refusal, warmup_on
from navbuild.triton.ranking import closest, rank
from navbuild.triton.repository import write_local

DATA = Path(__file__).with_name("data")
INPUTS = [TritonTensor("input_ids", "int64", (-1,)), TritonTensor("scale", "float32", (4,))]
OUTPUTS = [TritonTensor("y", "float32", (-1, 8))]
TRT = {"precision_mode": "FP16", "max_workspace_size_bytes": "1073741824"}
KIND_GPU = 1  # model_config.proto ModelInstanceGroup.Kind


def _parse(text: str):
    """parse_config, skipping where tritonclient (the triton extra) is not installed."""
    pytest.importorskip("tritonclient.grpc.model_config_pb2")
    return parse_config(text)


def recipe(**triton) -> Recipe:
    cfg = OmegaConf.merge(OmegaConf.structured(Recipe), {
        "name": "tiny", "source": {"onnx": "m.onnx"}, "formats": ["onnx", "onnx-opt"],
        "inputs": [{"name": "input_ids", "dtype": "int64", "shape": ["batch", "seq"]}],
        "samples": {"axes": {"seq": 16}}, "triton": {"enabled": True, **triton}})
    return OmegaConf.to_object(cfg)


def on(device: str, **triton) -> Recipe:
    """A recipe whose ``device`` is ``device`` (the field h-device adds; set on the object until then)."""
    r = recipe(**triton)
    r.device = device  # type: ignore[attr-defined]
    return r


# -- config.pbtxt on GPU, every backend, parsed back -------------------------------------------------

def test_onnxruntime_on_gpu_with_cuda_provider_options_parses_back() -> None:
    config = ModelConfig(max_batch_size=8, instance_count=2, instance_kind="KIND_GPU", gpus=(0, 1),
                         backend_parameters={"cudnn_conv_algo_search": "1", "gpu_mem_limit": "4294967296"})
    m = _parse(config_text("tiny", "onnxruntime_onnx", INPUTS, OUTPUTS, config))
    assert [(g.kind, g.count, list(g.gpus)) for g in m.instance_group] == [(KIND_GPU, 2, [0, 1])]
    assert {k: v.string_value for k, v in m.parameters.items()} == {"cudnn_conv_algo_search": "1",
                                                                   "gpu_mem_limit": "4294967296"}
    assert not m.HasField("optimization")


def test_onnxruntime_tensorrt_accelerator_shares_the_optimization_block_with_the_graph_level() -> None:
    config = ModelConfig(max_batch_size=8, instance_kind="KIND_GPU", gpus=(3,), accelerator="tensorrt",
                         accelerator_parameters=TRT, backend_parameters={"graph_level": "basic"})
    m = _parse(config_text("tiny", "onnxruntime_onnx", INPUTS, OUTPUTS, config))
    assert m.optimization.graph.level == -1
    [trt] = m.optimization.execution_accelerators.gpu_execution_accelerator
    assert trt.name == "tensorrt" and dict(trt.parameters) == TRT
    assert list(m.instance_group[0].gpus) == [3]
    assert config.label() == "mbs8-i1gpug3-tensorrt_FP16-graph_level=basic"


def test_libtorch_on_gpu_parses_back() -> None:
    config = ModelConfig(max_batch_size=4, instance_count=3, instance_kind="KIND_GPU", gpus=(1,),
                         backend_parameters={"INFERENCE_MODE": "true", "DISABLE_CUDNN": "false"})
    m = _parse(config_text("tiny", "pytorch_libtorch", INPUTS, OUTPUTS, config))
    assert m.platform == "pytorch_libtorch"
    assert [(g.kind, g.count, list(g.gpus)) for g in m.instance_group] == [(KIND_GPU, 3, [1])]


def test_openvino_refuses_gpu_instances_with_its_reason() -> None:
    with pytest.raises(ValueError, match="OpenVINO backend runs on the CPU"):
        config_text("tiny", "openvino", INPUTS, OUTPUTS, ModelConfig(instance_kind="KIND_GPU"))


def test_accelerators_are_checked_against_the_backend_and_the_kind() -> None:
    with pytest.raises(ValueError, match="unknown tensorrt parameter 'precision' .*did you mean 'precision_mode'"):
        config_text("tiny", "onnxruntime_onnx", INPUTS, OUTPUTS, ModelConfig(
            instance_kind="KIND_GPU", accelerator="tensorrt", accelerator_parameters={"precision": "FP16"}))
    with pytest.raises(ValueError, match="'FP8' is not one of FP32, FP16, INT8"):
        config_text("tiny", "onnxruntime_onnx", INPUTS, OUTPUTS, ModelConfig(
            instance_kind="KIND_GPU", accelerator="tensorrt", accelerator_parameters={"precision_mode": "FP8"}))
    with pytest.raises(ValueError, match="unknown GPU execution accelerator 'tensorrt' for pytorch_libtorch"):
        config_text("tiny", "pytorch_libtorch", INPUTS, OUTPUTS, ModelConfig(instance_kind="KIND_GPU",
                                                                             accelerator="tensorrt"))
    with pytest.raises(ValueError, match="accelerator: 'tensorrt' is a GPU execution accelerator but instance_kind "
                                         "is KIND_CPU"):
        config_text("tiny", "onnxruntime_onnx", INPUTS, OUTPUTS, ModelConfig(accelerator="tensorrt"))
    with pytest.raises(ValueError, match=r"gpus: \[0\] name GPUs but instance_kind is KIND_CPU"):
        config_text("tiny", "onnxruntime_onnx", INPUTS, OUTPUTS, ModelConfig(gpus=(0,)))


@pytest.mark.parametrize("data, scale_fill", [("zero", "zero_data"), ("random", "random_data")])
def test_warmup_has_one_request_per_batch_size_with_every_input(data: str, scale_fill: str) -> None:
    config = ModelConfig(max_batch_size=8, instance_kind="KIND_GPU",
                         warmup=Warmup((1, 8), data, (("input_ids", (16,)),)))
    m = _parse(config_text("tiny", "onnxruntime_onnx", INPUTS, OUTPUTS, config))
    assert [(w.name, w.batch_size) for w in m.model_warmup] == [("warmup_batch_1", 1), ("warmup_batch_8", 8)]
    for w in m.model_warmup:
        ids, scale = w.inputs["input_ids"], w.inputs["scale"]
        assert (ids.data_type, list(ids.dims), ids.WhichOneof("input_data_type")) == (9, [16], "zero_data")  # INT64
        assert (scale.data_type, list(scale.dims), scale.WhichOneof("input_data_type")) == (11, [4], scale_fill)


def test_warmup_of_a_model_that_does_not_batch_gives_the_full_shape() -> None:
    config = ModelConfig(max_batch_size=0, instance_kind="KIND_GPU", warmup=Warmup((1,), "zero", (("input_ids", (16,)),)))
    m = _parse(config_text("tiny", "pytorch_libtorch", INPUTS, OUTPUTS, config))
    [w] = m.model_warmup
    assert w.batch_size == 1 and list(w.inputs["input_ids"].dims) == [1, 16]


def test_warmup_needs_a_size_for_each_dynamic_axis() -> None:
    with pytest.raises(ValueError, match="warm-up of input 'input_ids'.*give its size"):
        config_text("tiny", "onnxruntime_onnx", INPUTS, OUTPUTS, ModelConfig(warmup=Warmup((1,))))


def test_python_twin_on_gpu_keeps_the_instances_and_leaves_the_accelerator_to_the_native_backend(tmp_path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"torchscript")
    config = ModelConfig(max_batch_size=8, instance_count=2, instance_kind="KIND_GPU", gpus=(1,),
                         accelerator="tensorrt", accelerator_parameters=TRT,
                         warmup=Warmup((1,), "zero", (("input_ids", (16,)),)))
    folder = write_local(tmp_path / "repo", "tiny", "torchscript", {"model.pt": model}, INPUTS, OUTPUTS,
                         dataclasses.replace(config, accelerator="", accelerator_parameters=()), {})
    # (libtorch has no accelerator; the ONNX Runtime twin below shows the accelerator left out)
    twin = _parse((folder / "config.pbtxt").read_text())
    assert twin.backend == "python"
    assert [(g.kind, g.count, list(g.gpus)) for g in twin.instance_group] == [(KIND_GPU, 2, [1])]
    assert [w.name for w in twin.model_warmup] == ["warmup_batch_1"]
    # the accelerator of an ONNX Runtime configuration is left out of its twin, not refused
    ort = tmp_path / "m.onnx"
    _tiny_onnx(ort)
    folder = write_local(tmp_path / "repo2", "tiny", "onnx", {"model.onnx": ort}, INPUTS, OUTPUTS, config, {})
    twin = _parse((folder / "config.pbtxt").read_text())
    assert not twin.HasField("optimization") and twin.instance_group[0].kind == KIND_GPU


def _tiny_onnx(path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["scale"], ["y"])], "g",
                              [helper.make_tensor_value_info("scale", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])])
    onnx.save(helper.make_model(graph), str(path))


# -- where instances go, and the search space ------------------------------------------------------

def test_a_cpu_recipe_keeps_cpu_instances_and_no_warmup() -> None:
    r = recipe()
    assert instance_kind(r, "onnx") == "KIND_CPU" and not warmup_on(r, "KIND_CPU")
    configs = search_configs(r, "onnxruntime_onnx", {}, instance_kind(r, "onnx"))
    assert all(c.instance_kind == "KIND_CPU" and not c.gpus and c.warmup is None and not c.accelerator
               for c in configs)


def test_a_cuda_recipe_deploys_a_gpu_variant_on_its_gpu_with_warmup() -> None:
    r = on("cuda:1", search={"max_batch_sizes": [8], "instance_counts": [1, 2], "dynamic_batching": [True]},
           load={"batch_size": 2})
    assert deployable("onnx-cuda") is None and variant_parameters("onnx-cuda") == {}
    # cuda:1 shows the servers a build starts only GPU 1, which they number 0
    assert instance_kind(r, "onnx-cuda") == "KIND_GPU" and deployment_gpus(r) == (0,)
    configs = search_configs(r, "onnxruntime_onnx", {}, "KIND_GPU")
    # Triton's default on a GPU machine: one instance on each GPU; then instances per GPU
    assert [(c.instance_kind, c.instance_count, c.gpus) for c in configs] == [
        ("KIND_GPU", 1, (0,)), ("KIND_GPU", 1, (0,)), ("KIND_GPU", 2, (0,))]
    assert not configs[0].dynamic_batching and configs[1].dynamic_batching
    # warm-up at each batch size of the search (the load's request batch, the max batch size)
    assert {c.warmup for c in configs} == {Warmup((2, 8), "zero", (("input_ids", (16,)),))}
    m = _parse(config_text("tiny", "onnxruntime_onnx", [TritonTensor("input_ids", "int64", (-1,))], OUTPUTS,
                           configs[2]))
    assert [w.batch_size for w in m.model_warmup] == [2, 8]


def test_tensorrt_doubles_the_onnxruntime_space_and_not_the_libtorch_one() -> None:
    r = on("cuda", search={"max_batch_sizes": [8], "instance_counts": [1], "dynamic_batching": [False],
                           "accelerators": ["none", "tensorrt"], "gpus": [0, 1]},
           tensorrt={"precision_mode": "FP16", "max_workspace_size_bytes": 2 << 30})
    ort = search_configs(r, "onnxruntime_onnx", {}, "KIND_GPU")
    # the default (no accelerator, one instance per GPU) is also the first searched point
    assert [(c.accelerator, dict(c.accelerator_parameters)) for c in ort] == [
        ("", {}), ("tensorrt", {"precision_mode": "FP16", "max_workspace_size_bytes": "2147483648",
                                "trt_engine_cache_enable": "0"})]
    assert all(c.gpus == (0, 1) for c in ort)
    torch = search_configs(r, "pytorch_libtorch", {}, "KIND_GPU")
    assert [c.accelerator for c in torch] == [""]  # the default is the one point: libtorch has no accelerator
    m = _parse(config_text("tiny", "onnxruntime_onnx", [TritonTensor("input_ids", "int64", (-1,))], OUTPUTS,
                           ort[1]))
    [trt] = m.optimization.execution_accelerators.gpu_execution_accelerator
    assert trt.parameters["max_workspace_size_bytes"] == "2147483648"


def test_which_kind_each_variant_may_take_and_why_not() -> None:
    assert "OpenVINO backend runs on the CPU" in kind_refusal("openvino", "KIND_GPU")
    assert kind_refusal("onnx-cuda", "KIND_CPU").startswith("onnx-cuda is a GPU variant")
    assert "deploy onnx-cuda (the same model on cuda)" in kind_refusal("onnx", "KIND_GPU")
    # TorchScript has no GPU variant: Triton's libtorch backend moves the CPU-traced model to the GPU
    assert kind_refusal("torchscript", "KIND_GPU") == ""
    assert instance_kind(on("cuda:0"), "torchscript") == "KIND_GPU"
    assert instance_kind(on("cuda:0"), "onnx") == "KIND_CPU"  # its GPU twin is what goes on the GPU
    assert instance_kind(on("cuda:0"), "openvino") == "KIND_CPU"
    # auto: the kind follows the device the plan resolved
    assert instance_kind(on("auto"), "torchscript") == "KIND_CPU"
    assert instance_kind(on("auto"), "torchscript", resolved="cuda") == "KIND_GPU"
    # the ranking's top deployable variants, each deployable with the kind it would get
    ranking = ["torch-cuda", "openvino", "onnx-cuda", "torchscript"]
    assert triton_variants(on("cuda", top=2, search={"instance_kind": "KIND_GPU"}), ranking) == \
        ["onnx-cuda", "torchscript"]
    assert triton_variants(on("cuda", top=2), ranking) == ["openvino", "onnx-cuda"]


@pytest.mark.parametrize("triton, expected", [
    ({"variants": ["onnx"], "search": {"instance_kind": "KIND_GPU"}},
     "triton.variants[0]: onnx was checked and profiled on the CPU: deploy onnx-cuda"),
    ({"variants": ["onnx-cuda"], "search": {"instance_kind": "KIND_CPU"}},
     "triton.variants[0]: onnx-cuda is a GPU variant (checked and profiled on cuda): deploy it with KIND_GPU"),
    ({"search": {"instance_kind": "KIND_CPU", "gpus": [1]}},
     "triton.search.gpus: [1] name GPUs but triton.search.instance_kind is KIND_CPU"),
    ({"search": {"instance_kind": "KIND_CPU", "accelerators": ["tensorrt"]}},
     "triton.search.accelerators: tensorrt is a GPU accelerator but triton.search.instance_kind is KIND_CPU"),
    ({"variants": ["openvino"], "search": {"instance_kind": "KIND_GPU"}},
     "triton.variants[0]: Triton's OpenVINO backend runs on the CPU (an NVIDIA GPU is no OpenVINO device); deploy "
     "another variant, or set triton.search.instance_kind: KIND_CPU"),
    ({"search": {"instance_kind": "KIND_CPU"}, "constraints": {"max_gpu_memory_mb": 1000}},
     "triton.constraints.max_gpu_memory_mb: bounds GPU memory but triton.search.instance_kind is KIND_CPU"),
    ({"search": {"accelerators": ["tensorr"]}}, "triton.search.accelerators[0]: unknown value 'tensorr'"),
    ({"constraints": {"max_gpu_memory_mb": 0}}, "triton.constraints.max_gpu_memory_mb: 0.0 must be > 0"),
    ({"variants": ["onnx-cuda"], "search": {"gpus": [1]}},
     "triton.search.gpus: [1]: device cuda:1 shows the servers a build starts only GPU 1, as their GPU 0"),
])
def test_gpu_recipe_problems_name_the_key_path(triton, expected) -> None:
    r = on("cuda:1", **triton)
    r.formats = ["onnx", "onnx-opt", "openvino"]
    r.variants = ["onnx", "onnx-opt", "openvino", "onnx-cuda"]
    problems: list[str] = []
    check_triton(r, problems)
    assert any(expected in p for p in problems), problems


def test_a_gpu_recipe_must_size_the_dynamic_axes_it_warms_up() -> None:
    r = on("cuda")
    r.samples.axes = {}
    problems: list[str] = []
    check_triton(r, problems)
    assert any("triton.warmup: input 'input_ids' has dynamic axes ['seq'] without a size" in p for p in problems)
    r.triton.warmup = False
    problems = []
    check_triton(r, problems)
    assert not any("triton.warmup" in p for p in problems), problems


def test_auto_resolved_to_a_gpu_goes_without_warmup_it_cannot_size_and_says_so(tmp_path: Path) -> None:
    from navbuild.device import Device
    from navbuild.planning.graph import Graph
    from navbuild.planning.target import Leaf
    from navbuild.planning.triton import expand_triton

    r = on("auto", search={"instance_counts": [1], "dynamic_batching": [False]})  # the ranking chooses
    r.formats, r.variants = ["onnx"], ["onnx", "onnx-cuda"]
    r.samples.axes = {}
    problems: list[str] = []
    check_triton(r, problems)
    assert problems == []  # auto is not known to be a GPU until it is resolved
    graph = Graph()
    graph.device = Device("cuda", 0, "auto: a recorded H200")
    for upstream in ("onnx", "reference"):  # the model and the reference, as leaves
        graph.add(Leaf(upstream, tmp_path / upstream, (tmp_path / upstream,)))
    graph.variant_models["onnx-cuda"] = "onnx"
    expand_triton(graph, r, ["onnx-cuda"], tmp_path)
    configs = graph.targets["triton/search/onnx-cuda"].params.configs
    assert {(c.instance_kind, c.gpus, c.warmup) for c in configs} == {("KIND_GPU", (0,), None)}
    assert "triton/onnx-cuda: no model_warmup: input 'input_ids' has dynamic axes ['seq'] without a size" in \
        "\n".join(graph.notes)


# -- Model Analyzer on GPU -------------------------------------------------------------------------

class FakeStack:
    server, backend_dir, perf_analyzer = Path("/s/tritonserver"), Path("/s/backends"), Path("/s/perf_analyzer")

    def env(self, base=None):
        return {"PATH": "/bin"}


def test_analyzer_on_gpu_has_no_cpu_only_and_bounds_gpu_memory(tmp_path: Path) -> None:
    constraints = Constraints(p99_latency_ms=20, max_gpu_memory_mb=6000)
    gpu = analyzer_config(stack=FakeStack(), repository=tmp_path, model_name="m", work=tmp_path, ports=(1, 2, 3),
                          load=LoadSpec((1,)), constraints=constraints, gpus=(1,))
    assert gpu["gpus"] == ["1"]
    assert "cpu_only" not in json.dumps(gpu)
    assert gpu["constraints"]["gpu_used_memory"] == {"max": 6000.0}
    cpu = analyzer_config(stack=FakeStack(), repository=tmp_path, model_name="m", work=tmp_path, ports=(1, 2, 3),
                          load=LoadSpec((1,)))
    assert "gpus" not in cpu  # a CPU configuration's Model Analyzer config is as it was
    assert constraints_section(Constraints(max_memory_mb=1)) == {"cpu_used_ram": {"max": 1.0}}


def test_deployment_config_of_a_gpu_search_is_read_by_model_analyzer(tmp_path: Path) -> None:
    """Model Analyzer's own parser and its brute-search expansion read the GPU space navbuild writes."""
    r = on("cuda", search={"max_batch_sizes": [8], "instance_counts": [1, 2], "dynamic_batching": [False],
                           "accelerators": ["none", "tensorrt"]}, constraints={"max_gpu_memory_mb": 8000})
    space = dataclasses.asdict(_space(r, "onnxruntime_onnx", "KIND_GPU"))
    space["backend_options"] = {}
    config = deployment_config("tiny", space, LoadSpec((1, 2)), Constraints(max_gpu_memory_mb=8000), "throughput", {})
    assert config["constraints"]["gpu_used_memory"] == {"max": 8000.0}
    assert "cpu_only" not in json.dumps(config)
    assert config["profile_models"]["tiny"]["model_config_parameters"]["instance_group"] == [
        {"kind": "KIND_GPU", "count": [1, 2], "gpus": [0]}]
    combos = _model_analyzer_combinations(tmp_path, config)
    assert len(combos) == 4  # 2 instance counts x (no accelerator, tensorrt)
    accelerators = [c["optimization"]["execution_accelerators"]["gpu_execution_accelerator"] for c in combos]
    assert sorted((c["instance_group"][0]["count"], a[0]["name"] if a else "") for c, a in zip(combos, accelerators)) \
        == [(1, ""), (1, "tensorrt"), (2, ""), (2, "tensorrt")]
    assert {c["instance_group"][0]["kind"] for c in combos} == {"KIND_GPU"}


def _model_analyzer_combinations(tmp_path: Path, config: dict) -> list[dict]:
    """The model configurations Model Analyzer's brute search makes of ``config`` (its own CLI parser)."""
    pytest.importorskip("model_analyzer")
    from model_analyzer.cli.cli import CLI
    from model_analyzer.config.generate.generator_utils import GeneratorUtils
    from model_analyzer.config.input.config_command_profile import ConfigCommandProfile

    (tmp_path / "model_repository" / "tiny").mkdir(parents=True)
    config = {**config, "model_repository": str(tmp_path / "model_repository"), "perf_analyzer_path": sys.executable}
    path = tmp_path / "model_analyzer.yaml"
    path.write_text(yaml.safe_dump(config))
    profile = ConfigCommandProfile()
    cli = CLI()
    cli.add_subcommand(cmd="profile", help="", config=profile)
    argv = sys.argv
    sys.argv = ["model-analyzer", "profile", "-f", str(path)]
    try:
        cli.parse()
    finally:
        sys.argv = argv
    [spec] = profile.profile_models
    return GeneratorUtils.generate_combinations(spec.model_config_parameters())


def test_a_checkpoint_with_gpu_metrics_gives_gpu_memory_and_utilization() -> None:
    """data/checkpoint_gpu.json was written by Model Analyzer's classes and encoder
    (data/record_checkpoint_gpu.py): two GPUs, two load points."""
    path = DATA / "checkpoint_gpu.json"
    rows = parse_checkpoint(path, "minilm_onnx_cuda")
    assert [(r["concurrency"], r["throughput"], r["p99_ms"]) for r in rows] == [(1, 410.5, 3.1), (4, 1502.25, 4.4)]
    # memory summed over the GPUs, utilization averaged (as Model Analyzer aggregates them)
    assert [(r["gpu_memory_mb"], r["gpu_utilization"]) for r in rows] == [(2400.0, 30.0), (2752.0, 86.0)]
    # Model Analyzer reads the same recording back to the same aggregate
    ma = pytest.importorskip("model_analyzer.result.run_config_measurement")
    data = json.loads(path.read_text())
    measurements = data["ResultManager.results"]["_results"]["minilm_onnx_cuda"]["minilm_onnx_cuda_config_default"][1]
    aggregated = [ma.RunConfigMeasurement.from_dict(m).get_gpu_metric("gpu_used_memory").value()
                  for m in measurements.values()]
    assert aggregated == [2400.0, 2752.0]


def test_gpu_memory_bound_excludes_load_points_and_is_reported(tmp_path: Path) -> None:
    rows = parse_checkpoint(DATA / "checkpoint_gpu.json", "minilm_onnx_cuda")
    bound = Constraints(max_gpu_memory_mb=2500)
    assert [bound.met_by(r) for r in rows] == [True, False]
    [best] = rank({"cfg": rows}, bound, "throughput", {})
    assert best.row["concurrency"] == 1
    assert closest({"cfg": rows}, Constraints(max_gpu_memory_mb=1000))[0]["concurrency"] == 1
    table = [{"config": "cfg", **r, "meets_constraints": bound.met_by(r)} for r in rows]
    _write_table(tmp_path / "t.csv", table)
    assert (tmp_path / "t.csv").read_text().splitlines()[0].endswith("gpu_memory_mb,gpu_utilization")
    section = {"variants": {"onnx-cuda": {"backend": "onnxruntime_onnx", "model": "m", "search_status": "built",
                                          "table": table}}, "problems": []}
    assert "GPU 2400 MB 30%" in "\n".join(render_triton_text(section))


# -- keys: the GPU fields stay out of CPU keys -------------------------------------------------------

def test_gpu_fields_join_a_key_only_when_set() -> None:
    cpu = ModelConfig(max_batch_size=8, instance_count=2)
    assert set(key_data(cpu)) == {"max_batch_size", "instance_count", "instance_kind", "dynamic_batching",
                                  "max_queue_delay_us", "preferred_batch_sizes", "backend_parameters"}
    gpu = ModelConfig(instance_kind="KIND_GPU", gpus=(0,), accelerator="tensorrt", accelerator_parameters=TRT,
                      warmup=Warmup((1,)))
    assert {"gpus", "accelerator", "accelerator_parameters", "warmup"} <= set(key_data(gpu))
    assert set(key_data(Constraints(p99_latency_ms=1))) == {"p99_latency_ms", "min_throughput", "max_memory_mb"}


def test_gpu_search_params_survive_the_job_round_trip() -> None:
    r = on("cuda", search={"accelerators": ["none", "tensorrt"], "gpus": [0, 1]}, constraints={"max_gpu_memory_mb": 512})
    configs = tuple(search_configs(r, "onnxruntime_onnx", {"graph_level": "basic"}, "KIND_GPU"))
    params = SearchParams(name="m", variant="onnx-cuda", backend="onnxruntime_onnx", mode="", configs=configs,
                          default_index=0, constraints=Constraints(max_gpu_memory_mb=512), objective="throughput",
                          weights=(), load=LoadSpec((1,)), space=_space(r, "onnxruntime_onnx", "KIND_GPU"))
    again = params_from_dict(SearchParams, json.loads(json.dumps(params_to_dict(params))))
    assert again == params
    assert again.space.gpus == (0, 1) and again.configs[-1].warmup is not None


def test_added_fields_default_factories_are_omitted_too() -> None:
    @dataclasses.dataclass(frozen=True)
    class P:
        a: int = 1
        b: tuple[int, ...] = added(factory=tuple)

    assert key_data(P()) == {"a": 1} and key_data(P(b=(2,))) == {"a": 1, "b": (2,)}


def test_the_tensorrt_precisions_are_declared_once() -> None:
    from navbuild.settings import choices_of
    from navbuild.recipe.schema import TritonTensorRTConfig

    assert choices_of(TritonTensorRTConfig, "precision_mode") == \
        ORT_BACKEND.gpu_accelerators["tensorrt"]["precision_mode"].choices
