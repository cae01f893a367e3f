"""Tensor specifications of a model's inputs and outputs, shared by the recipe, the plan and the steps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BATCH_AXIS = "batch"


@dataclass(frozen=True)
class TensorSpec:
    """One model input: name, numpy dtype name, shape and the value range of generated samples.

    ``shape`` holds ints for static dims and axis names (str) for dynamic ones; the first
    dim is always the dynamic batch axis ``"batch"``. Integer inputs are drawn from
    ``[low, high)``, float inputs uniformly from ``[low, high]``.
    """

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    low: float = 0.0
    high: float = 1.0

    def dynamic_axes(self) -> dict[int, str]:
        """Map dim index -> axis name for every dynamic dim."""
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def concrete_shape(self, batch: int, axes: dict[str, int]) -> tuple[int, ...]:
        """The shape with the batch dim set to ``batch`` and other dynamic dims from ``axes``."""
        out = []
        for d in self.shape:
            if d == BATCH_AXIS:
                out.append(batch)
            elif isinstance(d, str):
                out.append(int(axes[d]))
            else:
                out.append(int(d))
        return tuple(out)

    @classmethod
    def from_dict(cls, d: dict) -> "TensorSpec":
        return cls(name=d["name"], dtype=d["dtype"], shape=tuple(d["shape"]),
                   low=float(d.get("low", 0.0)), high=float(d.get("high", 1.0)))


def model_file(path: Path, name: str = "model.onnx") -> Path:
    """The model file of an upstream input: the path itself for a leaf file, else ``path/name``."""
    return path if path.is_file() else path / name
