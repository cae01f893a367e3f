"""Accuracy-aware int8 on a tiny real model with one quantization-hostile layer: onnx-int8-aa's search
(ONNX Runtime, ordered by the drift ranking, each trial cached) and openvino-int8-aa's (NNCF, the same search
ordered by each OpenVINO layer's own int8 error)."""

from __future__ import annotations

import navbuild
from test_drift import HOSTILE, HOSTILE_RECIPE  # the drift test's model: fc2 reads a huge-range activation


def _project(project) -> None:
    (project.root / "hostilemodels.py").write_text(HOSTILE)


def test_onnx_int8_aa_keeps_the_hostile_layer_in_fp32_and_reuses_its_trials(project):
    _project(project)
    result = navbuild.build("tiny", [*HOSTILE_RECIPE, "variants=[torch,onnx-int8-static,onnx-int8-aa]"])
    table = result.summary["variants"]
    assert table["onnx-int8-static"]["verdict"] == "fail"  # full int8 misses the default int8 budget
    row = table["onnx-int8-aa"]
    assert row["verdict"] == "pass", row.get("reason")
    kept = row["search"]["kept_fp32"]
    assert "/fc2/Gemm" in kept and len(kept) <= 3, kept
    trials = row["search"]["trials"]
    assert trials[0]["keep"] == 0 and not trials[0]["passes"]
    statuses = {o.id: o.status for o in result.outcomes.values()}
    assert statuses["aa/onnx-int8-aa/keep-0"] == "cached"  # full int8 is onnx-int8-static: the same key
    assert statuses["onnx-int8-aa"] == "cached"  # the chosen trial's model: the same key
    assert statuses["correctness/onnx-int8-aa"] == "built" and statuses["profile/onnx-int8-aa"] == "built"
    assert (project.root / "build" / "tiny" / "tradeoff.png").is_file()

    # a narrower budget: the trials already measured are served from the cache, only new k are built
    narrow = navbuild.build("tiny", [*HOSTILE_RECIPE, "variants=[torch,onnx-int8-static,onnx-int8-aa]",
                                        "correctness.precisions.int8.cosine_min=0.99999"])
    again = {o.id: o.status for o in narrow.outcomes.values()}
    measured = [tid for tid in again if tid.startswith("aa/onnx-int8-aa/") and tid.endswith("/accuracy")]
    reused = [tid for tid in measured if tid in statuses]
    assert reused and all(again[tid] == "cached" for tid in reused), again
    assert narrow.summary["variants"]["onnx-int8-aa"]["search"]["done"]


def test_openvino_int8_aa_keeps_the_hostile_layer_in_float_and_its_bf16_twin_reuses_the_trials(project):
    import openvino as ov

    _project(project)
    result = navbuild.build("tiny", [*HOSTILE_RECIPE,
                                     "variants=[torch,openvino-int8,openvino-int8-aa,openvino-int8-aa-bf16]"])
    table = result.summary["variants"]
    assert table["openvino-int8"]["verdict"] == "fail"
    row = table["openvino-int8-aa"]
    assert row["verdict"] == "pass", row.get("reason")
    kept = row["search"]["kept_fp32"]
    # the drift names the layer whose own int8 error is largest: fc2, reading the huge-range activation
    assert kept and kept[0].startswith("/fc2/") and len(kept) <= 2, kept
    drift = result.outcomes["drift/openvino-int8"].result["layers"]
    local = {layer["name"]: layer["local_error"] for layer in drift if "local_error" in layer}
    assert max(local, key=local.get) == kept[0], local
    statuses = {o.id: o.status for o in result.outcomes.values()}
    assert statuses["aa/openvino-int8-aa/keep-0"] == "cached"  # full int8 is openvino-int8: the same key
    assert statuses["openvino-int8-aa"] == "cached"  # the chosen trial's model: the same key
    assert statuses["correctness/openvino-int8-aa"] == "built"

    # the bf16 twin: its trials are openvino-int8-aa's conversions (the same keys), measured under the bf16 hint
    twin = table["openvino-int8-aa-bf16"]
    twin_trials = [tid for tid in statuses if tid.startswith("aa/openvino-int8-aa-bf16/") and "/accuracy" not in tid]
    assert twin_trials and all(statuses[tid] == "cached" for tid in twin_trials), statuses
    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        assert twin["verdict"] == "pass", twin.get("reason")
        assert twin["search"]["kept_fp32"][0].startswith("/fc2/"), twin["search"]
        assert result.outcomes["profile/openvino-int8-aa-bf16"].payload["params"]["runtime"]["mode"] == "bf16"
    else:  # the first trial's measurement fails on the hint, and the search stops there with that reason
        assert [t["keep"] for t in twin["search"]["trials"]] == [0]
        assert "native bf16" in twin["search"]["message"], twin["search"]
