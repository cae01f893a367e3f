"""The sweep's summary from its points' results: counts of targets, keys, and keys built by several points."""

from __future__ import annotations

import pickle
from types import SimpleNamespace as Outcome

from navbuild.report.sweep import point_result, render_sweep, sweep_dir, sweep_summary, write_sweep_summary


def _point(out: str, code: int, targets: list[tuple], pid: int) -> dict:
    outcomes = [Outcome(id=t[0], key=t[1], status=t[2], reason=t[3] if len(t) > 3 else "") for t in targets]
    result = point_result([f"x={out}"], f"/b/{out}", code, outcomes)
    return {**result, "pid": pid}


def test_a_key_in_several_points_built_by_one_is_shared_and_built_once():
    a = _point("a", 0, [("onnx", "k1", "built"), ("profile/onnx", "p1", "built")], pid=1)
    b = _point("b", 0, [("onnx", "k1", "cached"), ("profile/onnx", "p2", "built")], pid=2)
    c = _point("c", 1, [("onnx", "k1", "cached"), ("profile/onnx", None, "skipped"), ("ref", "r", "failed")], pid=2)
    s = sweep_summary([a, b, c], "joblib")
    assert s["exit_code"] == 1 and [p["exit_code"] for p in s["points"]] == [0, 0, 1]
    assert (s["targets"], s["distinct_keys"], s["built"], s["cached"], s["failed"]) == (7, 4, 3, 2, 1)
    assert (s["shared"], s["built_by_several"], s["processes"]) == (1, 0, 2)
    assert "keys built by more than one point: 0" in "\n".join(render_sweep(s))


def test_a_key_two_points_built_counts_as_built_by_several():
    a = _point("a", 0, [("onnx", "k1", "built")], pid=1)
    b = _point("b", 0, [("onnx", "k1", "built")], pid=2)
    assert sweep_summary([a, b], "basic")["built_by_several"] == 1


def test_a_provisional_measurement_measured_again_by_another_point_is_counted_apart():
    a = _point("a", 0, [("finalists", "f", "built", "")], pid=1)
    b = _point("b", 0, [("finalists", "f", "built", "measured again: provisional measurement (load)")], pid=2)
    s = sweep_summary([a, b], "basic")
    assert (s["built_by_several"], s["measured_again"], s["built"]) == (0, 1, 2)
    assert "1 measurement(s) measured again" in "\n".join(render_sweep(s))


def test_a_point_result_is_plain_picklable_data_and_the_summary_lands_where_the_points_share(tmp_path):
    result = point_result(["p=1"], tmp_path / "build" / "r" / "p=1", 0, [Outcome(id="onnx", key="k", status="built", reason="")])
    assert pickle.loads(pickle.dumps(result)) == result
    folder = sweep_dir([tmp_path / "build" / "r" / "p=1", tmp_path / "build" / "r" / "p=2"])
    assert folder == (tmp_path / "build" / "r").resolve()
    assert write_sweep_summary(folder, sweep_summary([result], "basic")).read_text().startswith("{")


def test_an_empty_sweep_exits_0():
    assert sweep_summary([], "basic")["exit_code"] == 0
