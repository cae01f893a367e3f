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


#: runner format -> "module:function" building its runner; each module imports its runtime lazily.
#: ``function(model_path, factory, input_names, options, source) -> Runner``
RUNNER_REGISTRY: dict[str, str] = {
    "torch": "navbuild.runners.torch_runner:make",
    "onnx": "navbuild.runners.ort_runner:make",
    "torchscript": "navbuild.runners.torchscript_runner:make",
    "torch-export": "navbuild.runners.torch_export_runner:make",
    "openvino": "navbuild.runners.openvino_runner:make",
}
RUNNER_FORMATS: tuple[str, ...] = tuple(RUNNER_REGISTRY)


def make_runner(variant_format: str, model_path: Path | None, factory: TorchFactory | None,
                input_names: Sequence[str], options: RuntimeOptions, source: Path | None = None) -> Runner:
    """The runner for ``variant_format`` (see RUNNER_REGISTRY), honouring ``options.mode``."""
    import importlib

    if variant_format not in RUNNER_REGISTRY:
        raise ValueError(f"no runner for variant format '{variant_format}' "
                         f"(known: {', '.join(RUNNER_FORMATS)})")
    module, _, func = RUNNER_REGISTRY[variant_format].partition(":")
    return getattr(importlib.import_module(module), func)(model_path, factory, input_names, options, source)


__all__ = ["Runner", "RUNNER_FORMATS", "RUNNER_REGISTRY", "make_runner"]
