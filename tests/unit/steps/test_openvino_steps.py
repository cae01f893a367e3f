"""Tests of the OpenVINO steps: ONNX -> IR, NNCF int8 quantization and int8 weight compression, for real."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")

from navbuild.model_io import TensorSpec  # noqa: E402
from navbuild.runners.openvino_runner import OpenVinoRunner  # noqa: E402
from navbuild.samples import generate_samples, save_npz  # noqa: E402
from navbuild.steps.base import StepContext  # noqa: E402
from navbuild.runtime import TorchFactory  # noqa: E402
from navbuild.runtime import RuntimeOptions
from navbuild.steps.openvino_convert import OpenVinoFromOnnx  # noqa: E402
from navbuild.steps.openvino_quantized import OpenVinoQuantized, OpenVinoWeightCompressed  # noqa: E402

X = (TensorSpec("x", "float32", ("batch", 8), low=-1.0, high=1.0),)
BERT_INPUTS = (TensorSpec("input_ids", "int64", ("batch", "seq"), low=0, high=1000),
               TensorSpec("attention_mask", "int64", ("batch", "seq"), low=1, high=2))
F32 = RuntimeOptions(intra_op_threads=1)


def _run(step: object, params: object, inputs: dict[str, Path], out: Path) -> dict:
    out.mkdir()
    return step.run(params, StepContext(inputs=inputs, out=out))  # type: ignore[attr-defined]


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _fake_quantize(folder: Path) -> int:
    return (folder / "model.xml").read_text().count('type="FakeQuantize"')


@pytest.fixture
def mlp_ir(tmp_path: Path, make_onnx: Callable[..., Path]) -> Path:
    """tiny_mlp (ONNX, dynamic batch) converted to an f32 IR folder."""
    return _convert(tmp_path, make_onnx())


@pytest.fixture(scope="module")
def bert_ir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_bert (ONNX, dynamic batch and seq) converted to an f32 IR folder, shared by the module."""
    from navbuild.steps.onnx_from_torch import OnnxFromTorch

    root = tmp_path_factory.mktemp("bert")
    params = OnnxFromTorch.Params(factory=TorchFactory("tests.models:tiny_bert", {}), inputs=BERT_INPUTS,
                                  outputs=("last_hidden_state",), axes={"seq": 8}, opset=17,
                                  exporter="torchscript", seed=0)
    _run(OnnxFromTorch(), params, {}, root / "onnx")
    return _convert(root, root / "onnx")


def _convert(tmp_path: Path, onnx_dir: Path, name: str = "ir", **params: bool) -> Path:
    _run(OpenVinoFromOnnx(), OpenVinoFromOnnx.Params(**params), {"onnx": onnx_dir}, tmp_path / name)
    return tmp_path / name


def _reference(tmp_path: Path, specs: tuple[TensorSpec, ...], count: int = 16,
               axes: dict[str, int] | None = None) -> Path:
    """A reference-like folder holding only samples.npz, which is all the quantizer reads."""
    out = tmp_path / "reference"
    out.mkdir()
    save_npz(out / "samples.npz", generate_samples(specs, count, seed=0, axes=axes or {}))
    return out


def _quantize(tmp_path: Path, ir: Path, reference: Path, name: str = "int8", **params: object) -> dict:
    defaults: dict[str, object] = dict(preset="performance", subset_size=16, fast_bias_correction=True)
    return _run(OpenVinoQuantized(), OpenVinoQuantized.Params(**{**defaults, **params}),
                {"openvino": ir, "reference": reference}, tmp_path / name)


def test_convert_keeps_batch_dynamic_and_f32(tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    import openvino as ov

    onnx_dir = make_onnx()
    result = _run(OpenVinoFromOnnx(), OpenVinoFromOnnx.Params(), {"onnx": onnx_dir}, tmp_path / "ir")
    ir = tmp_path / "ir"
    assert sorted(p.name for p in ir.iterdir()) == ["model.bin", "model.xml"]
    assert result["ops"] > 0 and result["size_bytes"] == sum(p.stat().st_size for p in ir.iterdir())
    model = ov.Core().read_model(str(ir / "model.xml"))
    assert model.inputs[0].get_partial_shape()[0].is_dynamic
    # f32 weights: the bin holds the 8x16 + 16x4 weights and biases as 4-byte floats
    assert (ir / "model.bin").stat().st_size == 4 * (8 * 16 + 16 + 16 * 4 + 4)


def test_convert_twice_gives_identical_bytes(tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    # same process, different source paths: OpenVINO's auto-generated node names and the
    # source path must not reach the artifact, or every rebuild would cascade downstream
    first = _convert(tmp_path, make_onnx(name="onnx_a"), "ir_a")
    second = _convert(tmp_path, make_onnx(name="onnx_b") / "model.onnx", "ir_b")
    assert _digests(first) == _digests(second)


def test_convert_compress_to_fp16_halves_weights(tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    onnx_dir = make_onnx()
    f32 = _convert(tmp_path, onnx_dir, "f32")
    f16 = _convert(tmp_path, onnx_dir, "f16", compress_to_fp16=True)
    assert (f16 / "model.bin").stat().st_size * 2 == (f32 / "model.bin").stat().st_size
    feeds = generate_samples(X, 4, seed=1, axes={})
    np.testing.assert_allclose(OpenVinoRunner(f16, F32).run(feeds)[0],
                               OpenVinoRunner(f32, F32).run(feeds)[0], atol=1e-2)


def test_quantized_runs_close_to_f32_with_fake_quantize(tmp_path: Path, mlp_ir: Path) -> None:
    result = _quantize(tmp_path, mlp_ir, _reference(tmp_path, X))
    int8 = tmp_path / "int8"
    assert result["preset"] == "performance" and result["subset_size"] == 16
    assert result["model_type"] is None and result["size_bytes"] > 0
    assert result["fake_quantize"] == _fake_quantize(int8) > 0
    for batch in (1, 4):
        feeds = generate_samples(X, batch, seed=2, axes={})
        (got,) = OpenVinoRunner(int8, F32).run(feeds)
        (want,) = OpenVinoRunner(mlp_ir, F32).run(feeds)
        assert got.shape == want.shape == (batch, 4)
        np.testing.assert_allclose(got, want, atol=0.05)


def test_quantized_ignored_patterns_keep_nodes_float(tmp_path: Path, mlp_ir: Path) -> None:
    reference = _reference(tmp_path, X)
    everything = _quantize(tmp_path, mlp_ir, reference, name="all")
    # the ONNX exporter names the first Linear's nodes /body/body.0/...
    partial = _quantize(tmp_path, mlp_ir, reference, name="partial", ignored_patterns=(r".*/body\.0/.*",))
    assert 0 < partial["fake_quantize"] < everything["fake_quantize"]
    xml = (tmp_path / "partial" / "model.xml").read_text()
    assert 'name="/body/body.0/Gemm/WithoutBiases/fq_weights_1"' not in xml
    assert "/body/body.2/" in xml and "fq_weights_1" in xml


def test_quantized_pattern_matching_nothing_is_an_error(tmp_path: Path, mlp_ir: Path) -> None:
    import nncf

    # NNCF validates the ignored scope: a typo in a pattern fails instead of quantizing everything
    with pytest.raises(nncf.ValidationError, match="no_such_node"):
        _quantize(tmp_path, mlp_ir, _reference(tmp_path, X), ignored_patterns=("no_such_node",))


def test_quantized_tiny_bert_as_transformer(tmp_path: Path, bert_ir: Path) -> None:
    ir = bert_ir
    reference = _reference(tmp_path, BERT_INPUTS, count=8, axes={"seq": 8})
    result = _quantize(tmp_path, ir, reference, preset="mixed", model_type="transformer")
    assert result["model_type"] == "transformer" and result["fake_quantize"] > 0
    for batch in (1, 4):
        feeds = generate_samples(BERT_INPUTS, batch, seed=3, axes={"seq": 12})  # other seq than calibrated
        (got,) = OpenVinoRunner(tmp_path / "int8", F32).run(feeds)
        (want,) = OpenVinoRunner(ir, F32).run(feeds)
        assert got.shape == want.shape == (batch, 12, 32)
        a, b = got.reshape(-1, 32), want.reshape(-1, 32)
        cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert cosine.min() > 0.9, cosine.min()


@pytest.mark.parametrize("bad, message", [
    (dict(preset="fast"), "preset 'fast' is not one of"),
    (dict(model_type="cnn"), "model_type 'cnn' is not one of"),
    (dict(subset_size=0), "subset_size 0 must be >= 1"),
])
def test_quantized_bad_params(tmp_path: Path, bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _quantize(tmp_path, tmp_path / "missing", tmp_path / "missing", **bad)


@pytest.mark.parametrize("mode", ["int8_asym", "int8_sym"])
def test_weight_compressed_is_smaller_and_close(tmp_path: Path, bert_ir: Path, mode: str) -> None:
    ir = bert_ir
    result = _run(OpenVinoWeightCompressed(), OpenVinoWeightCompressed.Params(mode=mode),
                  {"openvino": ir}, tmp_path / "w8")
    assert result["mode"] == mode and result["size_bytes"] > 0
    assert (tmp_path / "w8" / "model.bin").stat().st_size < (ir / "model.bin").stat().st_size
    feeds = generate_samples(BERT_INPUTS, 2, seed=4, axes={"seq": 8})
    (got,) = OpenVinoRunner(tmp_path / "w8", F32).run(feeds)
    (want,) = OpenVinoRunner(ir, F32).run(feeds)
    np.testing.assert_allclose(got, want, atol=0.1)


def test_weight_compressed_bad_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode 'int4' is not one of"):
        _run(OpenVinoWeightCompressed(), OpenVinoWeightCompressed.Params(mode="int4"),
             {"openvino": tmp_path}, tmp_path / "w8")


@pytest.mark.parametrize("params", [
    OpenVinoFromOnnx.Params(compress_to_fp16=True),
    OpenVinoQuantized.Params(preset="mixed", subset_size=300, fast_bias_correction=False,
                             model_type="transformer", ignored_patterns=(r".*Softmax.*", "^/head/.*")),
    OpenVinoQuantized.Params(preset="performance", subset_size=8, fast_bias_correction=True),
    OpenVinoWeightCompressed.Params(mode="int8_sym"),
])
def test_params_round_trip_through_json(params: object) -> None:
    import json

    from navbuild.steps.base import params_from_dict, params_to_dict

    data = json.loads(json.dumps(params_to_dict(params), sort_keys=True))
    assert params_from_dict(type(params), data) == params
