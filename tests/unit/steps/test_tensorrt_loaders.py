"""The loader chains TensorRtFromOnnx builds, read back without TensorRT: precision flags, profiles, builder
settings, timing cache, int8 calibration data; the polygraphy command lines of its reproduce script."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from navbuild.execute.isolation import write_job
from navbuild.formats.common import tensor_specs
from navbuild.formats.tensorrt_profiles import derive_profiles, profile_for, recipe_sizes
from navbuild.runners.trt_runner import read_engine_facts, write_engine_facts
from navbuild.steps.base import params_to_dict
from navbuild.steps.tensorrt_from_onnx import (TensorRtFromOnnx, TensorRtParams, compute_capability, fp8_refusal,
                                               timing_cache_file)
from navbuild.steps.tensorrt_loaders import (CALIBRATION_CACHE, PoolLimits, calibration_data, convert_command,
                                             create_config, engine_chain, save_calibration_inputs)
from tests.unit.formats.test_tensorrt_profiles import bert_like  # the recipe with a seq axis

pytest.importorskip("polygraphy")

FLAGS = ("fp16", "bf16", "int8", "fp8", "tf32")


def params(precision: str = "fp16", mode: str = "single", **section) -> TensorRtParams:
    r = bert_like()
    for k, v in section.items():
        setattr(r.tensorrt, k, v)
    return TensorRtParams.from_section(r.tensorrt, precision=precision,
                                       profiles=derive_profiles(tensor_specs(r), recipe_sizes(r), mode))


@pytest.mark.parametrize("precision, on", [("fp32", set()), ("fp16", {"fp16"}), ("bf16", {"bf16"}),
                                           ("int8", {"int8"}), ("fp8", {"fp8", "fp16"})])
def test_each_precision_sets_exactly_its_builder_flags(precision: str, on: set[str]) -> None:
    config = create_config(params(precision), timing_cache=None)
    assert {f for f in FLAGS if getattr(config, f)} == on
    assert "tensorrt" not in sys.modules  # built and read without TensorRT


def test_the_chain_holds_the_profiles_builder_settings_and_timing_cache(tmp_path: Path) -> None:
    p = params("fp16", "per_batch_size", workspace_mb=2048, builder_optimization_level=5, sparsity=True)
    cache = tmp_path / "gpu.timing-cache"
    save = engine_chain(p, tmp_path / "model.onnx", tmp_path / "model.plan", cache)
    assert save.path == str(tmp_path / "model.plan")
    build = save._engine
    assert build.timing_cache_path == str(cache)  # saved after the build
    network, config = build._network, build._config
    assert network.path == str(tmp_path / "model.onnx")
    assert config.timing_cache_path == str(cache)  # loaded before it
    assert config.builder_optimization_level == 5 and config.sparse_weights is True
    assert isinstance(config.memory_pool_limits, PoolLimits)
    assert dict(config.memory_pool_limits) == {"WORKSPACE": 2048 * 2**20}
    assert config.calibrator is None
    # per_batch_size with profiled 1, 4 and probe batch 3: two buckets; seq 65..193 tuned for 128
    assert [(dict(prof)["input_ids"].min, dict(prof)["input_ids"].opt, dict(prof)["input_ids"].max)
            for prof in config.profiles] == [((1, 65), (1, 128), (1, 193)), ((2, 65), (4, 128), (4, 193))]
    assert [sorted(dict(prof)) for prof in config.profiles] == [["input_ids", "mask"]] * 2
    assert "tensorrt" not in sys.modules


def test_without_a_timing_cache_the_chain_neither_loads_nor_saves_one(tmp_path: Path) -> None:
    build = engine_chain(params(timing_cache=False), tmp_path / "m.onnx", tmp_path / "m.plan", None)._engine
    assert build.timing_cache_path is None and build._config.timing_cache_path is None


def test_int8_calibration_reads_the_samples_in_batches_and_writes_its_cache_in_the_output(tmp_path: Path) -> None:
    samples = {"input_ids": np.arange(10 * 5).reshape(10, 5), "mask": np.ones((10, 5), np.int64),
               "y": np.zeros((10, 2))}
    data = calibration_data(samples, ["input_ids", "mask"], batch_size=4, max_rows=9,
                            cache=tmp_path / CALIBRATION_CACHE)
    assert [b["input_ids"].shape[0] for b in data.batches] == [4, 4, 1]
    assert all(sorted(b) == ["input_ids", "mask"] for b in data.batches)
    np.testing.assert_array_equal(data.batches[1]["input_ids"], samples["input_ids"][4:8])
    assert data.cache == tmp_path / "calibration.cache"
    with pytest.raises(ValueError, match="no input.*token_type_ids.*int8 calibration"):
        calibration_data(samples, ["token_type_ids"], 4, 9, tmp_path / "c")
    # the reproduce script's polygraphy reads the same batches back
    save_calibration_inputs(data, tmp_path / "calibration_inputs.json")
    from polygraphy.json import load_json
    again = load_json(str(tmp_path / "calibration_inputs.json"))
    assert len(again) == 3 and np.array_equal(again[2]["mask"], data.batches[2]["mask"])
    # the calibrator itself is TensorRT's class: built at engine build time, handed to the chain then
    marker = object()
    assert create_config(params("int8"), None, calibrator=marker).calibrator is marker


def test_the_polygraphy_command_repeats_the_chain() -> None:
    p = params("int8", "per_batch_size", workspace_mb=1024, sparsity=True)
    cmd = convert_command(p, timing_cache="t.cache", calibration_cache="calibration.cache",
                          calibration_inputs="calibration_inputs.json")
    text = " ".join(cmd)
    assert cmd[:5] == ["polygraphy", "convert", "model.onnx", "--convert-to", "trt"] and "--int8" in cmd
    assert text.count("--trt-min-shapes") == 2  # one triple per profile
    assert ("--trt-min-shapes input_ids:[1,65] mask:[1,65] --trt-opt-shapes input_ids:[1,128] mask:[1,128] "
            "--trt-max-shapes input_ids:[1,193] mask:[1,193]") in text
    assert "--pool-limit workspace:1024M" in text and "--sparse-weights" in cmd
    assert "--builder-optimization-level 3" in text
    assert "--load-timing-cache t.cache --save-timing-cache t.cache" in text
    assert "--load-inputs calibration_inputs.json --calibration-cache calibration.cache" in text
    assert cmd[-2:] == ["-o", "model.plan"]


def test_reproduce_sh_carries_the_polygraphy_lines(tmp_path: Path) -> None:
    p = params("fp16")
    write_job(tmp_path, "tensorrt-fp16", "TensorRtFromOnnx", params_to_dict(p), {"onnx": tmp_path}, tmp_path, [])
    script = (tmp_path / "reproduce.sh").read_text()
    assert ("#   polygraphy convert model.onnx --convert-to trt --fp16 --trt-min-shapes 'input_ids:[1,65]' "
            "'mask:[1,65]' --trt-opt-shapes 'input_ids:[4,128]'") in script
    assert ("#   polygraphy run model.plan --model-type engine --trt --input-shapes 'input_ids:[4,128]' "
            "'mask:[4,128]'") in script
    assert "-m navbuild.execute.child" in script  # the navbuild line still re-runs the step itself


def test_fp8_is_refused_below_compute_capability_8_9_from_the_recorded_fingerprint() -> None:
    assert compute_capability({"compute_capability": "9.0"}) == (9, 0)
    assert compute_capability({"compute_capability": "unknown"}) is None
    a100 = {"name": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"}
    assert fp8_refusal(a100) == "fp8 needs compute capability 8.9 or newer (NVIDIA A100-SXM4-80GB has 8.0)"
    assert fp8_refusal({"name": "NVIDIA L4", "compute_capability": "8.9"}) == ""
    assert TensorRtFromOnnx.gpu_refusal(params("fp8"), a100) and not TensorRtFromOnnx.gpu_refusal(params("fp16"), a100)


def test_one_timing_cache_per_gpu_named_by_its_fingerprint(tmp_path: Path) -> None:
    h200 = {"name": "NVIDIA H200", "compute_capability": "9.0", "driver": "570.124.06"}
    a100 = {"name": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0", "driver": "535.183.01"}
    assert timing_cache_file(tmp_path, h200) == timing_cache_file(tmp_path, dict(reversed(h200.items())))
    assert timing_cache_file(tmp_path, h200) != timing_cache_file(tmp_path, a100)
    assert timing_cache_file(tmp_path, h200).parent == tmp_path


def test_the_engine_facts_the_runner_reads_are_what_the_step_wrote(tmp_path: Path) -> None:
    p = params("fp16", "per_batch_size")
    write_engine_facts(tmp_path, ["input_ids", "mask"], ["logits"], p.precision, p.profiles)
    inputs, outputs, profiles = read_engine_facts(tmp_path)
    assert (inputs, outputs, profiles) == (["input_ids", "mask"], ["logits"], p.profiles)
    # the runner switches to the profile that covers a feed: batch 3 is the second bucket's
    assert profile_for(profiles, {"input_ids": (3, 100), "mask": (3, 100)}) == 1
