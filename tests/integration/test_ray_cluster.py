"""Targets on a real Ray cluster of two nodes on 127.0.0.1: the same artifacts as a local build, and a
killed worker fails its target, not the build."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster
pytest.importorskip("ray")

MLP = Path(__file__).resolve().parents[2] / "recipes" / "mlp.yaml"
#: the mlp recipe, made quick: no Triton, two formats, short profiles
FAST = ["triton.enabled=false", "formats=[torch,onnx]", "samples.count=4", "runtime.intra_op_threads=1",
        "profile.batch_sizes=[1,4]", "profile.warmup_iters=1", "profile.window_s=0.01",
        "profile.min_window_iters=2", "profile.stable_windows=2", "profile.stability=0.5",
        "profile.max_windows=4", "profile.pin_cores=false", "profile.finalist_rounds=2",
        "profile.finalist_iters=2", "profile.max_background_load=1000.0"]


class RayCluster:
    """`ray start --head` plus one worker node, 2 CPUs each, under a temp dir of their own, with token
    authentication (Ray listens on every interface; only a holder of the token can use it)."""

    def __init__(self, root: Path) -> None:
        self.temp_dir = root
        token = root.parent / "ray-token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        # the test's build processes inherit these, and the nodes start with them
        self.env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.port = port
        self.address = f"127.0.0.1:{port}"

    def start(self) -> None:
        common = ["--node-ip-address=127.0.0.1", "--num-cpus=2", "--disable-usage-stats"]
        self._ray(["start", "--head", f"--port={self.port}", "--include-dashboard=false",
                   f"--temp-dir={self.temp_dir}", *common])
        self._ray(["start", f"--address={self.address}", *common])

    def _ray(self, args: list[str]) -> None:
        ray = Path(sys.executable).with_name("ray")
        subprocess.run([str(ray), *args], check=True, capture_output=True, timeout=180,
                       env={**os.environ, **self.env})

    def pids(self) -> list[int]:
        """Every process of this cluster (its temp dir is on their command lines), and their children."""
        ours: set[int] = set()
        parents: dict[int, int] = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmd = (proc / "cmdline").read_bytes()
                parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if str(self.temp_dir).encode() in cmd:
                ours.add(int(proc.name))
        grew = True
        while grew:
            more = {pid for pid, parent in parents.items() if parent in ours} - ours
            ours |= more
            grew = bool(more)
        return sorted(ours)

    def stop(self) -> None:
        """Stop this cluster's processes only (`ray stop` would stop every Ray of the machine)."""
        for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait_s
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.2)
        assert self.pids() == [], "a process of the test's Ray cluster outlived SIGKILL"


@pytest.fixture(scope="module")
def cluster():
    # a short path: Ray's unix sockets live under it
    root = Path(tempfile.mkdtemp(prefix="nbray-", dir="/tmp"))
    c = RayCluster(root / "t")
    saved = {k: os.environ.get(k) for k in c.env}
    try:
        os.environ.update(c.env)
        c.start()
        yield c
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        c.stop()
        shutil.rmtree(root, ignore_errors=True)


def build(project, build_dir: str, cache: str, *more: str) -> tuple[int, dict, str]:
    proc = project.run(f"recipe={MLP}", f"output_dir={build_dir}", f"cache.dir={project.root / cache}",
                       *FAST, *more, timeout=600)
    return proc.returncode, project.summary(build_dir), proc.stdout + proc.stderr


def test_a_ray_build_makes_the_same_artifacts_as_a_local_one_then_all_cached(project, cluster):
    assert cluster.address.startswith("127.0.0.1:")
    rc, local, out = build(project, "build/local", "cache-local")
    assert rc == 0, out
    rc, remote, out = build(project, "build/ray", "cache-ray", "executor.kind=ray",
                            f"executor.address={cluster.address}")
    assert rc == 0, out
    ours = {t["id"]: t for t in remote["targets"]}
    theirs = {t["id"]: t for t in local["targets"]}
    assert set(ours) == set(theirs) and {t["status"] for t in ours.values()} == {"built"}
    assert {i: t["digest"] for i, t in ours.items()} == {i: t["digest"] for i, t in theirs.items()}
    # the keys too, profiles included (their hardware is this machine's: both nodes run here),
    # except the finalists, whose params are the ranking the measurements made
    assert {i: t["key"] for i, t in ours.items() if i != "finalists"} == \
        {i: t["key"] for i, t in theirs.items() if i != "finalists"}
    rc, again, out = build(project, "build/ray", "cache-ray", "executor.kind=ray",
                           f"executor.address={cluster.address}")
    assert rc == 0, out
    assert {t["status"] for t in again["targets"]} == {"cached"}


def _ray_worker_of(target: str) -> int | None:
    """The pid of the Ray worker whose step child process builds ``target``, if one runs now."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"navbuild.execute.child" not in argv or not argv[-2].endswith(b"job.json"):
            continue
        try:
            if json.loads(Path(argv[-2].decode()).read_text())["target"] != target:
                continue
        except (OSError, ValueError, KeyError):
            continue
        pid = int(proc.name)
        while pid > 1:  # up through the guard to the worker (its title is ray::<task>)
            try:
                pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
                title = (Path("/proc") / str(pid) / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                return None
            if title.startswith(b"ray::"):
                return pid
    return None


def test_a_killed_worker_fails_its_target_not_the_build(project, cluster):
    proc = project.popen(f"recipe={MLP}", "output_dir=build/killed", f"cache.dir={project.root / 'cache-killed'}",
                         *FAST, "executor.kind=ray", f"executor.address={cluster.address}")
    try:
        deadline = time.monotonic() + 300
        while (worker := _ray_worker_of("onnx")) is None:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the onnx target never ran on a Ray worker"
            time.sleep(0.05)
        os.kill(worker, signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 1, out
    targets = {t["id"]: t for t in project.summary("build/killed")["targets"]}
    print(targets["onnx"]["reason"])
    assert targets["onnx"]["status"] == "failed"
    assert "Ray worker" in targets["onnx"]["reason"], targets["onnx"]["reason"]
    assert {i: targets[i]["status"] for i in ("correctness/onnx", "profile/onnx")} == dict.fromkeys(
        ("correctness/onnx", "profile/onnx"), "skipped")
    assert {i: targets[i]["status"] for i in ("reference", "profile/torch")} == dict.fromkeys(
        ("reference", "profile/torch"), "built")


def test_ctrl_c_cancels_the_running_tasks_and_exits_130(project, cluster):
    found: list[int] = []

    def onnx_runs() -> bool:
        found[:] = [w for w in [_ray_worker_of("onnx")] if w is not None]
        return bool(found)

    code, out = project.ctrl_c_when(onnx_runs, f"recipe={MLP}", "output_dir=build/interrupted",
                                    f"cache.dir={project.root / 'cache-interrupted'}", *FAST, "executor.kind=ray",
                                    f"executor.address={cluster.address}", settle_s=0.3, timeout=300)
    assert code == 130, out
    assert "Traceback" not in out
    deadline = time.monotonic() + 20
    while Path(f"/proc/{found[0]}").exists() and time.monotonic() < deadline:  # ray.cancel(force=True)
        time.sleep(0.1)
    assert not Path(f"/proc/{found[0]}").exists(), "the cancelled task's Ray worker still runs"
    assert _ray_worker_of("onnx") is None
