"""Choosing the runner for a variant format."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from navbuild.steps.common import RuntimeOptions, TorchFactory


class Runner(Protocol):
    """What every runner offers: input names and ``run(feeds) -> outputs``."""

    input_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


#: variant formats a runner exists for
RUNNER_FORMATS: tuple[str, ...] = ("torch", "onnx")


def make_runner(variant_format: str, model_path: Path | None, factory: TorchFactory | None,
                input_names: Sequence[str], options: RuntimeOptions, source: Path | None = None) -> Runner:
    """A runner for ``variant_format``: "torch" runs ``factory`` eagerly, "onnx" runs ``model_path`` in ORT."""
    if variant_format == "torch":
        if factory is None:
            raise ValueError("a torch variant needs a factory")
        from navbuild.runners.torch_runner import TorchRunner, load_torch_model

        return TorchRunner(load_torch_model(factory, source), input_names, options.intra_op_threads)
    if variant_format == "onnx":
        if model_path is None:
            raise ValueError("an onnx variant needs a model path")
        from navbuild.runners.ort_runner import OrtRunner

        return OrtRunner(model_path, options)
    raise ValueError(f"no runner for variant format '{variant_format}' "
                     f"(known: {', '.join(RUNNER_FORMATS)})")


__all__ = ["Runner", "RUNNER_FORMATS", "make_runner"]
