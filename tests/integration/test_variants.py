"""Every CPU variant kind on a tiny real model: built, checked against its budget, profiled, keyed honestly."""

from __future__ import annotations

import navbuild

VARIANTS = ["torch", "torchscript", "torch-export", "onnx", "onnx-opt", "onnx-disable", "onnx-basic",
            "onnx-extended", "openvino", "torch-bf16-autocast",
            "torch-bf16", "openvino-bf16", "onnx-fp16", "torch-int8-dynamic", "onnx-int8-dynamic",
            "onnx-int8-static", "openvino-int8-wo", "openvino-int8"]
# int8 on a 4-output MLP: a cosine over 4 values is a coarse figure (0.98 for openvino-int8 here)
LOOSE = ["correctness.precisions.int8.atol=1.0", "correctness.precisions.int8.rtol=1.0",
         "correctness.precisions.int8.cosine_min=0.9",
         "correctness.precisions.bf16.atol=0.5", "correctness.precisions.fp16.atol=0.1",
         "openvino.quantization.subset_size=4", "quantization.static.max_samples=4"]


def by_id(result) -> dict:
    return {o.id: o for o in result.outcomes.values()}


def test_every_variant_kind_builds_checks_and_profiles(project):
    result = navbuild.build("tiny", ["variants=[" + ",".join(VARIANTS) + "]", *LOOSE])
    out = by_id(result)
    table = result.summary["variants"]
    assert list(table) == VARIANTS  # simplest first
    for v in VARIANTS[1:]:
        assert out[f"correctness/{v}"].status == "built", (v, out[f"correctness/{v}"].reason)
        assert table[v]["verdict"] == "pass", (v, table[v].get("reason"))
        assert set(table[v]["profile"]) == {"1", "4"}, v
    # each conversion wrote its artifact
    for target, artifact in (("torchscript", "model.pt"), ("torch-export", "model.pt2"),
                             ("onnx-int8-dynamic", "model.onnx"), ("onnx-int8-static", "model.onnx"),
                             ("onnx-fp16", "model.onnx"), ("openvino", "model.xml"), ("openvino-int8", "model.xml"),
                             ("openvino-int8-wo", "model.bin")):
        assert (out[target].path / artifact).is_file(), target
    assert table["onnx-fp16"]["note"].startswith("fp16 is kept for GPU targets")
    assert table["openvino-bf16"]["precision"] == "bf16" and table["openvino-bf16"]["mode"] == "bf16"
    assert table["onnx-disable"]["graph_level"] == "disable" and "graph_level" not in table["onnx"]
    assert result.summary["best"]["variant"] in VARIANTS
    assert set(result.summary["best_per_batch"]) == {"1", "4"}
    assert out["finalists"].status == "built"
    assert len(result.summary["finalists"]["variants"]) == 3


def test_a_tight_budget_rejects_int8_and_a_loose_one_accepts_it(project):
    tight = navbuild.build("tiny", ["variants=[torch,onnx-int8-dynamic]", "correctness.precisions.int8.atol=1e-7",
                                    "correctness.precisions.int8.rtol=0", "correctness.precisions.int8.range_rtol=0"])
    row = tight.summary["variants"]["onnx-int8-dynamic"]
    assert row["verdict"] == "fail" and "max_abs" in row["reason"]
    assert tight.summary["best"]["variant"] == "torch"
    assert by_id(tight)["profile/onnx-int8-dynamic"].status == "skipped"
    loose = navbuild.build("tiny", ["variants=[torch,onnx-int8-dynamic]", *LOOSE])
    assert loose.summary["variants"]["onnx-int8-dynamic"]["verdict"] == "pass"
    # the conversion did not change: only the check (and what follows it) ran again
    assert by_id(loose)["onnx-int8-dynamic"].status == "cached"


def test_a_user_metric_decides_the_verdict(project):
    (project.root / "mymetrics.py").write_text(
        "import numpy as np\n\n"
        "def worst_abs(reference_outputs, variant_outputs, inputs):\n"
        "    return {'worst_abs': float(np.abs(reference_outputs['y'] - variant_outputs['y']).max())}\n")
    recipe = (project.root / "recipes" / "tiny.yaml").read_text()
    (project.root / "recipes" / "tinymetric.yaml").write_text(
        recipe + "correctness:\n  metric: {function: 'mymetrics:worst_abs', name: worst_abs, max: 0.5}\n")
    result = navbuild.build("tinymetric", ["variants=[torch,onnx-int8-dynamic]",
                                           "correctness.precisions.int8.atol=1e-7",
                                           "correctness.precisions.int8.range_rtol=0"])
    row = result.summary["variants"]["onnx-int8-dynamic"]
    assert row["verdict"] == "pass"  # the metric replaced the (failing) tolerance gate
    assert row["correctness"]["tolerance_verdict"] == "fail"
    assert row["correctness"]["metric"]["worst"] <= 0.5
    strict = navbuild.build("tinymetric", ["variants=[torch,onnx-int8-dynamic]", "correctness.metric.max=1e-9"])
    assert strict.summary["variants"]["onnx-int8-dynamic"]["verdict"] == "fail"
    assert "worst_abs" in strict.summary["variants"]["onnx-int8-dynamic"]["reason"]
    # the conversion is shared: only the check ran again
    assert {o.id: o.status for o in strict.outcomes.values()}["onnx-int8-dynamic"] == "cached"


def test_a_quantization_knob_rebuilds_only_that_variants_targets(project):
    base = ["variants=[torch,onnx,onnx-int8-dynamic,onnx-int8-static]", *LOOSE]
    navbuild.build("tiny", base)
    changed = navbuild.build("tiny", [*base, "quantization.dynamic.per_channel=false"])
    built = {o.id for o in changed.outcomes.values() if o.status == "built"}
    assert {"onnx-int8-dynamic", "correctness/onnx-int8-dynamic", "profile/onnx-int8-dynamic"} <= built
    assert not built & {"onnx", "onnx-int8-static", "correctness/onnx", "correctness/onnx-int8-static",
                        "profile/onnx", "profile/onnx-int8-static", "profile/torch", "reference"}


def test_openvino_from_torch_builds_its_own_ir_without_onnx(project):
    result = navbuild.build("tiny", ["variants=[torch,openvino,openvino-int8]", "openvino.source=torch", *LOOSE])
    out = by_id(result)
    assert "onnx" not in out  # nothing asked for ONNX: the IR comes from the torch module
    assert out["openvino"].status == "built" and (out["openvino"].path / "model.xml").is_file()
    table = result.summary["variants"]
    for v in ("openvino", "openvino-int8"):
        assert table[v]["verdict"] == "pass", (v, table[v].get("reason"))
    # switching back to ONNX is another conversion (and another key), so the IR is rebuilt
    again = by_id(navbuild.build("tiny", ["variants=[torch,openvino]", *LOOSE]))
    assert again["onnx"].status == "built" and again["openvino"].status == "built"
    assert again["profile/torch"].status == "cached"


def test_openvino_execution_provider_runs_where_installed_and_is_unavailable_elsewhere(project):
    """Real either way: built and passing with the onnxruntime-openvino wheel, and with the plain
    onnxruntime wheel reported unavailable (naming the wheel) while the rest of the build goes on."""
    from navbuild.steps.base import installed

    result = navbuild.build("tiny", ["variants=[torch,onnx,onnx-openvino-ep]", *LOOSE])
    out, row = by_id(result), result.summary["variants"]["onnx-openvino-ep"]
    if installed("onnxruntime-openvino"):
        assert out["correctness/onnx-openvino-ep"].status == "built"
        assert row["verdict"] == "pass" and set(row["profile"]) == {"1", "4"}
    else:
        assert out["correctness/onnx-openvino-ep"].status == "unavailable"
        assert row["verdict"] == "unavailable"
        assert "onnxruntime-openvino not installed" in row["reason"]
    assert result.summary["variants"]["onnx"]["verdict"] == "pass"
