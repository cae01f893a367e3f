"""The command line as users type it: build, plan, errors, multirun, gc (real subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest


def test_build_plan_and_noop_from_the_command_line(project):
    first = project.run("recipe=tiny", check=True)
    assert "best:" in first.stderr
    assert set(project.statuses().values()) == {"built"}
    again = project.run("recipe=tiny.yaml", check=True)
    assert "nothing to do: every target is cached" in again.stderr
    assert set(project.statuses().values()) == {"cached"}

    plan = project.run("plan", "recipe=tiny", "onnx.opset=18", "profile.batch_sizes=[1,2]", check=True)
    assert "stale: params.opset: 17 -> 18" in plan.stdout
    assert "stale: params.batch_sizes: [1, 4] -> [1, 2]" in plan.stdout
    # plan ran nothing: the record and summary are those of the last build
    assert set(project.statuses().values()) == {"cached"}


@pytest.mark.parametrize("args, message", [
    (["recipe=tiny", "onnx.opsett=18"], "onnx.opsett: unknown key (did you mean 'opset'?)"),
    (["recipe=tiny", "onnx.opset=abc"], "onnx.opset"),
    (["recipe=tiny", "profile.batch_sizes=[1,8,-4]"], "profile.batch_sizes[2]: -4 must be >= 1"),
    (["recipe=tinny"], "no recipe named 'tinny' (did you mean 'tiny'?)"),
    (["recipe=tiny", "source.torch=nomodule_xyz:f"], "source.torch: module 'nomodule_xyz' not found"),
    (["recipe=tiny", "source.torch=null", "source.onnx=missing.onnx", "formats=[onnx]"],
     "source.onnx: file 'missing.onnx' does not exist"),
    (["recipe=tiny", "source.torch=tinymodels:two_outputs"], "the recipe declares 1"),
])
def test_bad_input_exits_2_with_one_clear_message_and_no_traceback(project, args, message):
    proc = project.run(*args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert project.objects() == []


def test_traceback_flag_shows_the_traceback(project):
    proc = project.run("--traceback", "recipe=tiny", "onnx.opsett=18")
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_recipe_file_with_a_typo_names_the_file_and_key(project):
    (project.root / "recipes" / "typo.yaml").write_text("source:\n  torch: tinymodels:tiny\nprofle: {}\n")
    proc = project.run("recipe=typo")
    assert proc.returncode == 2
    assert "typo.yaml" in proc.stderr and "profle: unknown key (did you mean 'profile'?)" in proc.stderr


def test_users_recipe_wins_over_the_packaged_one(project):
    (project.root / "recipes" / "mlp.yaml").write_text(
        (project.root / "recipes" / "tiny.yaml").read_text().replace("a tiny MLP", "my own mlp"))
    proc = project.run("plan", "recipe=mlp", check=True)
    assert "plan of recipe mlp" in proc.stdout and "/build/mlp" in proc.stdout
    import navbuild.api as api

    recipe, path = api.load_recipe("mlp", cwd=project.root)
    assert recipe.description == "my own mlp for tests" and path == project.root / "recipes" / "mlp.yaml"


def test_multirun_shares_one_cache_and_builds_identical_targets_once(project):
    proc = project.run("-m", "recipe=tiny", "profile.batch_sizes=[1],[1,2]", check=True)
    dirs = sorted(p.parent for p in (project.root / "build" / "tiny").glob("*/summary.json"))
    assert len(dirs) == 2, proc.stderr
    sums = [json.loads((d / "summary.json").read_text()) for d in dirs]
    by_point = [{t["id"]: t["status"] for t in s["targets"]} for s in sums]
    # The export and its optimization do not depend on batch sizes: built in one point, cached in the other.
    for tid in ("onnx", "onnx-opt"):
        assert sorted(p[tid] for p in by_point) == ["built", "cached"]
    assert all(p["reference"] == "built" for p in by_point)


def test_multirun_validates_every_point_before_running_any(project):
    proc = project.run("-m", "recipe=tiny", "profile.batch_sizes=[1],[-1]")
    assert proc.returncode == 2
    assert "profile.batch_sizes[0]: -1 must be >= 1" in proc.stderr
    assert project.objects() == []


def _sweep_exit_codes(project) -> dict[str, int]:
    """Each sweep point's exit code, as its summary.json records it, by point folder."""
    return {p.parent.name: json.loads(p.read_text())["exit_code"]
            for p in (project.root / "build" / "tiny").glob("*/summary.json")}


SWEEP_ONE_FAILS = ["-m", "recipe=tiny", "formats=[onnx]", "profile.batch_sizes=[1]",
                   "source.torch=tinymodels:not_exportable,tinymodels:tiny"]


def test_multirun_exits_with_the_worst_exit_code_of_its_points(project):
    """A point whose conversion fails does not stop the next; the sweep exits as the worst point."""
    proc = project.run(*SWEEP_ONE_FAILS)
    assert proc.returncode == 1, proc.stderr
    codes = _sweep_exit_codes(project)
    assert sorted(codes.values()) == [0, 1], codes


def test_multirun_exit_code_comes_back_from_a_launcher_running_points_in_other_processes(project):
    """With the joblib launcher the points run in worker processes: their codes still decide."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    proc = project.run(*SWEEP_ONE_FAILS, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert proc.returncode == 1, proc.stderr
    assert sorted(_sweep_exit_codes(project).values()) == [0, 1]
    ok = project.run("-m", "recipe=tiny", "formats=[onnx]", "profile.batch_sizes=[1],[1,2]",
                     "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert ok.returncode == 0, ok.stderr


def test_multirun_with_an_unknown_launcher_is_a_command_line_error(project):
    proc = project.run("-m", "recipe=tiny", "profile.batch_sizes=[1],[2]", "hydra/launcher=nosuchlauncher")
    assert proc.returncode == 2, proc.stderr
    assert "nosuchlauncher" in proc.stderr and "Traceback" not in proc.stderr
    assert project.objects() == []


def test_gc_dry_run_then_prune_unreferenced(project):
    project.run("recipe=tiny", "formats=[onnx]", check=True)
    project.run("recipe=tiny", "formats=[onnx]", "onnx.opset=18", check=True)
    before = project.objects()
    dry = project.run("gc", "--dry-run", check=True)
    assert "would remove" in dry.stdout
    assert project.objects() == before
    real = project.run("gc", check=True)
    assert "removed" in real.stdout
    after = project.objects()
    assert 0 < len(after) < len(before)
    # What the last build refers to survived: a rebuild is all cached.
    project.run("recipe=tiny", "formats=[onnx]", "onnx.opset=18", check=True)
    assert set(project.statuses().values()) == {"cached"}
    bad = project.run("gc", "--max-size", "lots")
    assert bad.returncode == 2 and "lots" in bad.stderr


def test_killing_a_build_at_any_moment_leaves_no_trusted_partial_entry(project):
    for delay in (0.5, 2.0, 4.0):
        proc = project.popen("recipe=tiny")
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    final = project.run("recipe=tiny", check=True)
    assert "corrupt" not in final.stderr or "rebuilt" in final.stderr
    assert set(project.statuses().values()) <= {"built", "cached"}
    # every entry in the store verifies
    from navbuild.cache.store import Store

    store = Store(project.cache)
    for entry_dir in project.objects():
        assert store.lookup(entry_dir.name) is not None


def test_two_concurrent_builds_share_the_cache_without_building_a_key_twice(project):
    a = project.popen("recipe=tiny", "output_dir=build/a")
    b = project.popen("recipe=tiny", "output_dir=build/b")
    out_a, _ = a.communicate(timeout=300)
    out_b, _ = b.communicate(timeout=300)
    assert a.returncode == 0, out_a
    assert b.returncode == 0, out_b
    sa, sb = project.statuses("build/a"), project.statuses("build/b")
    for tid in sa:
        assert sorted([sa[tid], sb[tid]]) == ["built", "cached"], (tid, sa[tid], sb[tid])


def test_plan_works_where_torch_and_onnxruntime_are_not_installed(project):
    """The planner is pure: with torch and onnxruntime unimportable, plan still runs."""
    code = ("import sys; sys.modules['torch'] = None; sys.modules['onnxruntime'] = None; "
            "from navbuild.cli import main; sys.exit(main(['plan', 'recipe=mlp']))")
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", code], cwd=project.root, env=project.env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in proc.stdout.splitlines()
             if line.count("│") >= 3}
    assert lines["reference"] == "unavailable: torch not installed"
    assert lines["onnx"] == "unavailable: torch not installed"
    assert lines["onnx-opt"] == "unavailable: onnxruntime not installed"
    assert lines["profile/onnx"] == "unavailable: onnxruntime not installed"
