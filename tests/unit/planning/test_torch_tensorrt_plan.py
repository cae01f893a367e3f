"""torch-tensorrt-fp16 in the plan, where Torch-TensorRT cannot run (no GPU here, no torch_tensorrt on the
GPU machine): why it is unavailable, the min/opt/max shapes its Params derive from the recipe, and its key.

As in test_gpu_plan, the GPUs are recorded facts given to navbuild.device; neither torch nor torch_tensorrt
is imported. Building it needs a GPU with torch_tensorrt: tests/integration/test_torch_tensorrt_gpu.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from navbuild import formats
from navbuild.device import Machine, TorchBuild, fingerprint_of
from navbuild.formats.tensorrt_profiles import ShapeRange, derive_profiles, recipe_sizes
from navbuild.formats.common import tensor_specs
from navbuild.planning.planner import expand
from navbuild.planning.status import payload_for, plan_statuses
from navbuild.steps.base import load_step, params_from_dict, params_to_dict
from test_gpu_plan import A100, CPU_MACHINE, CUDA_TORCH, GPU_GPUS, H200, on_machine  # noqa: F401 - a fixture
from test_planner import FakeStore, mlp_recipe

VARIANT = "torch-tensorrt-fp16"
TARGETS = (VARIANT, f"correctness/{VARIANT}", f"profile/{VARIANT}")


def _plan(**changes):
    graph = expand(mlp_recipe(variants=[VARIANT], **changes), Path("."))
    return graph, plan_statuses(graph, FakeStore(), previous=None).by_id()


def test_without_torch_tensorrt_on_a_gpu_machine_the_variant_is_unavailable_saying_so(on_machine) -> None:
    on_machine(Machine((H200,), "nvidia-smi", CUDA_TORCH))
    graph, plan = _plan(device="cuda")
    assert graph.targets[VARIANT].gpu == 0  # compiled on the GPU it is for
    for tid in TARGETS:
        assert plan[tid].label == "unavailable: torch_tensorrt not installed"


def test_without_a_gpu_the_variant_is_unavailable_for_that(on_machine) -> None:
    on_machine(Machine((), "/proc/driver/nvidia absent, /dev/nvidia0 absent, nvidia-smi not found",
                       TorchBuild("2.13.0+cpu", None)))
    _, plan = _plan(device="cuda")
    for tid in TARGETS:
        assert plan[tid].label == ("unavailable: no CUDA GPU (/proc/driver/nvidia absent, /dev/nvidia0 absent, "
                                   "nvidia-smi not found)")


def test_a_cuda_recipe_asking_for_the_format_at_fp16_selects_it() -> None:
    assert [v.name for v in formats.selected(["torch-tensorrt"], ["fp16"], [], device="cuda")] == [VARIANT]
    assert formats.selected(["torch-tensorrt"], ["fp16"], [], device="cpu") == []
    assert formats.unavailable_on_serialized("m.pt", VARIANT) == (
        "torch.export cannot export a TorchScript module (the source is m.pt)")


def test_its_shapes_are_the_engines_single_profile_derived_from_the_recipe(on_machine) -> None:
    on_machine(Machine((H200,), "nvidia-smi", CUDA_TORCH))
    recipe = mlp_recipe(variants=[VARIANT], device="cuda")
    recipe.profile.batch_sizes = [4, 16]
    graph = expand(recipe, Path("."))
    params = graph.targets[VARIANT].params
    # the batch from the smallest size run (probe batch 1) to the largest profiled, tuned for the largest
    assert params.shapes == (ShapeRange("x", min=(1, 64), opt=(16, 64), max=(16, 64)),)
    assert params.shapes == derive_profiles(tensor_specs(recipe), recipe_sizes(recipe), "single")[0].inputs
    assert (params.precision, graph.targets[VARIANT].step) == ("fp16", "TorchTensorRtFromTorch")
    # the params travel to the step's process as JSON and come back equal
    step = load_step("TorchTensorRtFromTorch")
    assert params_from_dict(step.Params, params_to_dict(params)) == params


def test_its_key_holds_the_shapes_the_gpu_and_torch_tensorrt(on_machine) -> None:
    on_machine(Machine((H200,), "nvidia-smi", CUDA_TORCH))
    target = expand(mlp_recipe(variants=[VARIANT], device="cuda"), Path(".")).targets[VARIANT]
    upstream = {"source": "d-source"}
    hardware = {**CPU_MACHINE, "gpus": GPU_GPUS}
    h200 = payload_for(target, upstream, hardware=hardware, gpu=fingerprint_of(H200, CUDA_TORCH))
    a100 = payload_for(target, upstream, hardware=hardware, gpu=fingerprint_of(A100, CUDA_TORCH))
    assert h200 != a100 and h200["hardware"]["gpu"]["name"] == "NVIDIA H200"
    assert {"torch", "torch-tensorrt", "tensorrt"} <= set(h200["tools"])
    wider = dataclasses.replace(target, params=dataclasses.replace(
        target.params, shapes=(ShapeRange("x", min=(1, 64), opt=(32, 64), max=(64, 64)),)))
    assert payload_for(wider, upstream, hardware=hardware, gpu=fingerprint_of(H200, CUDA_TORCH)) != h200
