"""Pure parts of trusted verdicts: probe params in the plan, their validation, evidence per variant,
the table cell of a variant that raised, and the root-cause line of an error."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from navbuild.errors import RecipeError
from navbuild.evidence import for_variant, gather, trace_risk, variant_lineage
from navbuild.planning.planner import expand
from navbuild.recipe.schema import CorrectnessConfig, InputConfig, ProbeConfig, Recipe, SourceConfig
from navbuild.recipe.validate import check_semantics
from navbuild.steps.common import describe_error, root_cause


def seq_recipe(**changes) -> Recipe:
    r = Recipe(name="t", source=SourceConfig(torch="navbuild.examples.models:mlp"),
               inputs=[InputConfig(name="ids", dtype="int64", shape=["batch", "seq"], range=[0, 100])],
               outputs=["y"], formats=["torch", "onnx", "openvino", "torchscript", "torch-export"],
               precisions=["fp32", "int8"])
    r.samples.axes = {"seq": 128}
    r.profile.batch_sizes = [1, 8]
    for k, v in changes.items():
        setattr(r, k, v)
    return r


def test_the_plan_holds_the_probe_sizes_and_only_exact_variants_are_stressed() -> None:
    graph = expand(seq_recipe(), Path("."))
    probe = graph.targets["reference"].params.probe
    assert dict(probe.axes) == {"seq": (65, 193)} and probe.batch_sizes == (3,) and probe.rows == 3
    assert graph.targets["correctness/onnx"].params.probe is True
    assert graph.targets["correctness/onnx"].params.stress is True
    int8 = graph.targets["correctness/onnx-int8-static"].params
    assert int8.stress is False and (int8.atol, int8.rtol, int8.range_rtol, int8.cosine_min) == (0, 0, 0.1, 0.99)
    assert graph.targets["correctness/onnx"].params.range_rtol == 0.0


def test_the_recipe_sets_probe_sizes_and_can_turn_probes_off() -> None:
    recipe = seq_recipe(correctness=CorrectnessConfig(probe=ProbeConfig(axes={"seq": [7, 300]}, batch_sizes=[5])))
    probe = expand(recipe, Path(".")).targets["reference"].params.probe
    assert dict(probe.axes) == {"seq": (7, 300)} and probe.batch_sizes == (5,)
    off = expand(seq_recipe(correctness=CorrectnessConfig(probe=ProbeConfig(enabled=False))), Path("."))
    assert off.targets["reference"].params.probe is None
    assert off.targets["correctness/onnx"].params.probe is False


def test_probe_and_budget_mistakes_are_named_with_their_key_paths(tmp_path: Path) -> None:
    recipe = seq_recipe(correctness=CorrectnessConfig(probe=ProbeConfig(axes={"sq": [0]}, rows=0)))
    recipe.correctness.precisions["int8"].cosine_min = 2.0
    with pytest.raises(RecipeError) as err:
        check_semantics(recipe, tmp_path)
    text = str(err.value)
    assert "correctness.probe.axes.sq: not a dynamic axis of the inputs (did you mean 'seq'?)" in text
    assert "correctness.probe.axes.sq[0]: 0 must be >= 1" in text
    assert "correctness.probe.rows: 0 must be >= 1" in text
    assert "correctness.precisions.int8.cosine_min: 2.0 must be within [-1, 1]" in text


def _outcome(tid: str, status: str, result: dict | None = None, reason: str = "") -> SimpleNamespace:
    return SimpleNamespace(id=tid, kind="convert", status=status, result=result or {}, reason=reason)


def test_evidence_of_one_conversion_reaches_every_variant_derived_the_same_way() -> None:
    graph = expand(seq_recipe(), Path("."))
    lineage = variant_lineage(graph)
    assert lineage["openvino-int8"] == {"conversions": ["openvino-int8", "openvino", "onnx"], "derivation": "trace"}
    assert lineage["torch-export"]["derivation"] == "export" and lineage["torch"]["derivation"] == "eager"
    # torch.export refused a branch on values: news for every traced variant, none for the export itself
    outcomes = {"torch-export": _outcome("torch-export", "failed", reason="DataDependentBranch: torch.export "
                                         "failed: GuardOnDataDependentSymNode: Could not guard"),
                "onnx": _outcome("onnx", "built", {"evidence": []})}
    evidence = gather(outcomes)
    assert [e["kind"] for e in evidence] == ["data-dependent"]
    for variant in ("onnx", "openvino-int8", "torchscript"):
        risk = trace_risk(for_variant(evidence, lineage[variant]))
        assert risk.startswith("built from a trace that torch-export found unreliable: DataDependentBranch")
    assert for_variant(evidence, lineage["torch-int8-dynamic"]) == []
    # a plain failure is no evidence about the model
    assert gather({"onnx": _outcome("onnx", "failed", reason="RuntimeError: out of memory")}) == []


def test_a_variant_that_raised_shows_error_never_zero_error() -> None:
    from rich.console import Console

    from navbuild.report.console import variant_table

    raised = {"verdict": "fail", "reason": "probe seq=65, batch 3: Fail: Got: 65 Expected: 128",
              "correctness": {"worst": {"max_abs": None, "cosine_min": None, "error": "probe seq=65 ..."}}}
    summary = {"recipe": "t", "best": {"variant": None}, "variants": {"onnx": raised}}
    console = Console(width=200, record=True)
    console.print(variant_table(summary))
    text = console.export_text()
    row = next(line for line in text.splitlines() if "onnx" in line and "fail" in line)
    assert "error" in row and "1.000000" not in row and " 0 " not in row
    assert "Got: 65 Expected: 128" in text


def test_root_cause_is_the_detail_line_of_the_innermost_error() -> None:
    ort_style = RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input: x "
                             "for the following indices\n index: 0 Got: 4 Expected: 1\n Please fix the model.")
    assert root_cause(ort_style).endswith("for the following indices index: 0 Got: 4 Expected: 1")
    ov_style = RuntimeError("Exception from src/inference/src/cpp/infer_request.cpp:75:\n"
                            "Check 'shape.compatible(x)' failed at src/plugins/intel_cpu/src/infer_request.cpp:385:\n"
                            "Can't set the input tensor with index: 0, because the model input (shape=[1,8]) "
                            "and the tensor (shape=(4.8)) are incompatible\n")
    assert describe_error(ov_style) == ("RuntimeError: Can't set the input tensor with index: 0, because the model "
                                        "input (shape=[1,8]) and the tensor (shape=(4.8)) are incompatible")
    try:
        try:
            raise ValueError("mat1 and mat2 shapes cannot be multiplied (4x8 and 5x2)")
        except ValueError as inner:
            raise RuntimeError("torch.jit.trace failed at batch 2") from inner
    except RuntimeError as wrapped:
        assert describe_error(wrapped) == ("RuntimeError: torch.jit.trace failed at batch 2; root cause: "
                                           "ValueError: mat1 and mat2 shapes cannot be multiplied (4x8 and 5x2)")
