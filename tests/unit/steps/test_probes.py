"""Verdicts that hold beyond the samples: probes of other axis sizes, batches and values, scale-aware
budgets, and int8 conversions that quantized nothing; each with a tiny real model and real runtimes."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from navbuild.model_io import TensorSpec
from navbuild.planning.planner import scale_budget, tolerances
from navbuild.recipe.schema import Recipe
from navbuild.samples import read_npz
from navbuild.steps.base import StepContext
from navbuild.runtime import RuntimeOptions, TorchFactory
from navbuild.steps.correctness import CheckCorrectness
from navbuild.steps.probes import ProbeParams, auto_probe_sizes, default_probe_batches, load_probes
from navbuild.steps.reference import ReferenceFromSource

SEQ = (TensorSpec("x", "float32", ("batch", "seq", 8), low=-1.0, high=1.0),)
GRID = (TensorSpec("x", "float32", ("batch", 4, 2), low=-1.0, high=1.0),)
POSITIVE = (TensorSpec("x", "float32", ("batch", 8), low=0.0, high=1.0),)
X = (TensorSpec("x", "float32", ("batch", 8), low=-1.0, high=1.0),)


def _reference(tmp_path: Path, model: str, inputs: tuple[TensorSpec, ...], batch_sizes: tuple[int, ...],
               probe: ProbeParams | None, axes: dict[str, int] | None = None, name: str = "ref") -> Path:
    params = ReferenceFromSource.Params(
        source_format="torch", factory=TorchFactory(f"tests.models:{model}", {}), inputs=inputs, outputs=("y",),
        count=3, seed=0, axes=axes or {}, batch_sizes=batch_sizes, threads=1, probe=probe)
    out = tmp_path / name
    out.mkdir()
    ReferenceFromSource().run(params, StepContext(inputs={}, out=out))
    return out


def _check(tmp_path: Path, inputs: dict[str, Path], batch_sizes: tuple[int, ...], variant_format: str = "onnx",
           factory: TorchFactory | None = None, precision: str = "fp32", probe: bool = True,
           name: str = "check", **budget: Any) -> dict:
    budget = {"atol": 1e-4, "rtol": 1e-3, **budget}
    params = CheckCorrectness.Params(variant_format=variant_format, factory=factory, outputs=(),
                                     batch_sizes=batch_sizes, runtime=RuntimeOptions(intra_op_threads=1),
                                     precision=precision, probe=probe, stress=precision == "fp32", **budget)
    out = tmp_path / name
    out.mkdir(exist_ok=True)
    return CheckCorrectness().run(params, StepContext(inputs=inputs, out=out))


def _quiet(make: Callable[..., Path], **kwargs: Any) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TracerWarning is the point of these models
        return make(**kwargs)


def _openvino(tmp_path: Path, onnx_dir: Path, name: str = "ov") -> Path:
    from navbuild.steps.openvino_convert import OpenVinoFromOnnx

    out = tmp_path / name
    out.mkdir()
    OpenVinoFromOnnx().run(OpenVinoFromOnnx.Params(compress_to_fp16=False), StepContext({"onnx": onnx_dir}, out))
    return out


def test_default_probe_sizes_differ_from_the_samples_and_the_export_batch() -> None:
    assert auto_probe_sizes(128) == (65, 193)
    assert auto_probe_sizes(16) == (9, 25)
    assert auto_probe_sizes(2) == (4, 5) and auto_probe_sizes(1) == (2, 3)
    assert default_probe_batches([2]) == (1, 3)  # the export's batch alone is never enough
    assert default_probe_batches([1, 8]) == (3,)


def test_reference_writes_probe_feeds_and_source_outputs(tmp_path: Path) -> None:
    ref = _reference(tmp_path, "baked_seq", SEQ, (1,), ProbeParams(batch_sizes=(3,)), axes={"seq": 16})
    probes = {p["id"]: p for p in load_probes(ref)}
    assert list(probes) == ["b3", "seq9-b3", "seq25-b3", "stress-b3"]
    longer = read_npz(ref / "probes" / "seq25-b3.inputs.npz")["x"]
    samples = read_npz(ref / "samples.npz")["x"]
    assert longer.shape == (3, 25, 8)
    np.testing.assert_array_equal(longer[:, :16], samples)  # the samples, then their last position repeated
    np.testing.assert_array_equal(longer[:, 16:], np.repeat(samples[:, 15:16], 9, axis=1))
    stressed = read_npz(ref / "probes" / "stress-b3.inputs.npz")["x"]
    np.testing.assert_array_equal(stressed, samples * -2)
    assert read_npz(ref / "probes" / "seq9-b3.outputs.npz")["y"].shape == (3, 9, 8)


def test_a_baked_sequence_axis_fails_on_the_probes_in_onnx_runtime_and_openvino(
        tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    ref = _reference(tmp_path, "baked_seq", SEQ, (1, 4), ProbeParams(), axes={"seq": 16})
    onnx_dir = _quiet(make_onnx, model="baked_seq", inputs=SEQ, axes={"seq": 16})
    # the samples' length alone passes: the bake is invisible there
    assert _check(tmp_path, {"model": onnx_dir, "reference": ref}, (1, 4), probe=False)["verdict"] == "pass"
    result = _check(tmp_path, {"model": onnx_dir, "reference": ref}, (1, 4))
    assert result["verdict"] == "fail"
    assert result["reason"].startswith("probe seq=9, batch 3: Fail: [ONNXRuntimeError]")
    assert "Input shape:{3,9,24}, requested shape:{3,16,3,2,4}" in result["reason"]
    assert result["worst"]["error"] == result["reason"].split(" (and ")[0]
    assert result["worst"]["max_abs"] is None  # never "max abs err 0, cos 1" for a variant that raised
    assert set(result["probes"]) == {"seq9-b3", "seq25-b3", "stress-b3"}
    pytest.importorskip("openvino")
    ov = _check(tmp_path, {"model": _openvino(tmp_path, onnx_dir), "reference": ref}, (1, 4),
                variant_format="openvino", name="check-ov")
    # OpenVINO does not even raise: it returns the baked length's shape, which is just as wrong
    assert ov["verdict"] == "fail"
    assert ov["reason"] == ("probe seq=9, batch 3, output y: shape (3, 16, 8) != reference (3, 9, 8) "
                            "(and 1 more)")
    assert ov["worst"]["max_abs"] is None and ov["worst"]["error"].startswith("probe seq=9, batch 3, output y")


def test_a_baked_export_batch_fails_on_the_batch_probes(tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    # profile.batch_sizes [2] and an export example of batch 2: the batch check alone passes
    ref = _reference(tmp_path, "baked_batch", GRID, (2,), ProbeParams(batch_sizes=default_probe_batches([2])))
    onnx_dir = _quiet(make_onnx, model="baked_batch", inputs=GRID)
    assert _check(tmp_path, {"model": onnx_dir, "reference": ref}, (2,), probe=False)["verdict"] == "pass"
    result = _check(tmp_path, {"model": onnx_dir, "reference": ref}, (2,))
    assert result["verdict"] == "fail"
    assert result["reason"].startswith("probe batch 1: ")
    assert "GEMM: Dimension mismatch, W: {4,8} K: 4 N:4 (and 2 more)" in result["reason"]  # + b3, stressed
    assert set(result["probes"]) == {"b1", "b3", "stress-b3"}
    assert all("error" in result["probes"][p] for p in ("b1", "b3"))


def test_a_branch_on_values_fails_the_stressed_probe_of_an_exact_variant(
        tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    ref = _reference(tmp_path, "value_branch", POSITIVE, (1, 4), ProbeParams())
    onnx_dir = make_onnx(model="value_branch", inputs=POSITIVE)
    evidence = _onnx_evidence(onnx_dir)
    assert evidence and evidence[0]["kind"] == "trace-warning" and evidence[0]["concerns"] == "trace"
    assert "Converting a tensor to a Python boolean" in evidence[0]["message"]
    result = _check(tmp_path, {"model": onnx_dir, "reference": ref}, (1, 4))
    assert result["verdict"] == "fail"
    assert result["reason"].startswith("probe stressed values (floats x -2, integers redrawn in range), batch 3, "
                                       "output y: max_abs ")
    # a reduced-precision variant is not stress-probed (its budget is not exactness): evidence must carry it
    assert _check(tmp_path, {"model": onnx_dir, "reference": ref}, (1, 4), precision="int8",
                  name="int8", **_int8())["verdict"] == "pass"


def _onnx_evidence(onnx_dir: Path) -> list[dict]:
    """Re-run the export's evidence capture: the fixture does not keep the step's result."""
    from navbuild.steps.onnx_from_torch import OnnxFromTorch

    params = OnnxFromTorch.Params(factory=TorchFactory("tests.models:value_branch", {}), inputs=POSITIVE,
                                  outputs=("y",), axes={}, opset=17, exporter="torchscript", seed=0)
    out = onnx_dir.parent / "onnx-again"
    out.mkdir()
    return OnnxFromTorch().run(params, StepContext(inputs={}, out=out))["evidence"]


def _int8() -> dict:
    atol, rtol = tolerances(Recipe(), "int8")
    return {"atol": atol, "rtol": rtol, **scale_budget(Recipe(), "int8")}


def test_int8_budget_fails_small_probabilities_that_are_100_percent_off(tmp_path: Path) -> None:
    ref = _reference(tmp_path, "probabilities", X, (1, 4), None)
    off = TorchFactory("tests.models:probabilities", {"distort": 1.0})
    # the old scale-blind budget (atol 0.1) passed it
    assert _check(tmp_path, {"reference": ref}, (1, 4), "torch", off, "int8", probe=False, name="old",
                  atol=0.1, rtol=0.1)["verdict"] == "pass"
    result = _check(tmp_path, {"reference": ref}, (1, 4), "torch", off, "int8", probe=False, **_int8())
    assert result["verdict"] == "fail"
    assert result["reason"].startswith("batch 1, output y: max_abs ")
    assert "+ 0.1 of the output's range " in result["reason"]


def test_int8_budget_passes_large_logits_at_cosine_0_999(tmp_path: Path) -> None:
    ref = _reference(tmp_path, "large_logits", X, (1, 4), None)
    close = TorchFactory("tests.models:large_logits", {"noise": 0.02})
    old = _check(tmp_path, {"reference": ref}, (1, 4), "torch", close, "int8", probe=False, name="old",
                 atol=0.1, rtol=0.1)
    assert old["verdict"] == "fail" and old["worst"]["cosine_min"] > 0.999
    assert _check(tmp_path, {"reference": ref}, (1, 4), "torch", close, "int8", probe=False,
                  **_int8())["verdict"] == "pass"
    # ... and the cosine floor still fails a variant that is off everywhere by a little
    far = TorchFactory("tests.models:large_logits", {"noise": 0.3})
    result = _check(tmp_path, {"reference": ref}, (1, 4), "torch", far, "int8", probe=False, name="far",
                    **{**_int8(), "range_rtol": 1.0})
    assert result["verdict"] == "fail"
    assert result["reason"].startswith("batch 1, output y: cosine_min ") and "< 0.99" in result["reason"]


def test_per_output_budget_overrides_the_precision_default(tmp_path: Path) -> None:
    ref = _reference(tmp_path, "probabilities", X, (1,), None)
    off = TorchFactory("tests.models:probabilities", {"distort": 1.0})
    result = _check(tmp_path, {"reference": ref}, (1,), "torch", off, "int8", probe=False,
                    output_tolerances={"y": {"atol": 0.1, "rtol": 0.0, "range_rtol": 0.0, "cosine_min": None}},
                    **_int8())
    assert result["verdict"] == "pass"


def test_dynamic_int8_that_quantizes_nothing_is_a_failed_conversion(
        tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    from navbuild.steps.ort_quantized import OrtQuantizedDynamic

    onnx_dir = make_onnx(model="elementwise_only", outputs=("y",))
    out = tmp_path / "q"
    out.mkdir()
    params = OrtQuantizedDynamic.Params()
    with pytest.raises(RuntimeError, match=r"ONNX Runtime quantized nothing in this model .* "
                                           r"\(the model's ops: (Relu|Mul|Add)"):
        OrtQuantizedDynamic().run(params, StepContext({"onnx": onnx_dir}, out))


def test_openvino_int8_that_quantizes_nothing_is_a_failed_conversion(
        tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    pytest.importorskip("nncf")
    from navbuild.steps.openvino_quantized import OpenVinoQuantized, OpenVinoWeightCompressed

    onnx_dir = make_onnx(model="elementwise_only", outputs=("y",))
    ov = _openvino(tmp_path, onnx_dir)
    ref = _reference(tmp_path, "elementwise_only", X, (1,), None)
    out = tmp_path / "ov-int8"
    out.mkdir()
    params = OpenVinoQuantized.Params(preset="performance", subset_size=3, fast_bias_correction=True)
    with pytest.raises(RuntimeError, match=r"nncf.quantize inserted no FakeQuantize node: nothing in this model "
                                           r"was quantized, so the int8 variant would be the fp32 model"):
        OpenVinoQuantized().run(params, StepContext({"openvino": ov, "reference": ref}, out))
    assert not (out / "model.xml").exists()
    out = tmp_path / "ov-wo"
    out.mkdir()
    with pytest.raises(RuntimeError, match=r"nncf.compress_weights stored no weight as int8"):
        OpenVinoWeightCompressed().run(OpenVinoWeightCompressed.Params(mode="int8_asym"),
                                       StepContext({"openvino": ov}, out))


def test_torch_export_refusing_a_value_branch_is_evidence_for_traced_variants(tmp_path: Path) -> None:
    from navbuild.evidence import DataDependentBranch, gather
    from navbuild.steps.exported_program_from_torch import ExportedProgramFromTorch

    params = ExportedProgramFromTorch.Params(factory=TorchFactory("tests.models:value_branch", {}),
                                             inputs=POSITIVE, axes={}, seed=0)
    out = tmp_path / "export"
    out.mkdir()
    with pytest.raises(DataDependentBranch, match=r"torch.export failed: .*data-dependent") as err:
        ExportedProgramFromTorch().run(params, StepContext(inputs={}, out=out))
    from navbuild.steps.common import describe_error

    failed = type("Outcome", (), {"id": "torch-export", "kind": "convert", "status": "failed", "result": {},
                                  "reason": describe_error(err.value)})()
    assert gather({"torch-export": failed})[0]["kind"] == "data-dependent"


def test_a_probe_the_source_rejects_is_skipped_and_listed(tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    # tiny_bert has 512 positions: a sequence of 600 is beyond what the model accepts
    bert = (TensorSpec("input_ids", "int64", ("batch", "seq"), low=0, high=1000),
            TensorSpec("attention_mask", "int64", ("batch", "seq"), low=1, high=2))
    params = ReferenceFromSource.Params(
        source_format="torch", factory=TorchFactory("tests.models:tiny_bert", {}), inputs=bert,
        outputs=("last_hidden_state",), count=2, seed=0, axes={"seq": 8}, batch_sizes=(1,), threads=1,
        probe=ProbeParams(axes={"seq": (5, 600)}, stress=False))
    ref = tmp_path / "ref"
    ref.mkdir()
    ReferenceFromSource().run(params, StepContext(inputs={}, out=ref))
    probes = {p["id"]: p for p in load_probes(ref)}
    assert "skipped" not in probes["seq5-b3"]
    assert probes["seq600-b3"]["skipped"].startswith("the source raised: ")
    onnx_dir = make_onnx(model="tiny_bert", inputs=bert, outputs=("last_hidden_state",), axes={"seq": 8})
    result = _check(tmp_path, {"model": onnx_dir, "reference": ref}, (1,))
    assert result["verdict"] == "pass", result["reason"]
    assert set(result["probes"]) == {"seq5-b3"} and list(result["probes_skipped"]) == ["seq600-b3"]
