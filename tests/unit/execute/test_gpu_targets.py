"""The build driver keys a GPU target on its GPU and sends it as hardware-bound; a CPU target as before.

The machine is recorded facts (an H200 with a CUDA torch) given to navbuild.device in place of this
machine's probe; the store is a real one in a temporary folder; nothing is run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from navbuild import device as device_module
from navbuild.cache.keys import cache_key
from navbuild.cache.store import Store
from navbuild.device import Machine, TorchBuild, expose, parse_gpu_query, resolve
from navbuild.execute.executor import BuildDriver
from navbuild.execute.isolation import write_job
from navbuild.planning import planner
from navbuild.planning.planner import expand
from navbuild.recipe.schema import InputConfig, Recipe, SourceConfig
from navbuild.report.events import CollectingReporter

H200 = Machine(parse_gpu_query("0, NVIDIA H200, 9.0, 143771, 570.124.06\n"), "nvidia-smi",
               TorchBuild("2.11.0+cu128", "12.8"))
#: the machine fingerprint the backend says its hardware-bound targets run on
BACKEND_HARDWARE = {"machine": "x86_64", "cpu_model": "AMD EPYC 9654", "cpu_count": 192, "usable_cpus": 192,
                    "isa": ["avx2", "avx512f"], "gpus": ["NVIDIA H200 (driver 570.124.06)"]}


@pytest.fixture
def driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BuildDriver:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # every GPU of the recorded machine visible
    monkeypatch.setattr(device_module, "read_machine", lambda: H200)
    monkeypatch.setattr(planner, "read_machine", lambda: H200)
    recipe = Recipe(name="t", source=SourceConfig(torch="navbuild.examples.models:mlp"),
                    inputs=[InputConfig(name="x", shape=["batch", 64])], outputs=["y"],
                    variants=["torch", "torch-cuda"])
    graph = expand(recipe, Path("."))
    backend = SimpleNamespace(hardware=BACKEND_HARDWARE)
    built = BuildDriver(graph, Store(tmp_path / "cache"), tmp_path / "build", Path("."), CollectingReporter(), backend)
    built.refresh()
    built.digests["reference"], built.paths["reference"] = "d-reference", tmp_path  # as if the reference were built
    return built


def test_a_gpu_profile_job_holds_its_gpu_and_runs_where_its_key_says(driver: BuildDriver) -> None:
    gpu_job = driver.prepare("profile/torch-cuda", {}, False)
    cpu_job = driver.prepare("profile/torch", {}, False)
    try:
        assert gpu_job.hardware_bound and cpu_job.hardware_bound
        assert gpu_job.payload["hardware"] == {**BACKEND_HARDWARE, "gpu": {
            "name": "NVIDIA H200", "compute_capability": "9.0", "memory_mib": 143771, "driver": "570.124.06",
            "cuda_runtime": "12.8"}}
        assert cpu_job.payload["hardware"] == BACKEND_HARDWARE  # the CPU profile's key as before
        assert gpu_job.key == cache_key(gpu_job.payload) != cpu_job.key
    finally:
        driver.abandon(gpu_job)
        driver.abandon(cpu_job)


def test_a_gpu_check_job_is_hardware_bound_and_keyed_on_its_gpu(driver: BuildDriver) -> None:
    job = driver.prepare("correctness/torch-cuda", {}, False)
    try:
        assert job.hardware_bound and job.payload["hardware"]["gpu"]["name"] == "NVIDIA H200"
    finally:
        driver.abandon(job)


def test_a_step_of_a_build_pinned_to_one_gpu_is_reproduced_on_that_gpu(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):  # set, then removed: restored after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    (tmp_path / "cpu").mkdir()
    write_job(tmp_path / "cpu", "profile/torch", "ProfilePerformance", {}, {}, tmp_path)
    assert "CUDA_" not in (tmp_path / "cpu" / "reproduce.sh").read_text()
    expose(resolve("cuda:0", H200))
    (tmp_path / "gpu").mkdir()
    write_job(tmp_path / "gpu", "profile/torch-cuda", "ProfilePerformance", {}, {}, tmp_path)
    script = (tmp_path / "gpu" / "reproduce.sh").read_text()
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=0 PYTHONPATH=" in script
    subprocess.run(["sh", "-n", str(tmp_path / "gpu" / "reproduce.sh")], check=True)  # it parses
