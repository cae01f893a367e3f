"""The sizes correctness probes use besides the samples': pure rules the plan, the probes and TensorRT's profiles share."""

from __future__ import annotations

from typing import Sequence

#: the batch the exporters trace with (onnx_from_torch.EXAMPLE_BATCH): a probe batch must differ from it
EXPORT_BATCH = 2
#: default probe batches: 1 (a fixed-batch export) and 3 (neither the export's 2 nor a power of two)
DEFAULT_PROBE_BATCHES = (1, 3)


def auto_probe_sizes(n: int) -> tuple[int, ...]:
    """Two sizes besides ``n``: about half and about 1.5x, odd-offset so that no power of two or
    multiple of the sample's size hides a baked constant (128 -> 65, 193; 8 -> 5, 13; 1 -> 2, 3)."""
    sizes = [n // 2 + 1, n + n // 2 + 1, 2 * n + 1]
    out = [s for s in sizes if s >= 1 and s != n]
    return tuple(dict.fromkeys(out))[:2]


def default_probe_batches(profiled: Sequence[int]) -> tuple[int, ...]:
    """Probe batches a recipe gets by default: 1 and 3 unless already checked as profiled sizes.

    Never only the export's batch (2): a reshape that baked it is right there and nowhere else.
    """
    return tuple(b for b in DEFAULT_PROBE_BATCHES if b not in profiled)


__all__ = ["EXPORT_BATCH", "DEFAULT_PROBE_BATCHES", "auto_probe_sizes", "default_probe_batches"]
