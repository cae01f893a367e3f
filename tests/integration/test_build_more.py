"""More end-to-end builds of the tiny project: ONNX-file sources, sample files, the dynamo
exporter, non-cascading re-exports, reproduce scripts, Ctrl-C, multirun recipe errors, gc.

Everything here runs for real (torch, ONNX, ONNX Runtime, child processes, the CLI).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import navbuild
from procs import live_commands

ONNX_SOURCE = ["source.torch=null", "source.onnx=model.onnx", "formats=[onnx,onnx-opt]"]
ONNX_SOURCE_TARGETS = {"reference", "onnx-opt", "correctness/onnx", "correctness/onnx-opt",
                       "profile/onnx", "profile/onnx-opt", "finalists"}
# the finalists are chosen after the profiles, so the plan does not list that target
PLANNED = ONNX_SOURCE_TARGETS - {"finalists"}


def export_tiny(path: Path, seed: int = 0) -> None:
    """Export the tiny model to ``path`` with a dynamic batch axis (input x, output y)."""
    import importlib.util

    import torch

    # Loaded by path under another name, so this test process does not keep a `tinymodels`
    # module of its own (the planner must find the project's file regardless: tested below).
    spec = importlib.util.spec_from_file_location("_tinymodels_for_export", path.parent / "tinymodels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.tiny(seed=seed).eval()
    torch.onnx.export(model, (torch.zeros(2, 8),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17, dynamo=False)


def _child_pids(project) -> list[int]:
    """Live processes running a navbuild step child for this project (from /proc)."""
    return [pid for pid, cmdline in live_commands().items()
            if "navbuild.execute.child" in cmdline and str(project.root) in cmdline]


# 1. An ONNX file as the source -----------------------------------------------------------


def test_an_onnx_file_source_builds_checks_profiles_and_caches_by_content(project):
    model = project.root / "model.onnx"
    export_tiny(model)

    project.run("recipe=tiny", *ONNX_SOURCE, check=True)
    st = project.statuses()
    assert set(st) == ONNX_SOURCE_TARGETS
    assert set(st.values()) == {"built"}
    s = project.summary()
    assert s["variants"]["onnx-opt"]["verdict"] == "pass"
    assert set(s["variants"]["onnx-opt"]["profile"]) == {"1", "4"}
    assert set(s["variants"]["onnx"]["profile"]) == {"1", "4"}
    assert s["best"]["variant"] in ("onnx", "onnx-opt")

    again = project.run("recipe=tiny", *ONNX_SOURCE, check=True)
    assert "nothing to do: every target is cached" in again.stderr
    assert set(project.statuses().values()) == {"cached"}

    # A new mtime with the same bytes: nothing is rebuilt.
    later = time.time() + 120
    os.utime(model, (later, later))
    project.run("recipe=tiny", *ONNX_SOURCE, check=True)
    assert set(project.statuses().values()) == {"cached"}

    # New bytes (other weights): everything downstream of the file is stale, then rebuilt.
    export_tiny(model, seed=1)
    plan = navbuild.plan("tiny", ONNX_SOURCE).by_id()
    assert {tid: plan[tid].status for tid in PLANNED} == {tid: "stale" for tid in PLANNED}
    shown = project.run("plan", "recipe=tiny", *ONNX_SOURCE, check=True)
    assert "stale" in shown.stdout and "cached" not in shown.stdout
    project.run("recipe=tiny", *ONNX_SOURCE, check=True)
    assert set(project.statuses().values()) == {"built"}


# 2. A samples file -----------------------------------------------------------------------


def test_a_samples_file_is_used_and_its_content_keys_the_reference(project):
    x = np.random.default_rng(7).uniform(-1, 1, size=(4, 8)).astype(np.float32)
    np.savez(project.root / "mysamples.npz", x=x)
    args = ["recipe=tiny", "samples.file=mysamples.npz", "formats=[onnx]"]

    project.run(*args, check=True)
    assert set(project.statuses().values()) == {"built"}
    assert project.summary()["variants"]["onnx"]["verdict"] == "pass"
    with np.load(project.root / "build" / "tiny" / "reference" / "samples.npz") as saved:
        assert saved.files == ["x"]
        np.testing.assert_array_equal(saved["x"], x)
        assert saved["x"].dtype == np.float32

    assert navbuild.plan("tiny", args[1:]).by_id()["reference"].status == "cached"
    np.savez(project.root / "mysamples.npz", x=x + 0.5)
    plan = navbuild.plan("tiny", args[1:]).by_id()
    assert plan["reference"].status == "stale"
    assert plan["onnx"].status == "cached"  # the export does not read the samples
    project.run(*args, check=True)
    st = project.statuses()
    assert st["reference"] == "built" and st["onnx"] == "cached"
    with np.load(project.root / "build" / "tiny" / "reference" / "samples.npz") as saved:
        np.testing.assert_array_equal(saved["x"], x + 0.5)


def test_a_samples_file_with_the_wrong_dtype_exits_2_naming_the_array(project):
    np.savez(project.root / "bad.npz", x=np.zeros((4, 8), dtype=np.float64))
    proc = project.run("recipe=tiny", "samples.file=bad.npz")
    assert proc.returncode == 2, proc.stderr
    assert "array 'x'" in proc.stderr and "float64" in proc.stderr and "float32" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert project.objects() == []


# 3. The dynamo exporter -------------------------------------------------------------------


def test_the_dynamo_exporter_builds_a_correct_onnx_variant(project):
    proc = project.run("recipe=tiny", "onnx.exporter=dynamo", "formats=[onnx]", check=True)
    st = project.statuses()
    assert st["onnx"] == "built" and st["correctness/onnx"] == "built" and st["profile/onnx"] == "built", proc.stderr
    s = project.summary()
    assert s["variants"]["onnx"]["verdict"] == "pass"
    import onnx

    onnx.checker.check_model(str(project.root / "build" / "tiny" / "onnx" / "model.onnx"))
    # torchscript and dynamo exports are different targets.
    assert navbuild.plan("tiny", ["onnx.exporter=torchscript", "formats=[onnx]"]).by_id()["onnx"].status != "cached"


# 4. A byte-identical re-export does not cascade -----------------------------------------


def test_a_byte_identical_re_export_does_not_cascade(project):
    project.run("recipe=tiny", check=True)
    first = project.summary()
    onnx_bytes = (project.root / "build" / "tiny" / "onnx" / "model.onnx").read_bytes()

    # The factory module is part of the source digest; a comment changes no weight and no graph.
    with open(project.root / "tinymodels.py", "a") as f:
        f.write("\n# a comment that changes nothing the export sees\n")
    plan = navbuild.plan("tiny").by_id()
    assert plan["onnx"].status == "stale"

    project.run("recipe=tiny", check=True)
    st = project.statuses()
    assert st["onnx"] == "built"
    assert (project.root / "build" / "tiny" / "onnx" / "model.onnx").read_bytes() == onnx_bytes
    for tid in ("onnx-opt", "correctness/onnx", "correctness/onnx-opt", "profile/onnx", "profile/onnx-opt"):
        assert st[tid] == "cached", (tid, st)
    # reference and profile/torch read the source itself: they are rebuilt.
    assert st["reference"] == "built" and st["profile/torch"] == "built"
    keys = {t["id"]: t["key"] for t in first["targets"]}
    now = {t["id"]: t["key"] for t in project.summary()["targets"]}
    assert now["onnx"] != keys["onnx"] and now["onnx-opt"] == keys["onnx-opt"]


def test_the_source_digest_hashes_the_projects_module_even_if_another_is_imported(project, tmp_path):
    import importlib
    import sys

    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "tinymodels.py").write_text("def tiny(**_):\n    raise RuntimeError('not this one')\n")
    saved = sys.modules.pop("tinymodels", None)
    sys.path.insert(0, str(other))
    try:
        importlib.import_module("tinymodels")
        from navbuild.api import load_recipe, prepare

        recipe, path = load_recipe("tiny", [], project.root)
        files = prepare(recipe, path, project.root).graph.leaves["source"].files
    finally:
        sys.path.remove(str(other))
        sys.modules.pop("tinymodels", None)
        if saved is not None:
            sys.modules["tinymodels"] = saved
    assert project.root / "tinymodels.py" in files, files


# 5. reproduce.sh ------------------------------------------------------------------------


def test_reproduce_script_re_runs_a_built_step_to_the_same_bytes(project, tmp_path):
    project.run("recipe=tiny", "formats=[onnx]", check=True)
    target = project.root / "build" / "tiny" / "onnx"
    script = target / "reproduce.sh"
    assert script.is_file() and os.access(script, os.X_OK)
    out = tmp_path / "again"
    proc = subprocess.run(["sh", str(script), str(out)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "model.onnx").read_bytes() == (target / "model.onnx").read_bytes()
    assert (out / "result.json").is_file()


def test_reproduce_script_of_a_failed_target_fails_the_same_way(project, tmp_path):
    proc = project.run("recipe=tiny", "source.torch=tinymodels:not_exportable", "formats=[onnx]")
    assert proc.returncode == 1
    assert project.statuses()["onnx"] == "failed"
    script = project.root / "build" / "tiny" / "onnx" / "reproduce.sh"
    assert script.is_file()
    again = subprocess.run(["sh", str(script), str(tmp_path / "again")], capture_output=True, text=True,
                           timeout=300, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert again.returncode != 0
    assert "cannot be exported (deliberately)" in again.stdout + again.stderr


# 6. Ctrl-C ------------------------------------------------------------------------------


def test_ctrl_c_exits_130_and_leaves_no_child_and_no_staging(project):
    # let the child get going (importing torch) before the interrupt
    code, out = project.ctrl_c_when(lambda: bool(_child_pids(project)), "recipe=tiny", settle_s=0.3)
    assert code == 130, out
    assert "interrupted" in out
    assert "Traceback" not in out
    deadline = time.monotonic() + 10
    while _child_pids(project) and time.monotonic() < deadline:  # SIGKILLed children vanish at once
        time.sleep(0.05)
    assert _child_pids(project) == []
    tmp = project.cache / "tmp"
    left = sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []
    assert left == [], f"staging left behind after Ctrl-C: {left}"
    # Nothing half-built is trusted: the next build succeeds with every entry verified.
    project.run("recipe=tiny", check=True)
    assert set(project.statuses().values()) <= {"built", "cached"}


@pytest.mark.parametrize("where", ["write_job", "publish"])
def test_ctrl_c_outside_the_child_leaves_no_staging_either(project, monkeypatch, where):
    """Ctrl-C can land while the job is written or while the entry is fsynced, not only in the child."""
    import navbuild.execute.backends.job as job
    from navbuild.cache.store import Store

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    if where == "write_job":
        monkeypatch.setattr(job, "write_job", interrupted)
    else:
        monkeypatch.setattr(Store, "publish", interrupted)
    with pytest.raises(KeyboardInterrupt):
        navbuild.build("tiny", ["formats=[torch]"])
    tmp = project.cache / "tmp"
    assert (sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []) == []
    assert project.objects() == []
    monkeypatch.undo()
    monkeypatch.setenv("NAVBUILD_CACHE_DIR", str(project.cache))
    monkeypatch.chdir(project.root)
    assert navbuild.build("tiny", ["formats=[torch]"]).exit_code == 0


# 7. A recipe error in one sweep point ---------------------------------------------------


def test_multirun_over_recipes_with_a_broken_one_exits_2_before_building(project):
    recipe = (project.root / "recipes" / "tiny.yaml").read_text()
    (project.root / "recipes" / "broken.yaml").write_text(recipe + "profle: {}\n")
    proc = project.run("-m", "recipe=tiny,broken")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "broken.yaml" in proc.stderr
    assert "profle: unknown key (did you mean 'profile'?)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert project.objects() == []
    assert not (project.root / "build").exists() or not list((project.root / "build").rglob("summary.json"))


# 8. gc by size and age ------------------------------------------------------------------


def test_gc_max_size_evicts_least_recently_used_then_a_build_rebuilds(project):
    args = ["recipe=tiny", "formats=[onnx]"]
    project.run(*args, check=True)
    before = project.objects()
    assert before
    dry = project.run("gc", "--max-size", "1", "--dry-run", check=True)
    assert "over the size limit" in dry.stdout
    assert project.objects() == before
    gc = project.run("gc", "--max-size", "1", check=True)
    assert gc.stdout.count("over the size limit") == len(before), gc.stdout
    assert f"removed {len(before)} entries" in gc.stdout
    assert project.objects() == []
    project.run(*args, check=True)
    assert set(project.statuses().values()) == {"built"}


def test_gc_max_size_keeps_the_most_recently_used(project):
    project.run("recipe=tiny", "formats=[onnx]", check=True)
    from navbuild.cache.store import Store

    store = Store(project.cache)
    entries = [store.lookup(p.name) for p in project.objects()]
    sizes = {e.key: store.entry_size(e) for e in entries}
    # Give every entry a known last use (meta.json's mtime, as lookups record it), oldest first.
    order = sorted(sizes)
    base = time.time() - 1000
    for i, key in enumerate(order):
        os.utime(store.entry_dir(key) / "meta.json", (base + i, base + i))
    newest = order[-1]
    gc = project.run("gc", "--max-size", str(sizes[newest]), check=True)
    assert [p.name for p in project.objects()] == [newest], gc.stdout


@pytest.mark.parametrize("age", ["0s", "0", "0m"])
def test_gc_max_age_zero_removes_every_entry(project, age):
    project.run("recipe=tiny", "formats=[torch]", check=True)
    n = len(project.objects())
    assert n > 0
    time.sleep(0.05)
    gc = project.run("gc", "--max-age", age, check=True)
    assert gc.stdout.count("unused for") == n, gc.stdout
    assert project.objects() == []
    project.run("recipe=tiny", "formats=[torch]", check=True)
    assert set(project.statuses().values()) == {"built"}


def test_gc_max_age_in_days_keeps_fresh_entries_and_rejects_nonsense(project):
    project.run("recipe=tiny", "formats=[torch]", check=True)
    before = project.objects()
    project.run("gc", "--max-age", "30d", check=True)
    assert project.objects() == before
    bad = project.run("gc", "--max-age", "soon")
    assert bad.returncode == 2 and "invalid age 'soon'" in bad.stderr
