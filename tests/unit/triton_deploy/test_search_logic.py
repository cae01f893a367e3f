"""Pure Triton search logic: the search space, load points, Model Analyzer mapping, ranking, recipe checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from navbuild.errors import RecipeError
from navbuild.planning.triton import concurrency, model_name, search_configs
from navbuild.recipe.schema import Recipe
from navbuild.recipe.validate_triton import check_triton
from navbuild.triton.analyzer import (Constraints, LoadSpec, analyzer_config, constraints_section,
                                      deployment_config, objectives_section)
from navbuild.triton.ranking import closest, rank


def recipe(**triton) -> Recipe:
    cfg = OmegaConf.merge(OmegaConf.structured(Recipe), {
        "name": "tiny", "source": {"onnx": "m.onnx"}, "formats": ["onnx", "onnx-opt"],
        "inputs": [{"name": "x", "shape": ["batch", 4]}], "triton": {"enabled": True, **triton}})
    return OmegaConf.to_object(cfg)


# -- the search space ------------------------------------------------------------------------------

def test_default_config_comes_first_then_the_product_without_duplicates():
    r = recipe(search={"max_batch_sizes": [4, 8], "instance_counts": [1, 2], "dynamic_batching": [False, True],
                       "max_queue_delays_us": [0, 500]})
    configs = search_configs(r, "onnxruntime_onnx")
    assert configs[0].instance_count == 2 and not configs[0].dynamic_batching  # Triton's ORT default
    assert configs[0].max_batch_size == 8
    labels = [c.label() for c in configs]
    assert len(labels) == len(set(labels))
    # 2 mbs x 2 counts x (1 without batching + 2 delays with) = 12, minus the default already listed
    assert len(configs) == 12
    assert all(c.max_queue_delay_us == 0 for c in configs if not c.dynamic_batching)


def test_backend_options_multiply_only_their_own_backend():
    r = recipe(search={"instance_counts": [1], "dynamic_batching": [True],
                       "backend_options": {"onnxruntime_onnx": {"intra_op_thread_count": [1, 2]}}})
    ort = search_configs(r, "onnxruntime_onnx")
    assert [dict(c.backend_parameters) for c in ort[1:]] == [{"intra_op_thread_count": "1"},
                                                            {"intra_op_thread_count": "2"}]
    assert len(search_configs(r, "openvino")) == 2  # the default and one point: no ORT options there


def test_a_variant_s_own_parameters_are_in_every_config_and_win_over_the_space():
    from navbuild.planning.triton import variant_parameters

    assert variant_parameters("onnx") == {} and variant_parameters("openvino") == {}
    assert variant_parameters("onnx-basic") == {"graph_level": "basic"}
    assert variant_parameters("openvino-bf16") == {"HINT_BF16": "YES"}
    r = recipe(search={"instance_counts": [1], "dynamic_batching": [True],
                       "backend_options": {"onnxruntime_onnx": {"graph_level": ["basic", "all"],
                                                                "intra_op_thread_count": [1]}}})
    configs = search_configs(r, "onnxruntime_onnx", variant_parameters("onnx-extended"))
    assert all(dict(c.backend_parameters)["graph_level"] == "extended" for c in configs)
    assert configs[0].instance_count == 2 and not configs[0].dynamic_batching  # still Triton's default
    assert len(configs) == 2  # the space's two levels collapse into the variant's one


def test_automatic_load_doubles_up_to_the_cap():
    assert concurrency(recipe(load={"max_concurrency": 8})) == (1, 2, 4, 8)
    assert concurrency(recipe(load={"concurrency": [4, 1, 4]})) == (1, 4)


def test_model_names_are_triton_safe():
    assert model_name("minilm", "onnx-int8-dynamic") == "minilm_onnx_int8_dynamic"


# -- recipe checks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("triton, expected", [
    ({"search": {"max_batch_sizes": [0]}}, "triton.search.max_batch_sizes[0]: 0 must be >= 1"),
    ({"search": {"instance_counts": [-1]}}, "triton.search.instance_counts[0]: -1 must be >= 1"),
    ({"search": {"backend_options": {"onnxruntime_onnx": {"intra_op_threads": [1]}}}},
     "triton.search.backend_options.onnxruntime_onnx: unknown backend option 'intra_op_threads'"),
    ({"search": {"backend_options": {"onnxruntime": {"x": [1]}}}},
     "triton.search.backend_options: unknown key 'onnxruntime'"),
    ({"objective": "fastest"}, "triton.objective: unknown value 'fastest'"),
    ({"constraints": {"p99_latency_ms": -5}}, "triton.constraints.p99_latency_ms: -5.0 must be > 0"),
    ({"variants": ["torch"]}, "triton.variants[0]: 'torch' is not a variant this recipe builds"),
    ({"load": {"batch_size": 16}}, "triton.load.batch_size: 16 exceeds triton.search.max_batch_sizes"),
])
def test_invalid_search_spaces_name_the_key_path(triton, expected):
    problems: list[str] = []
    check_triton(recipe(**triton), problems)
    assert any(expected in p for p in problems), problems


def test_a_torch_only_recipe_cannot_deploy():
    r = recipe()
    r.formats = ["torch"]
    problems: list[str] = []
    check_triton(r, problems)
    assert any("none of this recipe's variants has a native Triton backend" in p for p in problems)


def test_the_section_is_not_checked_when_off():
    r = recipe(search={"max_batch_sizes": [0]})
    r.triton.enabled = False
    problems: list[str] = []
    check_triton(r, problems)
    assert problems == []


def test_semantic_check_reports_triton_problems_with_the_rest(tmp_path: Path):
    from navbuild.recipe.validate import check_semantics

    (tmp_path / "m.onnx").write_bytes(b"x")
    r = recipe(search={"max_batch_sizes": [0], "instance_counts": [-2]})
    with pytest.raises(RecipeError) as err:
        check_semantics(r, tmp_path)
    text = str(err.value)
    assert "max_batch_sizes[0]" in text and "instance_counts[0]" in text


# -- Model Analyzer mapping ------------------------------------------------------------------------

def test_constraints_map_onto_model_analyzer_metrics():
    c = Constraints(p99_latency_ms=50, min_throughput=100, max_memory_mb=2048)
    assert constraints_section(c) == {"perf_latency_p99": {"max": 50.0}, "perf_throughput": {"min": 100.0},
                                      "cpu_used_ram": {"max": 2048.0}}
    assert constraints_section(Constraints()) == {}


def test_objectives_map_onto_model_analyzer_weights():
    assert objectives_section("throughput", {}) == {"perf_throughput": 10}
    assert objectives_section("latency", {}) == {"perf_latency_p99": 10}
    assert objectives_section("weighted", {"throughput": 2, "latency": 1}) == {"perf_throughput": 2,
                                                                               "perf_latency_p99": 1}
    with pytest.raises(ValueError, match="unknown objective"):
        objectives_section("cheapest", {})


class FakeStack:
    server, backend_dir, perf_analyzer = Path("/s/tritonserver"), Path("/s/backends"), Path("/s/perf_analyzer")

    def env(self, base=None):
        return {"LD_LIBRARY_PATH": "/a:/b", "PYTHONPATH": "/p", "PATH": "/bin", "HOME": "/root"}


def test_analyzer_config_measures_the_models_own_config_on_loopback_ports(tmp_path: Path):
    cfg = analyzer_config(stack=FakeStack(), repository=tmp_path / "repo", model_name="m", work=tmp_path,
                          ports=(1001, 1002, 1003), load=LoadSpec((1, 4), batch_size=2),
                          input_data=tmp_path / "in.json", constraints=Constraints(p99_latency_ms=20),
                          objective="throughput")
    assert cfg["run_config_search_disable"] is True
    assert cfg["triton_launch_mode"] == "local"
    assert cfg["triton_grpc_endpoint"] == "127.0.0.1:1002"
    assert cfg["triton_server_flags"]["http_address"] == "127.0.0.1"
    assert cfg["triton_server_environment"] == {"LD_LIBRARY_PATH": "/a:/b", "PYTHONPATH": "/p", "PATH": "/bin"}
    assert cfg["profile_models"]["m"]["parameters"] == {"concurrency": [1, 4], "batch_sizes": [2]}
    assert cfg["perf_analyzer_flags"]["input-data"].endswith("in.json")
    assert cfg["perf_analyzer_flags"]["measurement-mode"] == "time_windows"
    assert cfg["constraints"] == {"perf_latency_p99": {"max": 20.0}}
    assert cfg["checkpoint_directory"].startswith(str(tmp_path))  # never shared between models


def test_deployment_config_repeats_the_whole_search():
    space = {"max_batch_sizes": [4, 8], "instance_counts": [1, 2], "instance_kind": "KIND_CPU",
             "dynamic_batching": [False, True], "max_queue_delays_us": [0, 100],
             "backend_options": {"intra_op_thread_count": ["1", "2"]}}
    cfg = deployment_config("m", space, LoadSpec((1, 2)), Constraints(p99_latency_ms=9), "latency", {})
    params = cfg["profile_models"]["m"]["model_config_parameters"]
    assert params["max_batch_size"] == [4, 8]
    assert params["instance_group"] == [{"kind": "KIND_CPU", "count": [1, 2]}]
    assert params["dynamic_batching"] == {"max_queue_delay_microseconds": [0, 100]}
    assert params["parameters"] == {"intra_op_thread_count": {"string_value": ["1", "2"]}}
    assert cfg["constraints"] == {"perf_latency_p99": {"max": 9.0}}
    assert cfg["objectives"] == {"perf_latency_p99": 10}


# -- ranking ---------------------------------------------------------------------------------------

def row(c, thr, p99, mem=None):
    return {"concurrency": c, "throughput": thr, "p99_ms": p99, "memory_mb": mem}


RESULTS = {"default": [row(1, 100, 5), row(4, 150, 40)],
           "db": [row(1, 90, 6), row(4, 260, 18), row(8, 300, 35)]}


def test_best_load_point_under_the_budget_wins():
    ranking = rank(RESULTS, Constraints(p99_latency_ms=20), "throughput", {})
    assert [c.label for c in ranking] == ["db", "default"]
    assert ranking[0].row["concurrency"] == 4 and ranking[1].row["concurrency"] == 1


def test_latency_objective_prefers_the_lowest_p99():
    assert rank(RESULTS, Constraints(), "latency", {})[0].label == "default"


def test_weighted_objective_trades_both():
    heavy_latency = rank(RESULTS, Constraints(), "weighted", {"throughput": 0.1, "latency": 10})
    heavy_throughput = rank(RESULTS, Constraints(), "weighted", {"throughput": 10, "latency": 0.1})
    assert heavy_latency[0].label == "default" and heavy_throughput[0].label == "db"


def test_unmeetable_constraints_give_no_winner_and_the_closest_configs():
    c = Constraints(p99_latency_ms=1)
    assert rank(RESULTS, c, "throughput", {}) == []
    near = closest(RESULTS, c)
    assert [n["label"] for n in near] == ["default", "db"]
    assert near[0]["violation"] == pytest.approx(4.0)


def test_memory_cap_excludes_points():
    results = {"a": [row(1, 500, 5, mem=4000)], "b": [row(1, 100, 5, mem=500)]}
    assert rank(results, Constraints(max_memory_mb=1000), "throughput", {})[0].label == "b"


def test_which_variants_triton_can_serve_and_why_not() -> None:
    from navbuild.recipe.validate_triton import deployable

    for served in ("onnx", "onnx-basic", "torchscript", "openvino", "openvino-bf16", "openvino-int8"):
        assert deployable(served) is None
    assert "Triton has no native backend" in deployable("torch-compile")
    assert "OpenVINO execution provider, which navbuild does not deploy" in deployable("onnx-openvino-ep")
    assert deployable("nope") == "unknown variant 'nope'"
