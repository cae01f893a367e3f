"""Tests of OnnxFp16FromOnnx: ORT's float16 converter on tiny exported models, run on the ORT CPU provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from navbuild.model_io import TensorSpec
from navbuild.runners.ort_runner import OrtRunner
from navbuild.samples import generate_samples, take_batch
from navbuild.steps.base import StepContext
from navbuild.runtime import RuntimeOptions
from navbuild.steps.onnx_fp16 import NOTE, OnnxFp16FromOnnx

X = (TensorSpec("x", "float32", ("batch", 8), low=-1.0, high=1.0),)
BERT_INPUTS = (TensorSpec("input_ids", "int64", ("batch", "seq"), low=0, high=1000),
               TensorSpec("attention_mask", "int64", ("batch", "seq"), low=1, high=2))
OPTS = RuntimeOptions(intra_op_threads=1, graph_level="all")


def _convert(tmp_path: Path, source: Path, name: str = "fp16", **params: Any) -> tuple[Path, dict]:
    out = tmp_path / name
    out.mkdir()
    params = {"keep_io_types": True, "op_block_list": (), **params}
    result = OnnxFp16FromOnnx().run(OnnxFp16FromOnnx.Params(**params),
                                    StepContext(inputs={"onnx": source}, out=out))
    return out / "model.onnx", result


def _initializer_types(path: Path) -> set[int]:
    import onnx

    return {i.data_type for i in onnx.load(str(path)).graph.initializer}


def test_keep_io_types_runs_in_float32_close_to_fp32(tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    import onnx

    source = make_onnx(hidden=64)  # a folder: the step finds model.onnx in it
    path, result = _convert(tmp_path, source)
    assert result == {"keep_io_types": True, "size_bytes": path.stat().st_size, "note": NOTE}
    assert onnx.TensorProto.FLOAT16 in _initializer_types(path)
    assert path.stat().st_size < (source / "model.onnx").stat().st_size
    fp16, fp32 = OrtRunner(path, OPTS), OrtRunner(source / "model.onnx", OPTS)
    samples = generate_samples(X, 4, seed=2, axes={})
    for batch in (1, 4):
        feeds = take_batch(samples, batch)
        (got,), (want,) = fp16.run(feeds), fp32.run(feeds)
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-2, rtol=1e-2)


def test_float16_io_when_not_kept(tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    source = make_onnx()
    path, result = _convert(tmp_path, source, keep_io_types=False)
    assert result["keep_io_types"] is False
    runner = OrtRunner(path, OPTS)
    assert runner.session.get_inputs()[0].type == "tensor(float16)"
    feeds = generate_samples(X, 4, seed=2, axes={})
    (got,) = runner.run({"x": feeds["x"].astype(np.float16)})
    (want,) = OrtRunner(source / "model.onnx", OPTS).run(feeds)
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), want, atol=1e-2, rtol=1e-2)


def test_op_block_list_keeps_op_in_float32(tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    import onnx

    source = make_onnx()
    path, _ = _convert(tmp_path, source, op_block_list=("Erf",))
    nodes = onnx.load(str(path)).graph.node
    producers = {o: n for n in nodes for o in n.output}
    (erf,) = [n for n in nodes if n.op_type == "Erf"]
    # a blocked op is fed through a Cast back to float32
    cast = producers[erf.input[0]]
    assert cast.op_type == "Cast" and cast.attribute[0].i == onnx.TensorProto.FLOAT
    assert OrtRunner(path, OPTS).run(generate_samples(X, 2, seed=0, axes={}))[0].dtype == np.float32


def test_tiny_bert_fp16(tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    source = make_onnx(model="tiny_bert", inputs=BERT_INPUTS, outputs=("last_hidden_state",),
                       axes={"seq": 8}) / "model.onnx"
    path, _ = _convert(tmp_path, source)
    feeds = generate_samples(BERT_INPUTS, 4, seed=1, axes={"seq": 12})
    feeds["attention_mask"][2, 7:] = 0
    (got,), (want,) = OrtRunner(path, OPTS).run(feeds), OrtRunner(source, OPTS).run(feeds)
    assert got.dtype == np.float32 and got.shape == want.shape == (4, 12, 32)
    np.testing.assert_allclose(got, want, atol=1e-2, rtol=1e-2)


def test_byte_identical_on_repeat(tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    source = make_onnx()
    a, _ = _convert(tmp_path, source, name="a")
    b, _ = _convert(tmp_path, source, name="b")
    assert a.read_bytes() == b.read_bytes()


def test_unloadable_result_fails_in_the_step(tmp_path: Path, make_onnx: Callable[..., Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import navbuild.steps.onnx_fp16 as fp16_step

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("Could not find an implementation for Erf(13) node with name 'x'")

    monkeypatch.setattr(fp16_step, "OrtRunner", refuse)
    with pytest.raises(RuntimeError, match="cannot be loaded by ONNX Runtime on the CPU: Could not find "
                                           ".*add the op type it names to op_block_list"):
        _convert(tmp_path, make_onnx())
