"""Sweeps through Hydra's launchers (real joblib workers, submitit job processes, a local Ray): each
point's result comes back through the launcher, and targets several points share are built once."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from procs import alive, identity, kill_all, live_commands

REPO = Path(__file__).resolve().parents[2]
#: the mlp recipe kept short: no Triton, two formats
QUICK = ["triton.enabled=false", "formats=[torch,onnx]"]


def _sweep(project, folder: str) -> dict:
    return json.loads((project.root / folder / "sweep.json").read_text())


def _point_summaries(project, recipe: str) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (project.root / "build" / recipe).glob("*/summary.json")}


def _builders_by_key(summaries) -> Counter:
    """How many points built each key, as the points' own summary.json files say (not the sweep's);
    a provisional measurement another point measured again is not a second build of it."""
    return Counter(t["key"] for s in summaries for t in s["targets"]
                   if t["status"] == "built" and not t["reason"].startswith("measured again"))


#: the mlp of navbuild's examples, wrapped so that neither ONNX exporter can export it
NOT_EXPORTABLE_MLP = '''
import torch
from navbuild.examples.models import mlp


class NotExportable(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        if torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting():
            raise RuntimeError("this model cannot be exported (deliberately)")
        return self.inner(x)


def mlp_not_exportable(**kwargs):
    return NotExportable(mlp(**kwargs))
'''


def test_joblib_sweep_with_a_failing_point_builds_the_others_and_each_shared_target_once(project):
    """Three points of the mlp recipe in two joblib worker processes on one cache: two profile
    windows, and the same mlp wrapped so that its ONNX export fails (a failed target: exit 1)."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    mlp = (REPO / "recipes" / "mlp.yaml").read_text()
    assert "window_s: 0.2" in mlp and "torch: navbuild.examples.models:mlp" in mlp
    (project.root / "mlpmodels.py").write_text(NOT_EXPORTABLE_MLP)
    (project.root / "recipes" / "mlp_window.yaml").write_text(mlp.replace("window_s: 0.2", "window_s: 0.1"))
    (project.root / "recipes" / "mlp_noexport.yaml").write_text(
        mlp.replace("torch: navbuild.examples.models:mlp", "torch: mlpmodels:mlp_not_exportable"))

    proc = project.run("-m", "recipe=mlp,mlp_window,mlp_noexport", *QUICK,
                       "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", timeout=900)
    assert proc.returncode == 1, proc.stderr
    names = ("mlp", "mlp_window", "mlp_noexport")
    summaries = {name: next(iter(_point_summaries(project, name).values())) for name in names}
    assert {name: s["exit_code"] for name, s in summaries.items()} == {"mlp": 0, "mlp_window": 0, "mlp_noexport": 1}
    assert {t["id"]: t["status"] for t in summaries["mlp_noexport"]["targets"]}["onnx"] == "failed"

    sweep = _sweep(project, "build")  # the folder the points' folders share
    assert [p["exit_code"] for p in sweep["points"]] == [0, 0, 1] and sweep["exit_code"] == 1
    assert sweep["launcher"] == "joblib" and sweep["processes"] >= 2  # joblib's workers, not one process
    assert sweep["shared"] > 0 and sweep["built_by_several"] == 0
    assert sweep["targets"] == sum(p["targets"] for p in sweep["points"]) > sweep["distinct_keys"]
    # the points' own records agree: no key was built by two points
    assert max(_builders_by_key(summaries.values()).values()) == 1
    assert "keys built by more than one point: 0" in proc.stderr


def _processes_of(project) -> set[tuple[int, int]]:
    """Live processes that run with this project's cache in their environment (its sweep's engines)."""
    marker = f"NAVBUILD_CACHE_DIR={project.cache}".encode()
    found = set()
    for pid in live_commands():
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in env and (ident := identity(pid)) is not None:
            found.add(ident)
    return found


def _left_running(project) -> list[tuple[int, str]]:
    """The sweep's processes still running once it exited (a short grace for their exit), then killed."""
    left = _processes_of(project)
    for _ in range(100):
        if not alive(left):
            break
        time.sleep(0.1)
    still = alive(left)
    kill_all(left)  # a failing test must not leave them behind
    return still


@pytest.mark.cluster
def test_submitit_local_sweep_builds_both_points(project):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    proc = project.run("-m", "recipe=tiny", "formats=[onnx]", "profile.batch_sizes=[1],[1,2]",
                       "hydra/launcher=submitit_local", timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert sorted(s["exit_code"] for s in _point_summaries(project, "tiny").values()) == [0, 0]
    sweep = _sweep(project, "build/tiny")
    assert sweep["launcher"] == "submitit_local" and len(sweep["points"]) == 2
    assert sweep["built_by_several"] == 0 and sweep["shared"] > 0
    assert _left_running(project) == []


@pytest.mark.cluster
def test_submitit_slurm_config_composes(project):
    """Slurm cannot run here: the launcher's config composes (a plan sweep runs nothing through it)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir

    from navbuild.recipe.load import PRIMARY_CONFIG, package_data_dir, register

    register(["mlp"], project.root)
    with initialize_config_dir(config_dir=str(package_data_dir("conf")), version_base="1.3"):
        cfg = compose(PRIMARY_CONFIG, ["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.partition == "gpu"


@pytest.mark.cluster
def test_ray_sweep_builds_both_points_and_stops_every_ray_process(project):
    pytest.importorskip("ray")
    proc = project.run("-m", "recipe=tiny", "formats=[onnx]", "profile.batch_sizes=[1],[1,2]",
                       "hydra/launcher=navbuild_ray", "hydra.launcher.num_cpus=2", timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "(run_point pid=" in proc.stderr  # the points' logs, forwarded from Ray's workers
    assert sorted(s["exit_code"] for s in _point_summaries(project, "tiny").values()) == [0, 0]
    sweep = _sweep(project, "build/tiny")
    assert sweep["launcher"] == "navbuild_ray" and sweep["processes"] == 2
    assert sweep["built_by_several"] == 0 and sweep["shared"] > 0
    assert _left_running(project) == []  # the local Ray (GCS, raylet, workers) was shut down


def _workers_named(project, name: str) -> list[int]:
    """This project's sweep processes whose command line holds ``name`` (a launcher's workers)."""
    commands = live_commands()
    return [pid for pid, _ in sorted(_processes_of(project)) if name in commands.get(pid, "")]


def _sweep_killing_a_worker(project, worker_name: str, *launcher: str) -> tuple[int, str]:
    """Run a 2-point tiny sweep, SIGKILL its first worker named ``worker_name`` once one runs; the
    sweep's exit code and output (the sweep is always reaped)."""
    workers: list[int] = []

    def ready() -> bool:
        workers[:] = _workers_named(project, worker_name)
        return bool(workers)

    return project.act_when(ready, lambda proc: os.kill(workers[0], signal.SIGKILL), "-m", "recipe=tiny",
                            "formats=[onnx]", "profile.batch_sizes=[1],[1,2]", *launcher,
                            timeout=300, finish_s=600)


@pytest.mark.cluster
def test_ray_point_whose_worker_is_killed_comes_back_failed_and_the_other_point_builds(project):
    pytest.importorskip("ray")
    # with 1 CPU one point runs at a time: Ray names its worker ray::run_point; the other point waits
    code, out = _sweep_killing_a_worker(project, "ray::run_point", "hydra/launcher=navbuild_ray",
                                        "hydra.launcher.num_cpus=1")
    assert code == 1, out
    sweep = _sweep(project, "build/tiny")
    assert sorted(p["exit_code"] for p in sweep["points"]) == [0, 1]
    failed = next(p for p in sweep["points"] if p["exit_code"])
    assert "WorkerCrashedError" in failed["error"], failed
    assert _left_running(project) == []


@pytest.mark.cluster
def test_joblib_worker_killed_fails_the_sweep_cleanly(project):
    """joblib stops its whole batch when one of its workers dies: every point without a result is
    failed, with joblib's error in its row, and the sweep ends (exit 1) leaving nothing running."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    code, out = _sweep_killing_a_worker(project, "popen_loky", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert code == 1, out
    assert "the joblib launcher stopped: TerminatedWorkerError" in out
    sweep = _sweep(project, "build/tiny")
    assert sweep["exit_code"] == 1 and any("TerminatedWorkerError" in p["error"] for p in sweep["points"])
    assert _left_running(project) == []
