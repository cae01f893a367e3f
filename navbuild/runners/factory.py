"""Choosing the runner for a variant format (the runners themselves are declared by the format families)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

from navbuild import formats
from navbuild.lazy import lazy_import
from navbuild.runtime import RuntimeOptions, TorchFactory

np = lazy_import("numpy")


class Runner(Protocol):
    """What every runner offers: input names and ``run(feeds) -> outputs``."""

    input_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


def make_runner(variant_format: str, model_path: Path | None, factory: TorchFactory | None,
                input_names: Sequence[str], options: RuntimeOptions, source: Path | None = None) -> Runner:
    """The runner for ``variant_format``, as its format family declares it (navbuild/formats:
    ``Runner.make``, ``function(model_path, factory, input_names, options, source) -> Runner``;
    each runner module imports its runtime lazily), honouring ``options.mode``."""
    spec = formats.runner(variant_format)
    if spec is None:
        raise ValueError(f"no runner for variant format '{variant_format}' "
                         f"(known: {', '.join(formats.runner_names())})")
    return formats.load_attr(spec.make)(model_path, factory, input_names, options, source)


__all__ = ["Runner", "make_runner"]
