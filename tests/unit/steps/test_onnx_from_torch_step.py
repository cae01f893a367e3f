"""Tests of OnnxFromTorch with both exporters: valid models, dynamic axes, byte-identical re-export."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from navbuild.errors import InputError
from navbuild.model_io import TensorSpec
from navbuild.runners.ort_runner import OrtRunner
from navbuild.runners.torch_runner import TorchRunner, load_torch_model
from navbuild.samples import generate_samples
from navbuild.runtime import RuntimeOptions, TorchFactory

X = (TensorSpec("x", "float32", ("batch", 8), low=-1.0, high=1.0),)
TWO = (TensorSpec("x", "float32", ("batch", "seq", 8)),
       TensorSpec("mask", "int64", ("batch", "seq"), low=0, high=2))


def _check_against_torch(model_dir: Path, model: str, specs, axes, batch: int) -> None:
    runner = OrtRunner(model_dir / "model.onnx", RuntimeOptions(intra_op_threads=1))
    feeds = generate_samples(specs, batch, seed=7, axes=axes)
    got = runner.run(feeds)
    want = TorchRunner(load_torch_model(TorchFactory(f"tests.models:{model}", {})),
                       [s.name for s in specs], threads=1).run(feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_export_has_dynamic_batch(make_onnx: Callable[..., Path], exporter: str) -> None:
    import onnx

    out = make_onnx(exporter=exporter, opset=18)
    proto = onnx.load(str(out / "model.onnx"))
    assert [i.name for i in proto.graph.input] == ["x"]
    assert [o.name for o in proto.graph.output] == ["y"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    for batch in (1, 4):
        _check_against_torch(out, "tiny_mlp", X, {}, batch)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_export_binds_inputs_by_name_and_shares_axes(make_onnx: Callable[..., Path], exporter: str) -> None:
    import onnx

    out = make_onnx(model="two_inputs", inputs=TWO, outputs=("h",), axes={"seq": 5}, exporter=exporter,
                    opset=18)
    proto = onnx.load(str(out / "model.onnx"))
    assert sorted(i.name for i in proto.graph.input) == ["mask", "x"]
    out_dims = proto.graph.output[0].type.tensor_type.shape.dim
    assert out_dims[0].dim_param and out_dims[1].dim_param  # batch and seq stay dynamic
    _check_against_torch(out, "two_inputs", TWO, {"seq": 3}, batch=4)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_reexport_is_byte_identical(make_onnx: Callable[..., Path], exporter: str) -> None:
    a = make_onnx(exporter=exporter, name="a")
    b = make_onnx(exporter=exporter, name="b")
    assert (a / "model.onnx").read_bytes() == (b / "model.onnx").read_bytes()


def test_result_facts(tmp_path: Path) -> None:
    from navbuild.steps.base import StepContext
    from navbuild.steps.onnx_from_torch import OnnxFromTorch

    params = OnnxFromTorch.Params(factory=TorchFactory("tests.models:two_outputs", {}), inputs=X,
                                  outputs=(), axes={}, opset=17, exporter="torchscript", seed=0)
    result = OnnxFromTorch().run(params, StepContext(inputs={}, out=tmp_path))
    assert result["exporter"] == "torchscript" and result["opset"] == 17
    assert result["nodes"] > 0 and result["size_bytes"] == (tmp_path / "model.onnx").stat().st_size
    runner = OrtRunner(tmp_path / "model.onnx", RuntimeOptions(intra_op_threads=1))
    assert runner.output_names == ["output_0", "output_1"]


def test_export_wrong_output_count(make_onnx: Callable[..., Path]) -> None:
    with pytest.raises(InputError, match=r"outputs: the model returns 2 outputs, the recipe declares 1"):
        make_onnx(model="two_outputs")


def test_export_model_that_raises(make_onnx: Callable[..., Path]) -> None:
    with pytest.raises(InputError, match=r"source: the model raised on example inputs at batch 2"):
        make_onnx(model="raises_on_input")


def test_dynamo_export_has_no_source_paths(make_onnx: Callable[..., Path]) -> None:
    # the dynamo exporter records stack traces with absolute paths; they would make the bytes
    # depend on where the repository is checked out
    out = make_onnx(exporter="dynamo")
    root = str(Path(__file__).resolve().parents[3]).encode()
    assert root not in (out / "model.onnx").read_bytes()


def _export(tmp_path: Path, model: str, exporter: str = "torchscript") -> dict:
    from navbuild.steps.base import StepContext
    from navbuild.steps.onnx_from_torch import OnnxFromTorch

    params = OnnxFromTorch.Params(factory=TorchFactory(f"tests.models:{model}", {}), inputs=X,
                                  outputs=("y",), axes={}, opset=17, exporter=exporter, seed=0)
    return OnnxFromTorch().run(params, StepContext(inputs={}, out=tmp_path))


def test_a_model_the_torchscript_exporter_rejects_is_exported_by_dynamo(tmp_path: Path) -> None:
    result = _export(tmp_path, "with_diff")
    assert result["exporter"] == "dynamo"
    assert result["fallback_from"]["exporter"] == "torchscript"
    assert "aten::diff" in result["fallback_from"]["error"]
    for batch in (1, 4):
        _check_against_torch(tmp_path, "with_diff", X, {}, batch)


def test_when_both_exporters_fail_the_error_names_each_root_cause(tmp_path: Path, monkeypatch) -> None:
    import torch

    def broken(*args, **kwargs):
        if kwargs.get("dynamo"):
            raise ValueError("translator broke (deliberately)")
        return real(*args, **kwargs)

    real = torch.onnx.export
    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(RuntimeError, match=r"the TorchScript exporter failed: UnsupportedOperatorError: "
                                           r"Exporting the operator 'aten::diff'.*; the dynamo exporter too: "
                                           r"ValueError: translator broke \(deliberately\)"):
        _export(tmp_path, "with_diff")
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_sequential_gets_its_input_positionally_under_the_recipes_name(tmp_path: Path, exporter: str) -> None:
    import onnx

    result = _export(tmp_path, "sequential", exporter)
    assert result["exporter"] == exporter and "fallback_from" not in result
    proto = onnx.load(str(tmp_path / "model.onnx"))
    assert [i.name for i in proto.graph.input] == ["x"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    _check_against_torch(tmp_path, "sequential", X, {}, batch=3)
