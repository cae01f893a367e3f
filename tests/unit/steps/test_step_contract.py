"""The step classes keep the contract: light imports, registered names, Params that survive JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from navbuild.formats.tensorrt_profiles import EngineProfile, ShapeRange
from navbuild.model_io import TensorSpec
from navbuild.steps.base import Step, load_step, params_from_dict, params_to_dict, step_refs
from navbuild.runtime import RuntimeOptions, TorchFactory

ROOT = Path(__file__).resolve().parents[3]
MODULES = ["navbuild.steps.reference", "navbuild.steps.onnx_from_torch", "navbuild.steps.ort_optimized",
           "navbuild.steps.correctness", "navbuild.steps.profile", "navbuild.runners",
           "navbuild.runners.torch_runner", "navbuild.runners.ort_runner", "navbuild.samples",
           "navbuild.examples.models", "navbuild.steps.triton_model", "navbuild.steps.triton_measure",
           "navbuild.steps.triton_search", "navbuild.steps.triton_validate", "navbuild.planning.triton",
           "navbuild.formats"]

X = (TensorSpec("x", "float32", ("batch", 8), low=-1.0, high=1.0),)
FACTORY = TorchFactory("tests.models:tiny_mlp", {"hidden": 4, "nested": {"a": [1, 2]}})
EXAMPLES = {
    "TensorRtFromOnnx": dict(precision="fp16", profiles=(EngineProfile((ShapeRange("x", (1, 8), (4, 8), (8, 8)),)),),
                             workspace_mb=1024, builder_optimization_level=3, sparsity=False, timing_cache=True,
                             calibration_rows=64),
    "ReferenceFromSource": dict(source_format="torch", factory=FACTORY, inputs=X, outputs=("y",), count=3,
                                seed=0, axes={"seq": 4}, batch_sizes=(1, 4), threads=2),
    "OnnxFromTorch": dict(factory=FACTORY, inputs=X, outputs=("y",), axes={}, opset=17,
                          exporter="dynamo", seed=0),
    "OrtOptimizedFromOnnx": dict(level="all", fusion="bert", num_heads=12, hidden_size=768),
    "CheckCorrectness": dict(variant_format="onnx", factory=None, outputs=(), batch_sizes=(1, 8),
                             atol=1e-4, rtol=1e-3, runtime=RuntimeOptions(2, 1, "basic")),
    "ProfilePerformance": dict(variant_format="torch", factory=FACTORY, batch_sizes=(1,),
                               runtime=RuntimeOptions(), warmup_iters=5, window_s=0.5,
                               min_window_iters=10, stable_windows=3, stability=0.05,
                               max_windows=20, pin_cores=True),
}


def _triton_examples() -> dict:
    from navbuild.steps.correctness import CorrectnessParams
    from navbuild.steps.triton_search import SearchSpace
    from navbuild.triton.analyzer import Constraints, LoadSpec
    from navbuild.triton.model_config import ModelConfig

    config = ModelConfig(max_batch_size=8, instance_count=2, dynamic_batching=True, max_queue_delay_us=100,
                         backend_parameters={"intra_op_thread_count": "1"})
    load = LoadSpec((1, 2, 4), batch_size=1)
    check = CorrectnessParams(variant_format="onnx", factory=None, outputs=(), batch_sizes=(1, 8), atol=1e-4,
                              rtol=1e-3, runtime=RuntimeOptions())
    return {
        "WriteTritonModel": dict(name="m_onnx", variant="onnx", runner="onnx", backend="onnxruntime_onnx", mode="",
                                 inputs=X, batch_size=8, max_batch_size=8),
        "MeasureTritonConfig": dict(name="m_onnx", backend="onnxruntime_onnx", mode="", config=config, load=load,
                                    collect_memory=False),
        "SearchTritonConfig": dict(name="m_onnx", variant="onnx", backend="onnxruntime_onnx", mode="",
                                   configs=(ModelConfig(), config), default_index=0,
                                   constraints=Constraints(p99_latency_ms=20.0), objective="weighted",
                                   weights=(("latency", 1.0), ("throughput", 2.0)), load=load,
                                   space=SearchSpace((8,), (1, 2), "KIND_CPU", (False, True), (0, 100),
                                                     (("intra_op_thread_count", ("1", "2")),))),
        "ValidateTritonModel": dict(name="m_onnx", protocols=("http", "grpc"), check=check, url=None, grpc_url=None,
                                    startup_timeout_s=60.0),
    }


EXAMPLES.update(_triton_examples())


def test_step_modules_do_not_import_heavy_packages() -> None:
    code = ("import sys\n"
            f"for m in {MODULES!r}: __import__(m)\n"
            "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'transformers') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


#: what cannot be installed on these machines (no GPU, no CPU wheel): its absence is what their plans report
NOT_INSTALLABLE_HERE = {"TensorRtFromOnnx": ["tensorrt"], "TorchTensorRtFromTorch": ["torch_tensorrt"]}


@pytest.mark.parametrize("name", sorted(step_refs()))
def test_registered_step(name: str) -> None:
    cls = load_step(name)
    assert issubclass(cls, Step) and cls.name == name and cls.version >= 1
    # TensorRT cannot be installed on these machines (no GPU): its absence is what their plans report
    assert cls.missing_requirements() == NOT_INSTALLABLE_HERE.get(name, [])
    assert all(isinstance(t, str) for t in cls.tools)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_params_round_trip_through_json(name: str) -> None:
    cls = load_step(name)
    params = cls.Params(**EXAMPLES[name])
    data = json.loads(json.dumps(params_to_dict(params), sort_keys=True))
    rebuilt = params_from_dict(cls.Params, data)
    assert params_to_dict(rebuilt) == params_to_dict(params)
    assert rebuilt == params  # nested TensorSpec / TorchFactory / RuntimeOptions come back typed


def test_only_measurements_are_hardware_dependent() -> None:
    # besides the measurements: an AOTInductor package is machine code for this CPU's ISA (or GPU's arch), a
    # TensorRT engine (alone, or inside a Torch-TensorRT program) for its GPU
    assert [n for n in sorted(step_refs()) if load_step(n).hardware_dependent] == [
        "AotiFromTorch", "CompareFinalists", "MeasureTritonConfig", "ProfilePerformance", "TensorRtFromOnnx",
        "TorchTensorRtFromTorch"]
    # ORT's level-"all" graphs bake in CPU-specific layouts: hardware joins their key
    opt = load_step("OrtOptimizedFromOnnx")
    assert opt.depends_on_hardware(opt.Params(level="all", fusion=None))
    assert not opt.depends_on_hardware(opt.Params(level="extended", fusion=None))


def test_installed_checks_import_names_and_dashed_distributions_without_importing() -> None:
    from navbuild.steps.base import installed

    assert installed("json") and installed("hydra-core")
    assert not installed("navbuild_no_such_module") and not installed("navbuild-no-such-dist")
