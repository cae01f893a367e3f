"""Fixtures for step tests: tiny specs, and helpers that build a reference and an ONNX export for real."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import pytest

# the steps import test models as "tests.models:<name>", so the repo root must be importable
# however pytest was started
_ROOT = Path(__file__).resolve().parents[3]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from navbuild.model_io import TensorSpec  # noqa: E402
from navbuild.steps.base import StepContext  # noqa: E402
from navbuild.runtime import TorchFactory  # noqa: E402
from navbuild.runtime import RuntimeOptions

X_SPEC = (TensorSpec("x", "float32", ("batch", 8), low=-1.0, high=1.0),)
BATCHES = (1, 4)


def factory(name: str, **kwargs: Any) -> TorchFactory:
    """A TorchFactory for a model of tests/models.py."""
    return TorchFactory(f"tests.models:{name}", kwargs)


@pytest.fixture
def make_reference(tmp_path: Path) -> Callable[..., Path]:
    """Run ReferenceFromSource for a torch test model; returns its output folder."""
    from navbuild.steps.reference import ReferenceFromSource

    def make(model: str = "tiny_mlp", inputs: tuple[TensorSpec, ...] = X_SPEC,
             outputs: tuple[str, ...] = ("y",), batch_sizes: tuple[int, ...] = BATCHES,
             axes: dict[str, int] | None = None, name: str = "reference") -> Path:
        params = ReferenceFromSource.Params(
            source_format="torch", factory=factory(model), inputs=inputs, outputs=outputs,
            count=3, seed=0, axes=axes or {}, batch_sizes=batch_sizes, threads=1)
        out = tmp_path / name
        out.mkdir()
        ReferenceFromSource().run(params, StepContext(inputs={}, out=out))
        return out

    return make


@pytest.fixture
def make_onnx(tmp_path: Path) -> Callable[..., Path]:
    """Run OnnxFromTorch for a test model; returns its output folder."""
    from navbuild.steps.onnx_from_torch import OnnxFromTorch

    def make(model: str = "tiny_mlp", inputs: tuple[TensorSpec, ...] = X_SPEC,
             outputs: tuple[str, ...] = ("y",), exporter: str = "torchscript",
             axes: dict[str, int] | None = None, name: str = "onnx", opset: int = 17,
             **kwargs: Any) -> Path:
        params = OnnxFromTorch.Params(factory=factory(model, **kwargs), inputs=inputs,
                                      outputs=outputs, axes=axes or {}, opset=opset,
                                      exporter=exporter, seed=0)
        out = tmp_path / name
        out.mkdir()
        OnnxFromTorch().run(params, StepContext(inputs={}, out=out))
        return out

    return make


@pytest.fixture
def runtime() -> RuntimeOptions:
    return RuntimeOptions(intra_op_threads=1, inter_op_threads=1, graph_level="all")
