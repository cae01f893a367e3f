"""The trade-off plot's points: correct, profiled variants' latency against their accuracy figure."""

from __future__ import annotations

from pathlib import Path

import pytest

from navbuild.report.tradeoff import TRADEOFF_FILE, accuracy_figure, budget_line, tradeoff_points, write_tradeoff


def _row(verdict: str, max_abs: float, latency: float, precision: str = "int8", metric: float | None = None) -> dict:
    corr = {"atol": 0.0, "range_rtol": 0.1, "cosine_min": 0.99,
            "batches": {"1": {"y": {"max_abs": max_abs, "scale": 10.0, "cosine_min": 0.999}}}}
    if metric is not None:
        corr["metric"] = {"name": "cos", "min": 0.99, "max": None, "worst": metric}
    return {"verdict": verdict, "precision": precision, "correctness": corr,
            "profile": {"8": {"latency_ms": {"p50": latency, "p99": latency * 2}}}}


def _summary(**rows) -> dict:
    return {"recipe": "t", "best": {"variant": "onnx-int8-aa", "batch_size": 8}, "variants": rows}


def test_points_are_the_correct_profiled_variants() -> None:
    summary = _summary(**{"torch": {**_row("reference", 0.0, 9.0, "fp32"), "correctness": None},
                          "onnx-int8-static": _row("fail", 2.0, 3.0), "onnx-int8-aa": _row("pass", 0.5, 4.0),
                          "onnx": _row("pass", 0.0, 8.0, "fp32")})
    points = tradeoff_points(summary, "p99")
    assert [(p["variant"], p["latency_ms"]) for p in points] == [("torch", 18.0), ("onnx-int8-aa", 8.0), ("onnx", 16.0)]
    assert points[0]["figure"] == 0  # the reference is exact
    assert points[1]["figure"] == pytest.approx(0.5)  # max_abs 0.5 of 0.1 x range 10
    assert points[2]["figure"] == pytest.approx(0.1)  # cosine 0.999 spends 0.1 of the floor 0.99's slack
    assert budget_line(summary) == 1.0


def test_the_metric_is_the_figure_when_the_recipe_has_one() -> None:
    row = _row("pass", 0.5, 4.0, metric=0.995)
    assert accuracy_figure(row) == (0.995, "cos")
    assert budget_line(_summary(v=row)) == 0.99


def test_the_png_is_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    summary = _summary(**{"onnx-int8-aa": _row("pass", 0.5, 4.0), "onnx": _row("pass", 0.0, 8.0, "fp32")})
    path = write_tradeoff(tmp_path, summary, "p50")
    assert path == tmp_path / TRADEOFF_FILE and path.read_bytes()[:4] == b"\x89PNG"
    assert write_tradeoff(tmp_path / "none", _summary(), "p50") is None
