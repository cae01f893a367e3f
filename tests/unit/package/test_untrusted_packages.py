"""Crafted .nav packages, one per hole: each is refused (exit 2, no traceback) by `show` and by
continuing alike, leaves nothing in the cache and writes nothing outside it."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from navbuild.cache.digest import tree_digest
from navbuild.cache.keys import cache_key

ROOT = Path(__file__).resolve().parents[3]

#: `show` then continue (`plan`), in one real process: the CLI's own entry point, real files
BOTH = """
import sys
from navbuild.cli import main
print("SHOW", main(["show", sys.argv[1]]), flush=True)
print("PLAN", main(["plan", "source.package=" + sys.argv[1], *sys.argv[2:]]), flush=True)
"""


def _model_files() -> dict[str, bytes]:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4).eval()
    traced = torch.jit.trace(model, torch.zeros(2, 8))
    out = {}
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    out["source/model.pt"] = buf.getvalue()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    out["source/state_dict.pt"] = buf.getvalue()
    buf = io.BytesIO()
    np.savez(buf, x=np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32))
    out["samples/samples.npz"] = buf.getvalue()
    return out


_FILES = None


def base() -> tuple[dict, dict[str, bytes]]:
    """A valid package: a real TorchScript model, its state dict, samples and one built target."""
    global _FILES
    if _FILES is None:
        _FILES = _model_files()
    files = dict(_FILES)
    files["targets/onnx/model.onnx"] = b"stands for an ONNX file"
    payload = {"schema": 1, "step": "OnnxFromTorch", "step_version": 1, "params": {"opset": 17},
               "inputs": {"source": "0" * 64}, "tools": {}, "hardware": None}
    onnx_sha = hashlib.sha256(files["targets/onnx/model.onnx"]).hexdigest()
    manifest = {
        "format": "navbuild-package", "format_version": 1, "navbuild_version": "0.1.0",
        "created": "2026-12-01T00:00:00+0000", "source_framework": "torch",
        "source": {"file": "source/model.pt", "kind": "torchscript", "state_dict": "source/state_dict.pt"},
        "samples": "samples/samples.npz",
        "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 8], "range": [-1.0, 1.0]}],
        "outputs": ["y"],
        "recipe": {"name": "net", "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 8],
                                              "range": [-1.0, 1.0]}],
                   "outputs": ["y"], "formats": ["torch", "onnx"],
                   "source": {"torchscript": "source/model.pt"}, "samples": {"count": 4, "file": "samples/samples.npz"},
                   "runtime": {"intra_op_threads": 1}},
        "hardware": {"cpu_model": "test cpu", "usable_cpus": 1},
        "targets": {"onnx": {"key": cache_key(payload), "payload": payload,
                             "digest": tree_digest({"model.onnx": onnx_sha}), "status": "built",
                             "kind": "convert", "variant": None, "result": {"opset": 17}, "included": True,
                             "files": {"model.onnx": {"sha256": onnx_sha, "size": 23}}, "seconds": 1.0}},
        "variants": {"torch": {"verdict": "pass", "profile": {"1": {"throughput": 10.0, "latency_ms": {"p50": 0.1}}}}},
        "best": {"variant": "torch", "why": "the only one"},
    }
    return manifest, files


def write(path: Path, manifest: dict, members: dict[str, bytes], *, declare: bool = True,
          compress: int = zipfile.ZIP_STORED) -> Path:
    """Write a package as an attacker can: any members, a manifest and its (correct) digest."""
    manifest = copy.deepcopy(manifest)
    if declare:
        manifest["files"] = {n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for n, b in members.items()}
    body = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        zf.writestr("manifest.json", body)
        zf.writestr("manifest.sha256", hashlib.sha256(body).hexdigest() + "\n")
        for name, data in members.items():
            info = zipfile.ZipInfo(name)  # ZipInfo keeps "../" and leading "/" as written
            info.compress_type = compress
            zf.writestr(info, data)
    return path


def add_target_file(manifest: dict, members: dict, tid: str, rel: str, data: bytes) -> None:
    """Give target ``tid`` one more artifact, listed consistently everywhere (digest included)."""
    t = manifest["targets"].setdefault(tid, copy.deepcopy(manifest["targets"]["onnx"]))
    members[f"targets/{tid}/{rel}"] = data
    t["files"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    t["digest"] = tree_digest({r: f["sha256"] for r, f in t["files"].items()})


class Machine:
    """Another machine: a working folder and a cache, both inside ``root``; runs navbuild for real."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "work"
        self.cache = root / "cache"
        self.work.mkdir(parents=True)

    def both(self, package: Path, *overrides: str, env: dict | None = None) -> tuple[int, int, str]:
        environ = {k: v for k, v in os.environ.items() if k != "NAVBUILD_PACKAGE_MAX_BYTES"}
        environ.update({"NAVBUILD_CACHE_DIR": str(self.cache), "PYTHONPATH": str(ROOT), **(env or {})})
        proc = subprocess.run([sys.executable, "-c", BOTH, str(package), *overrides], cwd=self.work, env=environ,
                              capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        codes = dict(line.split() for line in proc.stdout.splitlines() if line.startswith(("SHOW ", "PLAN ")))
        assert proc.returncode == 0 and set(codes) == {"SHOW", "PLAN"}, proc.stdout + proc.stderr
        return int(codes["SHOW"]), int(codes["PLAN"]), proc.stderr

    def files(self) -> set[Path]:
        return {p for p in self.root.rglob("*") if p.is_file()}


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path / "machine")


def refused(machine: Machine, package: Path, match: str, env: dict | None = None) -> None:
    """`show` and continuing both exit 2 with ``match`` and no traceback; nothing stays anywhere."""
    before = machine.files()
    show, plan, err = machine.both(package, env=env)
    assert (show, plan) == (2, 2), err
    blocks = err.split("navbuild: error:")[1:]
    assert len(blocks) == 2 and "Traceback" not in err, err
    assert all(re.search(match, b) for b in blocks), err
    assert machine.files() == before, sorted(map(str, machine.files() - before))  # nothing in the cache, nothing out
    assert not list(machine.root.parent.glob("escaped*"))


def test_the_valid_base_package_is_shown_and_seeds_the_cache(machine, tmp_path):
    package = write(tmp_path / "ok.nav", *base())
    show, plan, err = machine.both(package)
    assert (show, plan) == (0, 0), err
    entries = list((machine.cache / "objects").glob("*/*"))
    assert [e.name for e in entries] == [base()[0]["targets"]["onnx"]["key"]]
    assert len(list((machine.cache / "packages").iterdir())) == 1


def test_a_member_with_dotdot_is_refused(machine, tmp_path):
    manifest, members = base()
    members["targets/onnx/../../../../../escaped.txt"] = b"x"
    refused(machine, write(tmp_path / "dotdot.nav", manifest, members), r"member 'targets/onnx/\.\./")


def test_an_absolute_member_is_refused(machine, tmp_path):
    manifest, members = base()
    members[str(tmp_path / "escaped.txt")] = b"x"
    refused(machine, write(tmp_path / "absolute.nav", manifest, members), r"member '/.*escaped\.txt' is not a name")


def test_a_member_in_the_zip_but_not_in_the_manifest_with_dotdot_is_refused(machine, tmp_path):
    manifest, members = base()
    path = write(tmp_path / "unlisted.nav", manifest, members)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(zipfile.ZipInfo("../escaped.txt"), b"x")
    refused(machine, path, r"member '\.\./escaped\.txt' is not a name")


def test_dotdot_in_a_target_id_is_refused(machine, tmp_path):
    manifest, members = base()
    t = manifest["targets"].pop("onnx")
    manifest["targets"]["../../../escaped"] = t
    members["targets/../../../escaped/model.onnx"] = members.pop("targets/onnx/model.onnx")
    refused(machine, write(tmp_path / "tid.nav", manifest, members), r"not a (valid target id|name a package)")


def test_dotdot_in_a_target_file_is_refused(machine, tmp_path):
    # Seeding copies <package folder>/targets/<id>/<file> to <store>/tmp/<staging>/out/<file>. The
    # first target seeds objects/<key>/out/model.onnx; the second's file climbs from both folders to
    # there, so it is read inside the cache and written one level above it: outside.
    manifest, members = base()
    key = manifest["targets"]["onnx"]["key"]
    second = copy.deepcopy(manifest["targets"]["onnx"])
    second["payload"]["params"]["opset"] = 18
    second["key"] = cache_key(second["payload"])
    rel = f"../../../../objects/{key[:2]}/{key}/out/model.onnx"
    second["files"] = {rel: second["files"]["model.onnx"]}
    manifest["targets"]["onnx-18"] = second
    add_target_file(manifest, members, "onnx-18", "pad.txt", b"makes targets/onnx-18/ a folder")
    refused(machine, write(tmp_path / "rel.nav", manifest, members), r"targets\[onnx-18\]\.files: '\.\./\.\./\.\./\.\./objects/.*' is not a valid artifact")
    assert not (machine.root / "objects").exists()


@pytest.mark.parametrize("field, value, match", [
    ("source.file", "../../../escaped.pt", r"source\.file: '\.\./\.\./\.\./escaped\.pt' must be one of"),
    ("samples", "/tmp/escaped.npz", r"samples: '/tmp/escaped\.npz' must be samples/samples\.npz"),
    ("inputs.0.name", "../x", r"inputs\[0\]\.name: '\.\./x' is not a valid input name"),
    ("recipe.description", "${oc.env:HOME}", r"recipe\.description: holds an interpolation"),
    ("recipe.formats", ["torch", "nope"], r"recipe\.formats\[1\]: unknown value 'nope'"),
])
def test_a_refused_manifest_value(machine, tmp_path, field, value, match):
    manifest, members = base()
    *parents, leaf = field.split(".")
    node = manifest
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(leaf) if leaf.isdigit() else leaf] = value
    refused(machine, write(tmp_path / "field.nav", manifest, members), match)


def test_a_python_module_is_refused_wherever_it_would_go(machine, tmp_path):
    # a module in a target's folder, and one aimed at the working folder (first on a step's PYTHONPATH)
    manifest, members = base()
    add_target_file(manifest, members, "onnx", "sitecustomize.py", b"open('escaped-ran', 'w')\n")
    refused(machine, write(tmp_path / "module.nav", manifest, members), r"'targets/onnx/sitecustomize\.py' is code")
    manifest, members = base()
    add_target_file(manifest, members, "onnx", "../../../../../work/numpy.py", b"open('escaped-ran', 'w')\n")
    refused(machine, write(tmp_path / "module2.nav", manifest, members), r"is not a name a package may hold")
    assert not (machine.work / "numpy.py").exists() and not (machine.work / "escaped-ran").exists()


@pytest.mark.parametrize("drop", ["targets", "recipe", "files", "targets.onnx.payload", "source.kind"])
def test_a_manifest_missing_fields_is_refused(machine, tmp_path, drop):
    manifest, members = base()
    *parents, leaf = drop.split(".")
    node = manifest
    for part in parents:
        node = node[part]
    node.pop(leaf, None)  # "files" is only ever added by write(declare=True)
    path = write(tmp_path / "missing.nav", manifest, members, declare=drop != "files")
    refused(machine, path, rf"{leaf}: missing")


def test_an_invalid_target_key_is_refused(machine, tmp_path):
    manifest, members = base()
    manifest["targets"]["onnx"]["key"] = "../../escaped"
    refused(machine, write(tmp_path / "key.nav", manifest, members), r"targets\[onnx\]\.key: '\.\./\.\./escaped' is not a sha256")
    manifest, members = base()
    manifest["targets"]["onnx"]["key"] = "ab" * 32  # well-formed, but not the digest of its payload
    refused(machine, write(tmp_path / "key2.nav", manifest, members), r"does not match its payload")


def test_a_member_larger_than_declared_is_refused(machine, tmp_path):
    manifest, members = base()
    manifest["files"] = {n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for n, b in members.items()}
    members["targets/onnx/model.onnx"] = members["targets/onnx/model.onnx"] + b"\0" * (1 << 20)
    path = write(tmp_path / "larger.nav", manifest, members, declare=False)
    refused(machine, path, r"member targets/onnx/model\.onnx is 1048599 bytes in the zip, the manifest declares 23")


def test_a_zip_bomb_is_refused_before_it_inflates(machine, tmp_path):
    manifest, members = base()
    add_target_file(manifest, members, "onnx", "weights.bin", b"\0" * (32 << 20))  # 32 MiB of zeros...
    path = write(tmp_path / "bomb.nav", manifest, members, compress=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 200_000  # ...in a package of a few dozen KB
    refused(machine, path, r"declare \d+ bytes unpacked, more than the \d+ a \d+-byte package may unpack to")


def test_a_package_beyond_the_total_cap_is_refused(machine, tmp_path):
    manifest, members = base()
    add_target_file(manifest, members, "onnx", "weights.bin", os.urandom(2 << 20))  # stored: no inflation
    path = write(tmp_path / "big.nav", manifest, members)
    refused(machine, path, r"more than the 1048576", env={"NAVBUILD_PACKAGE_MAX_BYTES": "1M"})


def test_a_refused_continue_leaves_nothing_in_the_cache(machine, tmp_path):
    # the package is fine; the user's override is not: refused after the package was unpacked
    package = write(tmp_path / "ok.nav", *base())
    show, plan, err = machine.both(package, "formats=[torch,nope]")
    assert (show, plan) == (0, 2) and "formats[1]: unknown value 'nope'" in err, err
    assert not [p for p in machine.cache.rglob("*") if p.is_file()]
    assert not list((machine.cache / "objects").glob("*/*")) and not list((machine.cache / "packages").iterdir())


def test_the_packages_recipe_decides_no_code_no_program_and_no_folder(tmp_path, monkeypatch):
    from navbuild.api import load_recipe, prepare

    manifest, members = base()
    manifest["recipe"].update({
        "samples": {"count": 4, "file": None, "generator": "evilmod:gen"},
        "correctness": {"metric": {"function": "evilmod:metric", "name": "m", "min": 0.0}},
        "triton": {"server": {"path": "/bin/sh", "url": "203.0.113.1:8000"}},
        "output_dir": str(tmp_path / "escaped-build"), "cache": {"dir": str(tmp_path / "escaped-cache")}})
    package = write(tmp_path / "code.nav", manifest, members)
    work = tmp_path / "work"
    work.mkdir()
    (work / "evilmod.py").write_text("open('imported', 'w')\ndef gen(**_): pass\ndef metric(*_): return {}\n")
    monkeypatch.setenv("NAVBUILD_CACHE_DIR", str(tmp_path / "cache"))
    rec, path = load_recipe("package", [f"source.package={package}"], work)
    prep = prepare(rec, path, work, [f"source.package={package}"])
    r = prep.recipe
    assert r.samples.generator is None and r.correctness.metric is None
    assert r.triton.server.path is None and r.triton.server.url is None
    assert r.cache.dir is None and prep.build_dir == work / "build" / "package"
    assert r.samples.file.startswith(str(tmp_path / "cache" / "packages"))
    assert not (work / "imported").exists()
    assert not list(tmp_path.glob("escaped*"))


def test_state_dict_loads_tensors_only(tmp_path):
    import torch

    from navbuild.package.archive import PackageError
    from navbuild.package.view import Package

    manifest, members = base()
    pkg = Package.open(write(tmp_path / "ok.nav", manifest, members))
    assert set(pkg.state_dict()) == {"weight", "bias"}
    marker = tmp_path / "escaped-ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    buf = io.BytesIO()
    torch.save({"weight": Payload()}, buf)
    members["source/state_dict.pt"] = buf.getvalue()
    pkg = Package.open(write(tmp_path / "pickle.nav", manifest, members))
    with pytest.raises(PackageError, match="is not a plain state dict"):
        pkg.state_dict()
    assert not marker.exists()


def test_the_writer_leaves_code_out_of_a_package():
    from navbuild.package.writer import _portable

    assert _portable("onnx", {"model.onnx": {}})
    assert not _portable("triton/model/onnx", {"local/m/1/model.py": {}, "local/m/config.pbtxt": {}})
    assert not _portable("../x", {"model.onnx": {}})
