"""navbuild.device: the recipe's device resolved, nvidia-smi and /proc read, torch's build read without importing it.

The machine's facts are recorded text (an H200's nvidia-smi line, /proc/driver/nvidia files) or this
machine's own; nothing here needs a GPU, and torch is never imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from navbuild.device import (CPU, CUDA, Device, Gpu, Machine, TorchBuild, device_problem, expose, fingerprint_of,
                             gpu_problem, parse_gpu_query, parse_proc_gpus, read_machine, read_torch_build,
                             read_torch_version, resolve)
from navbuild.errors import RecipeError

#: `nvidia-smi --query-gpu=index,name,compute_cap,memory.total,driver_version --format=csv,noheader,nounits`
#: on an H200 machine (recorded), and that line's format for a second GPU (an A100 80GB; its driver field
#: as nvidia-smi writes a value it cannot read)
H200_QUERY = "0, NVIDIA H200, 9.0, 143771, 570.124.06\n"
TWO_GPUS_QUERY = H200_QUERY + "1, NVIDIA A100-SXM4-80GB, 8.0, 81920, [N/A]\n"
#: /proc/driver/nvidia/version and gpus/<bus>/information as the (open) kernel module writes them
PROC_VERSION = ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.124.06  Release Build  "
                "(dvs-builder@U16-I3-B03-4-3)  Fri Feb 28 14:56:31 UTC 2025\nGCC version:  gcc version 12.3.0\n")
PROC_INFORMATION = ("Model: \t\t NVIDIA H200\nIRQ:   \t\t 0\nGPU UUID: \t GPU-6c1f2b6a-0000-0000-0000-000000000000\n"
                    "Video BIOS: \t 96.00.a5.00.01\nBus Type: \t PCIe\nDMA Size: \t 52 bits\n")

CUDA_TORCH = TorchBuild("2.11.0+cu128", "12.8")
CPU_TORCH = TorchBuild("2.13.0+cpu", None)
NO_GPU = Machine((), "/proc/driver/nvidia absent, /dev/nvidia0 absent, nvidia-smi not found", CPU_TORCH)


def gpu_machine(torch: TorchBuild = CUDA_TORCH, query: str = H200_QUERY) -> Machine:
    return Machine(parse_gpu_query(query), "nvidia-smi", torch)


def test_nvidia_smi_output_is_read_field_by_field() -> None:
    h200, a100 = parse_gpu_query(TWO_GPUS_QUERY)
    assert h200 == Gpu(0, "NVIDIA H200", "9.0", 143771, "570.124.06")
    assert a100 == Gpu(1, "NVIDIA A100-SXM4-80GB", "8.0", 81920, "unknown")  # [N/A] is not a value
    assert parse_gpu_query("No devices were found\n") == ()
    assert fingerprint_of(h200, CUDA_TORCH) == {"name": "NVIDIA H200", "compute_capability": "9.0",
                                               "memory_mib": 143771, "driver": "570.124.06", "cuda_runtime": "12.8"}


def test_without_nvidia_smi_proc_gives_the_name_and_driver_and_says_what_is_unknown() -> None:
    (gpu,) = parse_proc_gpus([PROC_INFORMATION], PROC_VERSION)
    assert gpu == Gpu(0, "NVIDIA H200", "unknown", "unknown", "570.124.06")
    assert fingerprint_of(gpu, CPU_TORCH)["cuda_runtime"] == "unknown"


def test_torch_build_is_read_from_version_py_without_importing_torch(tmp_path: Path) -> None:
    cuda = tmp_path / "cuda_version.py"
    cuda.write_text("from typing import Optional\n__version__ = '2.11.0+cu128'\ndebug = False\n"
                    "cuda: Optional[str] = '12.8'\ngit_version = 'abc'\n")
    cpu = tmp_path / "cpu_version.py"
    cpu.write_text("__version__ = '2.13.0+cpu'\ncuda = None\n")
    assert read_torch_version(cuda) == CUDA_TORCH
    assert read_torch_version(cpu) == CPU_TORCH
    # the installed torch, read the same way in a process that then checks torch was not imported
    code = ("import sys; from navbuild.device import read_torch_build, read_machine; b = read_torch_build(); "
            "read_machine(); assert 'torch' not in sys.modules; print(b.version, b.cuda)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [read_torch_build().version, str(read_torch_build().cuda)]


def test_auto_on_this_machine_says_what_it_chose_and_why() -> None:
    machine, device = read_machine(), resolve("auto", env={})
    if not machine.gpus:  # a CPU machine (CI): the cpu, with where the GPUs were looked for
        assert device == Device(CPU, None, f"auto: no NVIDIA GPU on this machine ({machine.evidence})")
        assert "/proc/driver/nvidia" in device.why
    else:
        assert device.why.startswith(f"auto: {machine.gpus[0].name} (GPU {machine.gpus[0].index})")


def test_auto_takes_the_first_gpu_torch_can_use() -> None:
    device = resolve("auto", gpu_machine(), env={})
    assert (device.kind, device.index, device.unusable) == (CUDA, 0, "")
    assert device.why == "auto: NVIDIA H200 (GPU 0), torch 2.11.0+cu128 built for CUDA 12.8"
    assert resolve("auto", gpu_machine(query=TWO_GPUS_QUERY), env={"CUDA_VISIBLE_DEVICES": "1"}).index == 1
    hidden = resolve("auto", gpu_machine(), env={"CUDA_VISIBLE_DEVICES": ""})
    assert hidden.kind == CPU and "CUDA_VISIBLE_DEVICES='' leaves torch no GPU" in hidden.why
    cpu_torch = resolve("auto", gpu_machine(CPU_TORCH), env={})
    assert cpu_torch.kind == CPU
    assert cpu_torch.why == "auto: NVIDIA H200 (GPU 0) present, but torch 2.13.0+cpu is a CPU build"
    assert resolve("auto", NO_GPU).why == f"auto: no NVIDIA GPU on this machine ({NO_GPU.evidence})"


def test_cuda_where_there_is_no_gpu_is_still_cuda_and_says_it_cannot_run() -> None:
    device = resolve("cuda", NO_GPU)
    assert (device.kind, device.index) == (CUDA, 0)
    assert device.unusable == f"no NVIDIA GPU on this machine ({NO_GPU.evidence})"
    assert "every GPU target is unavailable" in device.why
    assert resolve("cuda:3", NO_GPU).index == 3  # nothing to check the index against
    assert resolve("cpu", gpu_machine()).kind == CPU


def test_why_a_gpu_target_cannot_run() -> None:
    assert gpu_problem(("torch",), NO_GPU) == f"no CUDA GPU ({NO_GPU.evidence})"
    assert gpu_problem(("onnxruntime-gpu",), NO_GPU).startswith("no CUDA GPU (")
    assert gpu_problem(("torch",), gpu_machine(CPU_TORCH)) == "torch 2.13.0+cpu is a CPU build"
    assert gpu_problem(("onnxruntime-gpu",), gpu_machine(CPU_TORCH)) == ""  # ORT does not need torch
    assert gpu_problem(("torch",), gpu_machine()) == ""


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "CUDA", "cuda:-1", "cpu:0", "", 0])
def test_a_device_that_is_no_form_names_the_forms(text) -> None:
    assert device_problem(text) == (f"'{text}' is not a device; write one of auto, cpu, cuda, cuda:N "
                                    "(N: the GPU's index as nvidia-smi lists it)")
    with pytest.raises(RecipeError, match=r"device: .* is not a device; write one of auto, cpu, cuda, cuda:N"):
        resolve(text, NO_GPU)  # type: ignore[arg-type]


def test_a_gpu_index_the_machine_does_not_have_names_the_gpus_there_are() -> None:
    with pytest.raises(RecipeError, match=r"device: 'cuda:2' names GPU 2, but this machine has 2 \(0: NVIDIA H200, "
                                          r"1: NVIDIA A100-SXM4-80GB\); write cuda:N with one of 0, 1, or auto"):
        resolve("cuda:2", gpu_machine(query=TWO_GPUS_QUERY))


def test_cuda_n_makes_the_processes_navbuild_starts_see_only_that_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):  # set, then removed: restored after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    pinned = resolve("cuda:1", gpu_machine(query=TWO_GPUS_QUERY))
    assert pinned.why.endswith("; its steps see only this GPU (CUDA_VISIBLE_DEVICES=1)")
    assert expose(resolve("cuda", gpu_machine())) == "" and expose(resolve("cpu", NO_GPU)) == ""
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert expose(pinned) == "CUDA_VISIBLE_DEVICES=1"
    code = "import os; print(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['CUDA_DEVICE_ORDER'])"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert child.stdout.split() == ["1", "PCI_BUS_ID"]  # nvidia-smi's numbering, which cuda:N is written in


def test_cuda_honours_the_users_cuda_visible_devices() -> None:
    two = gpu_machine(query=TWO_GPUS_QUERY)
    assert resolve("cuda", two, env={}).index == 0
    second = resolve("cuda", two, env={"CUDA_VISIBLE_DEVICES": "1,0"})
    assert (second.index, second.why) == (1, "cuda: NVIDIA A100-SXM4-80GB (GPU 1), torch 2.11.0+cu128 built for CUDA 12.8")
    hidden = resolve("cuda", two, env={"CUDA_VISIBLE_DEVICES": "-1"})
    assert hidden.kind == CUDA and hidden.unusable.startswith("CUDA_VISIBLE_DEVICES='-1' leaves torch no GPU of the 2")
