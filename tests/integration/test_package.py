"""The .nav package: export in one process, continue in another without the training code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

TRAIN_MODULE = textwrap.dedent('''
    import torch


    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.a = torch.nn.Linear(8, 32)
            self.b = torch.nn.Linear(32, 4)

        def forward(self, x, scale):
            return self.b(torch.relu(self.a(x))) * scale
''')

EXPORT_SCRIPT = textwrap.dedent('''
    import sys, torch, navbuild
    from trainmod import Net

    batches = [(torch.randn(4, 8), torch.ones(4, 1)) for _ in range(3)]
    pkg = navbuild.export(Net(), batches, path=sys.argv[1], name="net",
                          include_artifacts=sys.argv[2] == "all",
                          recipe={"runtime": {"intra_op_threads": 1},
                                  "profile": {"batch_sizes": [1, 4], "window_s": 0.01, "min_window_iters": 2,
                                              "warmup_iters": 6, "max_windows": 4, "stable_windows": 2,
                                              "stability": 0.5, "pin_cores": False,
                                              # what else the machine runs must not make these
                                              # profiles provisional (re-measured when continued)
                                              "max_background_load": 1000.0}})
    print("BEST", pkg.best, pkg.size)
''')


def run(args: list[str], cwd: Path, cache: Path, tag: str = "", pythonpath: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NAVBUILD_HARDWARE_TAG")}
    env["NAVBUILD_CACHE_DIR"] = str(cache)
    if tag:
        env["NAVBUILD_HARDWARE_TAG"] = tag
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


def export(tmp: Path, artifacts: str = "all", tag: str = "") -> Path:
    train = tmp / "training"
    train.mkdir(exist_ok=True)
    (train / "trainmod.py").write_text(TRAIN_MODULE)
    (train / "export.py").write_text(EXPORT_SCRIPT)
    package = tmp / f"net-{artifacts}.nav"
    proc = run(["export.py", str(package), artifacts], train, tmp / "train-cache", tag, pythonpath=str(train))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "BEST" in proc.stdout
    return package


def cont(tmp: Path, package: Path, *extra: str, tag: str = "", mode: str = "") -> subprocess.CompletedProcess:
    """Continue on 'another machine': a fresh folder and cache, the training code not importable."""
    work = tmp / "deploy"
    work.mkdir(exist_ok=True)
    return run(["-m", "navbuild", *([mode] if mode else []), f"source.package={package}", *extra],
               work, tmp / "deploy-cache", tag)


def statuses(tmp: Path) -> dict[str, str]:
    summary = json.loads((tmp / "deploy" / "build" / "package" / "summary.json").read_text())
    return {t["id"]: t["status"] for t in summary["targets"]}


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    return export(tmp_path_factory.mktemp("pkg"))


def test_continue_without_the_training_code_rebuilds_nothing(package, tmp_path):
    proc = cont(tmp_path, package)
    assert proc.returncode == 0, proc.stderr[-3000:]
    st = statuses(tmp_path)
    assert set(st.values()) == {"cached"}, st
    assert {"reference", "onnx", "onnx-opt", "correctness/onnx", "profile/torch"} <= set(st)
    # the training module really is not importable there
    probe = run(["-c", "import trainmod"], tmp_path / "deploy", tmp_path / "deploy-cache")
    assert probe.returncode != 0


def test_load_and_show_the_package(package):
    import navbuild

    pkg = navbuild.load(package)
    assert pkg.manifest["format_version"] == 1
    assert pkg.manifest["source"]["kind"] in ("torchscript", "exported_program")
    assert [i["name"] for i in pkg.manifest["inputs"]] == ["x", "scale"]
    assert pkg.best in ("torch", "onnx", "onnx-opt")
    rows = {r["id"]: r for r in pkg.targets()}
    assert rows["onnx"]["included"] and rows["onnx"]["files"] == ["model.onnx"]
    assert rows["correctness/onnx"]["verdict"] == "pass"
    shown = subprocess.run([sys.executable, "-m", "navbuild", "show", str(package)], capture_output=True, text=True)
    assert shown.returncode == 0 and "best:" in shown.stdout and "correctness/onnx" in shown.stdout


def test_another_machine_reprofiles_and_plan_says_why(tmp_path):
    package = export(tmp_path, tag="machine-a")
    plan = cont(tmp_path, package, tag="machine-b", mode="plan")
    assert plan.returncode == 0, plan.stderr
    lines = {l.split("│")[1].strip(): l.split("│")[2].strip() for l in plan.stdout.splitlines() if l.count("│") >= 3}
    for tid in ("profile/torch", "profile/onnx", "onnx-opt"):
        assert lines[tid] == "stale: hardware changed: tag machine-a -> machine-b", (tid, lines[tid])
    assert lines["profile/onnx-opt"] == "stale: input onnx-opt will be rebuilt"
    assert lines["onnx"] == "cached" and lines["correctness/onnx"] == "cached"
    proc = cont(tmp_path, package, tag="machine-b")
    assert proc.returncode == 0, proc.stderr[-3000:]
    st = statuses(tmp_path)
    assert {t for t, s in st.items() if s == "built"} == {"profile/torch", "profile/onnx", "profile/onnx-opt",
                                                          "onnx-opt", "finalists"}  # onnx-opt: ORT 'all' is per-CPU
    assert st["onnx"] == "cached" and st["correctness/onnx"] == "cached" and st["reference"] == "cached"


def test_a_changed_knob_rebuilds_only_what_depends_on_it(package, tmp_path):
    proc = cont(tmp_path, package, "correctness.atol=0.001")
    assert proc.returncode == 0, proc.stderr[-3000:]
    st = statuses(tmp_path)
    assert {t for t, s in st.items() if s == "built"} == {"correctness/onnx", "correctness/onnx-opt"}


def test_tampering_with_one_byte_is_refused_and_nothing_enters_the_cache(package, tmp_path):
    data = bytearray(package.read_bytes())
    with zipfile.ZipFile(package) as zf:
        info = zf.getinfo("targets/onnx/model.onnx")
    offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size // 2
    data[offset] ^= 0xFF
    bad = tmp_path / "tampered.nav"
    bad.write_bytes(bytes(data))
    proc = cont(tmp_path, bad)
    assert proc.returncode == 2
    assert "tampered.nav" in proc.stderr and ("digest" in proc.stderr or "corrupt" in proc.stderr)
    assert "Traceback" not in proc.stderr
    objects = tmp_path / "deploy-cache" / "objects"
    assert not objects.exists() or not any(objects.glob("*/*"))


def test_truncated_and_newer_format_packages_are_refused(package, tmp_path):
    from navbuild.errors import InputError
    from navbuild.package.archive import write_archive
    from navbuild.package.view import Package

    truncated = tmp_path / "truncated.nav"
    truncated.write_bytes(package.read_bytes()[: package.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated|unreadable"):
        Package.open(truncated)
    newer = tmp_path / "newer.nav"
    with zipfile.ZipFile(package) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    manifest["format_version"] = 99
    write_archive(newer, manifest, {})
    with pytest.raises(InputError, match="format version 99.*upgrade navbuild"):
        Package.open(newer)


def test_leaving_artifacts_out_makes_a_smaller_package_that_rebuilds_them(tmp_path):
    slim = export(tmp_path, artifacts="slim")
    full = export(tmp_path, artifacts="all")
    assert slim.stat().st_size < full.stat().st_size
    proc = cont(tmp_path, slim)
    assert proc.returncode == 0, proc.stderr[-3000:]
    st = statuses(tmp_path)
    assert st["onnx"] == "built" and st["onnx-opt"] == "built"
    # the re-export is byte-identical, so the checks that read it are still cached
    assert st["correctness/onnx"] == "cached" and st["profile/torch"] == "cached"
