"""TensorRT engines in the plan: read from the sanitized ONNX model, unavailable with their reason where TensorRT
or a GPU is missing, fp8 refused below compute capability 8.9, and keys bound to the GPU and the TensorRT version.

GPUs are recorded facts (nvidia-smi lines), as in test_gpu_plan; the CLI plan runs on this machine as it is.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import navbuild
from navbuild.cache.keys import cache_key, explain_change
from navbuild.device import Machine, fingerprint_of
from navbuild.planning.planner import expand
from navbuild.planning.status import payload_for, plan_statuses
from navbuild.steps import base as step_base
from test_gpu_plan import A100, CPU_MACHINE, CUDA_TORCH, H200, on_machine  # noqa: F401 (fixture)
from test_planner import FakeStore, mlp_recipe

ENGINES = ["tensorrt", "tensorrt-fp16", "tensorrt-bf16", "tensorrt-int8", "tensorrt-fp8"]
TRT = dict(formats=["tensorrt"], precisions=["fp32", "fp16", "bf16", "int8", "fp8"], device="cuda")


def test_every_engine_is_built_on_the_gpu_from_the_sanitized_onnx_and_int8_reads_the_samples(on_machine) -> None:
    on_machine(Machine((H200,), "nvidia-smi", CUDA_TORCH))
    graph = expand(mlp_recipe(**TRT), Path("."))
    assert graph.variants() == ENGINES
    for engine in ENGINES:
        target = graph.targets[engine]
        assert target.step == "TensorRtFromOnnx" and target.gpu == 0
        assert target.inputs["onnx"] == "onnx-sanitized"
        assert ("reference" in target.inputs) == (engine == "tensorrt-int8")
        assert target.params.precision == ("fp32" if engine == "tensorrt" else engine.split("-")[1])
        assert graph.targets[f"correctness/{engine}"].inputs["model"] == engine
    # the profiles are in the Params, hence the key: batch 1..8 (profiled 1, 8; probe 3), tuned for 8
    ranges = graph.targets["tensorrt"].params.profiles[0].inputs
    assert [(r.name, r.min, r.opt, r.max) for r in ranges] == [("x", (1, 64), (8, 64), (8, 64))]
    assert graph.targets["onnx-sanitized"].gpu is None  # the clean-up runs on the CPU


def test_where_tensorrt_is_missing_every_engine_says_why(on_machine, monkeypatch) -> None:
    on_machine(Machine((H200,), "nvidia-smi", CUDA_TORCH))
    plan = plan_statuses(expand(mlp_recipe(**TRT), Path(".")), FakeStore(), previous=None).by_id()
    for engine in ENGINES:
        assert plan[engine].label == "unavailable: tensorrt not installed", engine
        assert plan[f"profile/{engine}"].status == "unavailable"
    assert plan["onnx-sanitized"].status == "missing"  # what the engines read is built anyway


def test_fp8_is_unavailable_on_a_gpu_below_compute_capability_8_9(on_machine, monkeypatch) -> None:
    # TensorRT counted as installed (the only pure-logic stand-in): the GPU's own refusal is what is shown
    real = step_base.installed
    monkeypatch.setattr(step_base, "installed", lambda name: True if name == "tensorrt" else real(name))
    on_machine(Machine((dataclasses.replace(A100, index=0),), "nvidia-smi", CUDA_TORCH))  # the only GPU
    plan = plan_statuses(expand(mlp_recipe(**TRT), Path(".")), FakeStore(), previous=None).by_id()
    assert plan["tensorrt-fp8"].label == ("unavailable: fp8 needs compute capability 8.9 or newer "
                                          "(NVIDIA A100-SXM4-80GB has 8.0)")
    assert plan["correctness/tensorrt-fp8"].label == "unavailable: input tensorrt-fp8 is unavailable"
    assert plan["tensorrt-fp16"].status == "missing"
    on_machine(Machine((H200,), "nvidia-smi", CUDA_TORCH))
    plan = plan_statuses(expand(mlp_recipe(**TRT), Path(".")), FakeStore(), previous=None).by_id()
    assert plan["tensorrt-fp8"].status == "missing"  # 9.0: built


def test_on_another_gpu_the_engines_get_new_keys_and_everything_else_keeps_its_own(on_machine) -> None:
    """A .nav package continued on an A100 after an H200: only the engines and their checks and profiles
    rebuild (the GPU in their keys), the export, the sanitized model and the reference are reused."""
    on_machine(Machine((H200,), "nvidia-smi", CUDA_TORCH))
    graph = expand(mlp_recipe(variants=["onnx", "tensorrt-fp16"], device="cuda"), Path("."))
    keys = {}
    for gpu in (H200, A100):
        fp = fingerprint_of(gpu, CUDA_TORCH)
        keys[gpu.name] = {tid: payload_for(t, {n: f"d-{u}" for n, u in t.inputs.items()}, hardware=CPU_MACHINE, gpu=fp)
                          for tid, t in graph.targets.items()}
    h200, a100 = keys["NVIDIA H200"], keys["NVIDIA A100-SXM4-80GB"]
    changed = {tid for tid in h200 if cache_key(h200[tid]) != cache_key(a100[tid])}
    assert changed == {"tensorrt-fp16", "correctness/tensorrt-fp16", "profile/tensorrt-fp16"}
    assert {"onnx", "onnx-sanitized", "reference", "correctness/onnx"} <= set(h200) - changed
    engine = h200["tensorrt-fp16"]
    assert set(engine["tools"]) == {"tensorrt", "polygraphy"}  # the TensorRT version is in the key
    assert "hardware changed: gpu.name NVIDIA H200 -> NVIDIA A100-SXM4-80GB" in explain_change(engine,
                                                                                               a100["tensorrt-fp16"])


def test_navbuild_plan_of_a_tensorrt_recipe_lists_every_engine_unavailable_and_exits_0(tmp_path: Path) -> None:
    """On this machine as it is (no TensorRT; a GPU or not): the plan runs nothing and exits 0."""
    run = subprocess.run([sys.executable, "-m", "navbuild", "plan", "recipe=mlp", "formats=[tensorrt]",
                          "precisions=[fp32,fp16]", "device=cuda", "triton.enabled=false",
                          f"cache.dir={tmp_path / 'cache'}", f"output_dir={tmp_path / 'out'}"],
                         capture_output=True, text=True, cwd=Path(navbuild.__file__).parent.parent,
                         env={**os.environ, "COLUMNS": "250"}, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stdout.splitlines() if "tensorrt" in line and "unavailable" in line]
    for target in ("tensorrt ", "tensorrt-fp16", "correctness/tensorrt-fp16", "profile/tensorrt "):
        row = next((line for line in lines if f"│ {target}" in line), None)
        assert row is not None, (target, run.stdout)
        assert "no CUDA GPU" in row or "tensorrt not installed" in row or "input tensorrt" in row, row
