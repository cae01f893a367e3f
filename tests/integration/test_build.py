"""Real builds of a tiny torch model: export, ORT optimization, checks, profiles, and the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import navbuild
from navbuild.errors import InputError, RecipeError
from navbuild.report.events import CollectingReporter

ALL = ["reference", "onnx", "onnx-opt", "correctness/onnx", "correctness/onnx-opt",
       "profile/torch", "profile/onnx", "profile/onnx-opt", "finalists"]


def statuses(result) -> dict[str, str]:
    return {o.id: o.status for o in result.outcomes.values()}


def test_build_then_noop_then_one_knob(project):
    first = navbuild.build("tiny")
    assert statuses(first) == {t: "built" for t in ALL}
    assert first.exit_code == 0
    s = first.summary
    assert s["variants"]["onnx"]["verdict"] == "pass"
    assert s["variants"]["torch"]["verdict"] == "reference"
    assert set(s["variants"]["onnx-opt"]["profile"]) == {"1", "4"}
    assert s["best"]["variant"] in ("torch", "onnx", "onnx-opt")
    for t in s["targets"]:
        assert len(t["key"]) == 64 and t["seconds"] >= 0
    build = project.root / "build" / "tiny"
    assert (build / "onnx" / "model.onnx").is_file()
    assert (build / "onnx" / "log.txt").is_file() and (build / "onnx" / "reproduce.sh").is_file()
    assert json.loads((build / "summary.json").read_text())["recipe"] == "tiny"
    assert "best:" in (build / "summary.txt").read_text()

    again = navbuild.build("tiny")
    assert statuses(again) == {t: "cached" for t in ALL}
    assert again.summary["variants"]["onnx"]["profile"] == s["variants"]["onnx"]["profile"]
    # on a built cache the plan ranks the variants as the build would: the finalists are a target like any other
    built = navbuild.plan("tiny")
    assert [t.id for t in built.targets] == ALL and built.pending == []
    assert {t.status for t in built.targets} == {"cached"}

    # One knob: the opset touches the export and what depends on it, not torch's profile.
    plan = navbuild.plan("tiny", ["onnx.opset=18"]).by_id()
    assert plan["onnx"].label == "stale: params.opset: 17 -> 18"
    assert plan["reference"].status == "cached" and plan["profile/torch"].status == "cached"
    changed = navbuild.build("tiny", ["onnx.opset=18"])
    st = statuses(changed)
    assert st["onnx"] == "built" and st["reference"] == "cached" and st["profile/torch"] == "cached"

    # Tolerances touch only the checks.
    tol = statuses(navbuild.build("tiny", ["onnx.opset=18", "correctness.atol=0.001"]))
    assert {t for t, v in tol.items() if v == "built"} == {"correctness/onnx", "correctness/onnx-opt"}


def test_a_fresh_plan_lists_the_later_phases_and_what_they_wait_for(project):
    plan = navbuild.plan("tiny")
    assert [t.id for t in plan.targets] == ALL[:-1]
    assert [(t.id, t.label) for t in plan.pending] == [
        ("finalists", "pending: waits for profile/torch, profile/onnx, profile/onnx-opt")]
    shown = project.run("plan", "recipe=tiny", check=True).stdout
    assert "finalists" in shown and "pending: waits for profile/torch" in shown


def test_a_failing_conversion_does_not_stop_its_siblings(project):
    result = navbuild.build("tiny", ["source.torch=tinymodels:not_exportable"])
    st = statuses(result)
    assert st["onnx"] == "failed"
    assert st["reference"] == "built" and st["profile/torch"] == "built"
    assert st["onnx-opt"] == "skipped" and st["correctness/onnx"] == "skipped"
    assert result.exit_code == 1
    failed = result.outcomes["onnx"]
    assert "cannot be exported (deliberately)" in failed.reason + failed.log_tail
    assert failed.log_path.is_file() and failed.reproduce.is_file()
    assert result.summary["best"]["variant"] == "torch"


def test_a_variant_that_breaks_above_batch_two_fails_its_check_and_is_never_best(project):
    # The export bakes the example batch (2) into the graph: right at batch 1, wrong at 4.
    result = navbuild.build("tiny", ["source.torch=tinymodels:first_rows_only", "formats=[onnx]"])
    check = result.outcomes["correctness/onnx"]
    assert check.status == "built"
    assert check.result["verdict"] == "fail"
    assert check.result["reason"].startswith("batch 4")
    assert check.result["batches"]["1"]["y"]["within_tolerance"] is True
    assert result.outcomes["profile/onnx"].status == "skipped"
    assert result.summary["best"]["variant"] is None
    assert result.exit_code == 1


def test_bad_inputs_are_clear_and_leave_the_cache_untouched(project):
    with pytest.raises(InputError, match="outputs"):
        navbuild.build("tiny", ["source.torch=tinymodels:two_outputs"])
    assert project.objects() == []
    with pytest.raises(RecipeError, match="did you mean 'opset'"):
        navbuild.build("tiny", ["onnx.opsett=18"])
    with pytest.raises(RecipeError, match="function 'tinny' not found in module 'tinymodels'"):
        navbuild.build("tiny", ["source.torch=tinymodels:tinny"])
    assert project.objects() == []


def test_reporter_sees_every_target(project):
    rep = CollectingReporter()
    navbuild.build("tiny", ["formats=[torch]"], reporter=rep)
    finished = [e[1].id for e in rep.events if e[0] == "finished"]
    assert finished == ["reference", "profile/torch"]
    assert rep.events[-1][0] == "summary"


def test_a_corrupt_entry_is_rebuilt_with_a_warning(project):
    navbuild.build("tiny", ["formats=[onnx]"])
    model = next(p for p in project.objects() if (p / "out" / "model.onnx").exists()) / "out" / "model.onnx"
    model.write_bytes(model.read_bytes()[:100])  # truncated
    rep = CollectingReporter()
    result = navbuild.build("tiny", ["formats=[onnx]"], reporter=rep)
    assert result.outcomes["onnx"].status == "built"
    warnings = [e[1] for e in rep.events if e[0] == "warning"]
    assert any("corrupt" in w for w in warnings)
    assert result.exit_code == 0


def test_python_api_accepts_a_dict_recipe(project):
    recipe = {"name": "fromdict", "source": {"torch": "tinymodels:tiny"},
              "inputs": [{"name": "x", "shape": ["batch", 8]}], "outputs": ["y"], "formats": ["torch"],
              "profile": {"batch_sizes": [2], "window_s": 0.01, "min_window_iters": 2, "max_windows": 3,
                          "stable_windows": 2, "stability": 0.5, "pin_cores": False}}
    result = navbuild.build(recipe)
    assert result.best == "torch"
    assert Path(result.summary["build_dir"]).name == "fromdict"
