"""GPU targets in the plan: which variants a device picks, why they cannot run here, and what their keys hold.

The GPUs are recorded facts (nvidia-smi lines of an H200 and an A100, a CPU-only machine), given to
navbuild.device in place of this machine's probe; torch is never imported, no GPU is needed. The plan
through the command line runs on this machine as it is.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import navbuild
from navbuild import device as device_module
from navbuild.cache.keys import cache_key, explain_change
from navbuild.device import Machine, TorchBuild, fingerprint_of, parse_gpu_query, read_machine
from navbuild.errors import RecipeError
from navbuild.planning import planner
from navbuild.planning.finalists import finalists_target
from navbuild.planning.planner import expand
from navbuild.planning.status import hardware_bound, payload_for, plan_statuses
from navbuild.recipe.validate import check_semantics
from test_planner import FakeStore, mlp_recipe  # the planner test's recipe and empty cache

#: the same fields for two GPU models, as nvidia-smi's query prints them (the H200 line recorded on one)
H200, A100 = parse_gpu_query("0, NVIDIA H200, 9.0, 143771, 570.124.06\n"
                             "1, NVIDIA A100-SXM4-80GB, 8.0, 81920, 535.183.01\n")
CUDA_TORCH = TorchBuild("2.11.0+cu128", "12.8")
#: a CPU machine's fingerprint as navbuild.hardware records it
CPU_MACHINE = {"machine": "x86_64", "cpu_model": "Intel(R) Xeon(R) Platinum 8480+", "cpu_count": 224,
               "usable_cpus": 224, "isa": ["avx", "avx2", "avx512f", "amx_bf16"], "gpus": []}
GPU_GPUS = ["NVIDIA H200 (driver 570.124.06)"]
FORMATS, PRECISIONS = ["torch", "torch-compile", "onnx"], ["fp32", "fp16", "bf16"]
GPU_VARIANTS = ["torch-cuda", "torch-cuda-compile", "torch-cuda-compile-cudagraphs", "onnx-cuda",
                "torch-cuda-bf16-autocast", "torch-cuda-bf16", "torch-cuda-fp16-autocast", "torch-cuda-fp16",
                "onnx-cuda-fp16"]


@pytest.fixture
def on_machine(monkeypatch: pytest.MonkeyPatch):
    """Plan as on a machine with these recorded facts (navbuild.device's probe returns them)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # every GPU of the recorded machine visible

    def use(machine: Machine) -> Machine:
        monkeypatch.setattr(device_module, "read_machine", lambda: machine)
        monkeypatch.setattr(planner, "read_machine", lambda: machine)
        return machine
    return use


def gpu_plan(**changes):
    graph = expand(mlp_recipe(formats=FORMATS, precisions=PRECISIONS, **changes), Path("."))
    return graph, plan_statuses(graph, FakeStore(), previous=None).by_id()


def test_a_cuda_device_picks_the_gpu_variants_and_their_targets_run_on_its_gpu(on_machine) -> None:
    on_machine(Machine((H200,), "nvidia-smi", CUDA_TORCH))
    graph, _ = gpu_plan(device="cuda")
    assert graph.variants() == GPU_VARIANTS
    assert graph.notes[0] == "device: cuda:0 (cuda: NVIDIA H200 (GPU 0), torch 2.11.0+cu128 built for CUDA 12.8)"
    on_gpu = {tid for tid, t in graph.targets.items() if t.gpu == 0}
    assert on_gpu == {f"{kind}/{v}" for v in GPU_VARIANTS for kind in ("correctness", "profile")}
    # the conversions the GPU variants read are built on the CPU, as for the CPU variants
    assert graph.targets["onnx"].gpu is None and graph.targets["onnx-fp16"].gpu is None
    assert graph.targets["reference"].gpu is None


def test_where_a_gpu_target_cannot_run_the_plan_says_why(on_machine) -> None:
    on_machine(Machine((H200,), "nvidia-smi", TorchBuild("2.13.0+cpu", None)))
    _, plan = gpu_plan(device="cuda")
    assert plan["profile/torch-cuda-fp16"].label == "unavailable: torch 2.13.0+cpu is a CPU build"
    assert plan["correctness/torch-cuda-compile"].label == "unavailable: torch 2.13.0+cpu is a CPU build"
    assert plan["profile/onnx-cuda"].label == "unavailable: onnxruntime-gpu not installed"
    assert plan["correctness/onnx-cuda-fp16"].label == "unavailable: onnxruntime-gpu not installed"
    assert plan["onnx"].status == "missing"  # the ONNX export itself runs anywhere

    on_machine(Machine((), "/proc/driver/nvidia absent, /dev/nvidia0 absent, nvidia-smi not found",
                       TorchBuild("2.13.0+cpu", None)))
    graph, plan = gpu_plan(device="cuda:1")
    assert "the recipe asks for it, but there is no NVIDIA GPU on this machine" in graph.notes[0]
    for v in GPU_VARIANTS:
        assert plan[f"profile/{v}"].label == ("unavailable: no CUDA GPU (/proc/driver/nvidia absent, "
                                              "/dev/nvidia0 absent, nvidia-smi not found)")


def test_a_gpu_profile_key_holds_the_gpu_so_no_cpu_profile_and_no_other_gpu_model_serves_it(on_machine) -> None:
    on_machine(Machine((H200,), "nvidia-smi", CUDA_TORCH))
    graph = expand(mlp_recipe(variants=["torch", "torch-cuda"]), Path("."))
    upstream = {"reference": "d-reference", "source": "d-source"}
    cpu, gpu = graph.targets["profile/torch"], graph.targets["profile/torch-cuda"]
    h200 = payload_for(gpu, upstream, hardware={**CPU_MACHINE, "gpus": GPU_GPUS}, gpu=fingerprint_of(H200, CUDA_TORCH))
    a100 = payload_for(gpu, upstream, hardware={**CPU_MACHINE, "gpus": GPU_GPUS}, gpu=fingerprint_of(A100, CUDA_TORCH))
    on_cpu = payload_for(cpu, upstream, hardware=CPU_MACHINE)
    assert h200["hardware"]["gpu"] == {"name": "NVIDIA H200", "compute_capability": "9.0", "memory_mib": 143771,
                                       "driver": "570.124.06", "cuda_runtime": "12.8"}
    assert len({cache_key(h200), cache_key(a100), cache_key(on_cpu)}) == 3
    assert "gpu" not in on_cpu["hardware"] and on_cpu["hardware"] == CPU_MACHINE  # CPU keys as before
    assert "hardware changed: gpu.name NVIDIA H200 -> NVIDIA A100-SXM4-80GB" in explain_change(h200, a100)
    assert "hardware changed: gpu.compute_capability 9.0 -> 8.0" in explain_change(h200, a100)
    assert explain_change(on_cpu, h200)[:1] == ["params.variant_format: torch -> torch-cuda"]
    # read from the (recorded) machine when not given: the same as given
    assert payload_for(gpu, upstream, hardware={**CPU_MACHINE, "gpus": GPU_GPUS}) == h200


def test_a_gpu_check_is_bound_to_its_gpu_and_a_cpu_check_is_not(on_machine) -> None:
    on_machine(Machine((H200,), "nvidia-smi", CUDA_TORCH))
    graph = expand(mlp_recipe(variants=["onnx", "onnx-cuda-fp16", "torch-cuda-fp16"]), Path("."))
    cpu_check, gpu_check = graph.targets["correctness/onnx"], graph.targets["correctness/onnx-cuda-fp16"]
    assert not hardware_bound(cpu_check) and hardware_bound(gpu_check)
    upstream = {"model": "d-onnx", "reference": "d-reference"}
    assert payload_for(cpu_check, upstream, hardware=CPU_MACHINE)["hardware"] is None
    h200 = payload_for(gpu_check, {"model": "d-fp16", "reference": "d-reference"}, hardware=CPU_MACHINE,
                       gpu=fingerprint_of(H200, CUDA_TORCH))
    a100 = payload_for(gpu_check, {"model": "d-fp16", "reference": "d-reference"}, hardware=CPU_MACHINE,
                       gpu=fingerprint_of(A100, CUDA_TORCH))
    assert h200["hardware"]["gpu"]["name"] == "NVIDIA H200" and cache_key(h200) != cache_key(a100)


def test_device_cpu_on_a_gpu_machine_plans_exactly_what_a_cpu_machine_does(on_machine) -> None:
    cpu_only = on_machine(Machine((), "/proc/driver/nvidia absent", TorchBuild("2.13.0+cpu", None)))
    today = plan_statuses(expand(mlp_recipe(), Path(".")), FakeStore(), previous=None)
    on_machine(Machine((H200,), "nvidia-smi", CUDA_TORCH))
    graph = expand(mlp_recipe(device="cpu"), Path("."))
    asked = plan_statuses(graph, FakeStore(), previous=None)
    assert [(t.id, t.key) for t in asked.targets] == [(t.id, t.key) for t in today.targets]
    assert graph.notes == ["device: cpu (cpu: the recipe asks for it)"]  # a GPU is here: the plan says why not
    assert all(t.gpu is None for t in graph.targets.values())
    assert expand(mlp_recipe(), Path(".")).device.kind == "cuda"  # auto takes the GPU
    assert cpu_only.no_gpu()


def test_recipe_checks_name_the_device_when_it_selects_nothing_or_names_a_gpu_not_there(on_machine) -> None:
    on_machine(Machine((H200,), "nvidia-smi", CUDA_TORCH))
    with pytest.raises(RecipeError) as err:
        check_semantics(mlp_recipe(device="cuda", formats=["onnx-opt"]), Path("."))
    assert err.value.problems == ["formats ['onnx-opt'] x precisions ['fp32']: selects no variant on device cuda (the "
                                  "GPU variants: torch-cuda, torch-cuda-compile, torch-cuda-compile-cudagraphs, "
                                  "torch-aoti-cuda, onnx-cuda, torch-cuda-bf16-autocast, torch-cuda-bf16, "
                                  "torch-cuda-fp16-autocast, torch-cuda-fp16, onnx-cuda-fp16, tensorrt, tensorrt-fp16, "
                                  "tensorrt-bf16, tensorrt-int8, tensorrt-fp8, torch-tensorrt-fp16)"]
    with pytest.raises(RecipeError, match=r"device: 'cuda:1' names GPU 1, but this machine has 1 \(0: NVIDIA H200\)"):
        check_semantics(mlp_recipe(device="cuda:1"), Path("."))
    check_semantics(mlp_recipe(device="cpu", formats=["onnx-opt"]), Path("."))  # the CPU has onnx-opt


def _plan_rows(out: str) -> dict[str, str]:
    """target -> status of ``navbuild plan``'s table (one row per line: the table is wide enough)."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 2 and cells[0] and cells[0] != "target":
            rows[cells[0]] = cells[1]
    return rows


def _navbuild_plan(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "400", "NAVBUILD_CACHE_DIR": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-m", "navbuild", "plan", "recipe=mlp", *overrides], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)


def test_navbuild_plan_of_a_gpu_recipe_lists_each_gpu_variant_with_why_it_cannot_run_here(tmp_path: Path) -> None:
    """As a user runs it, on this machine as it is (on CI: no GPU, torch a CPU build)."""
    run = _navbuild_plan(tmp_path, "device=cuda", "formats=[torch,torch-compile,onnx]",
                         "precisions=[fp32,fp16,bf16]")
    assert run.returncode == 0, run.stderr
    rows, machine = _plan_rows(run.stdout), read_machine()
    assert len(re.findall(r"^note: device: cuda:0 \(cuda: ", run.stdout, re.MULTILINE)) == 1  # said once
    assert not re.search(r"^device: ", run.stdout, re.MULTILINE)
    checked = {f"{kind}/{v}": rows[f"{kind}/{v}"] for v in GPU_VARIANTS for kind in ("correctness", "profile")}
    if not machine.gpus:
        assert set(checked.values()) == {f"unavailable: no CUDA GPU ({machine.evidence})"}
        assert "note: device: cuda:0 (cuda: the recipe asks for it, but there is no NVIDIA GPU" in run.stdout
    else:  # a GPU machine: torch's targets run unless torch is a CPU build, ORT's need onnxruntime-gpu
        assert all(s in ("missing", f"unavailable: {machine.torch_cpu_build()}") for t, s in checked.items()
                   if "/torch-" in t)
    assert not [t for t in rows if t.endswith(("/torch", "/onnx"))]  # no CPU variant on device cuda


def test_navbuild_plan_with_a_device_that_is_no_form_exits_2_naming_the_forms(tmp_path: Path) -> None:
    run = _navbuild_plan(tmp_path, "device=gpu0")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert ("device: 'gpu0' is not a device; write one of auto, cpu, cuda, cuda:N (N: the GPU's index as "
            "nvidia-smi lists it)") in run.stderr


def test_navbuild_plan_with_device_cpu_is_todays_plan(tmp_path: Path) -> None:
    run = _navbuild_plan(tmp_path, "device=cpu")
    assert run.returncode == 0, run.stderr
    assert "device: cpu (cpu: the recipe asks for it)" in run.stdout
    targets = [t for t in _plan_rows(run.stdout)]
    assert targets[:8] == ["reference", "onnx", "onnx-opt", "correctness/onnx", "correctness/onnx-opt",
                           "profile/torch", "profile/onnx", "profile/onnx-opt"]
    # the API's plan: on a machine without a GPU, device cpu keys every target as auto does
    cpu = navbuild.plan("mlp", ["device=cpu"], cwd=tmp_path)
    assert [t.id for t in cpu.targets] == targets[:len(cpu.targets)]
    if not read_machine().gpus:
        assert [(t.id, t.key) for t in cpu.targets] == [(t.id, t.key) for t in navbuild.plan("mlp", [], cwd=tmp_path).targets]


def test_finalists_of_gpu_variants_are_timed_on_their_gpu(on_machine) -> None:
    on_machine(Machine((H200,), "nvidia-smi", CUDA_TORCH))
    recipe = mlp_recipe(device="cuda", formats=FORMATS)
    recipe.profile.finalists = 2
    graph = expand(recipe, Path("."))
    assert finalists_target(graph, recipe, ["onnx-cuda", "torch-cuda"], 8).gpu == 0
    cpu = mlp_recipe(device="cpu")
    cpu.profile.finalists = 2
    assert finalists_target(expand(cpu, Path(".")), cpu, ["onnx", "torch"], 8).gpu is None


def test_planning_a_gpu_recipe_imports_no_torch(tmp_path: Path) -> None:
    code = ("import sys, navbuild\n"
            f"plan = navbuild.plan('mlp', ['device=cuda', 'formats=[torch,torch-compile,onnx]'], cwd={str(tmp_path)!r})\n"
            "assert [t for t in plan.targets if t.variant == 'torch-cuda']\n"
            "print(sorted(m for m in ('torch', 'onnxruntime', 'onnx') if m in sys.modules))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                         env={**os.environ, "NAVBUILD_CACHE_DIR": str(tmp_path / "cache")})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_gpu_targets_are_unavailable_where_cuda_visible_devices_hides_every_gpu(on_machine, monkeypatch) -> None:
    on_machine(Machine((H200,), "nvidia-smi", CUDA_TORCH))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    graph, plan = gpu_plan(device="cuda")
    assert plan["profile/torch-cuda"].label == ("unavailable: no CUDA GPU (CUDA_VISIBLE_DEVICES='' leaves torch no GPU "
                                                "of the 1 here; unset it, or write device: cuda:N)")
    assert plan["onnx"].status == "missing"


def test_a_format_with_no_variant_on_the_device_is_named_in_a_note(on_machine) -> None:
    on_machine(Machine((H200,), "nvidia-smi", CUDA_TORCH))
    graph = expand(mlp_recipe(formats=["torch", "openvino"], precisions=["fp32"], device="cuda"), Path("."))
    assert graph.variants() == ["torch-cuda"]
    assert ("device cuda:0: format(s) openvino have no cuda variant, so nothing of theirs is planned "
            "(write device: cpu for them)") in graph.notes
    cpu = expand(mlp_recipe(formats=["torch", "openvino"], precisions=["fp32"], device="cpu"), Path("."))
    assert cpu.variants() == ["torch", "openvino"] and not any("have no" in n for n in cpu.notes)
