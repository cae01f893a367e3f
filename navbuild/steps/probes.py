"""Correctness probes: the other shapes and values a deployed model sees, made from the samples, with their feeds' files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from navbuild.lazy import lazy_import
from navbuild.model_io import BATCH_AXIS, TensorSpec
# re-exported: the probes' size rules live in navbuild.probe_sizes, which the format families read too
from navbuild.probe_sizes import DEFAULT_PROBE_BATCHES, EXPORT_BATCH, auto_probe_sizes, default_probe_batches
from navbuild.samples import take_batch

np = lazy_import("numpy")

#: the probe list (ids, labels, shapes, and why a probe was skipped) inside a reference target's folder
PROBES_FILE = "probes.json"
PROBES_DIR = "probes"


@dataclass(frozen=True)
class ProbeParams:
    """Which probes the reference makes. Sizes are explicit where the recipe or the planner knew
    them; an axis not in ``axes`` gets :func:`auto_probe_sizes` of the samples' size."""

    axes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # non-batch axis -> sizes
    batch_sizes: tuple[int, ...] = ()  # batches probed at the samples' axis sizes
    rows: int = 3                      # the batch of every axis and stress probe
    stress: bool = True                # a stressed-values probe (checked on exact-precision variants)


def axis_sizes(specs: Sequence[TensorSpec], samples: Mapping[str, np.ndarray]) -> dict[str, int]:
    """The samples' size of every non-batch dynamic axis (the first input that has it decides)."""
    sizes: dict[str, int] = {}
    for spec in specs:
        for i, axis in spec.dynamic_axes().items():
            if axis != BATCH_AXIS and spec.name in samples and samples[spec.name].ndim > i:
                sizes.setdefault(axis, int(samples[spec.name].shape[i]))
    return sizes


def probe_plan(specs: Sequence[TensorSpec], samples: Mapping[str, np.ndarray], probe: ProbeParams) -> list[dict]:
    """The probes, in a fixed order: each batch size, each axis at each size, then stressed values."""
    sizes = axis_sizes(specs, samples)
    plan: list[dict] = []
    for b in probe.batch_sizes:
        plan.append({"id": f"b{b}", "kind": "batch", "batch": int(b), "axes": {}, "label": f"batch {b}"})
    rows = int(probe.rows)
    for axis, n in sizes.items():
        for s in probe.axes.get(axis) or auto_probe_sizes(n):
            if int(s) != n:
                plan.append({"id": f"{axis}{s}-b{rows}", "kind": "axis", "batch": rows, "axes": {axis: int(s)},
                             "label": f"{axis}={s}, batch {rows}"})
    if probe.stress and any(_stressable(s) for s in specs):
        plan.append({"id": f"stress-b{rows}", "kind": "stress", "batch": rows, "axes": {},
                     "label": f"stressed values (floats x -2, integers redrawn in range), batch {rows}"})
    return plan


def probe_feeds(specs: Sequence[TensorSpec], samples: Mapping[str, np.ndarray], probe: Mapping[str, Any],
                seed: int) -> dict[str, np.ndarray]:
    """The feeds of one probe, made from the samples so that they stay realistic.

    Rows tile the samples (as every batch does). A smaller axis crops the samples; a larger one
    repeats their last position (for padded sentences: more padding), so masks and ids stay
    consistent across inputs. Stressed values flip the sign of floats and double them, and
    redraw integers uniformly in their declared range (when it holds more than one value).
    """

    feeds = take_batch(samples, int(probe["batch"]))
    for spec in specs:
        arr = feeds[spec.name]
        for i, axis in spec.dynamic_axes().items():
            if axis in probe["axes"] and arr.ndim > i:
                size = int(probe["axes"][axis])
                index = np.minimum(np.arange(size), arr.shape[i] - 1)
                arr = np.take(arr, index, axis=i)
        feeds[spec.name] = np.ascontiguousarray(arr)
    if probe["kind"] == "stress":
        rng = np.random.default_rng(seed + 1)
        for spec in specs:
            arr = feeds[spec.name]
            if np.issubdtype(arr.dtype, np.floating):
                feeds[spec.name] = np.ascontiguousarray(arr * arr.dtype.type(-2))
            elif _stressable(spec) and np.issubdtype(arr.dtype, np.integer):
                feeds[spec.name] = rng.integers(int(spec.low), int(spec.high), size=arr.shape,
                                                dtype=np.int64).astype(arr.dtype)
    return feeds


def _stressable(spec: TensorSpec) -> bool:
    dtype = np.dtype(spec.dtype)
    if np.issubdtype(dtype, np.floating):
        return True
    return bool(np.issubdtype(dtype, np.integer) and dtype != np.bool_ and int(spec.high) - int(spec.low) > 1)


def probe_files(folder: Path, probe_id: str) -> tuple[Path, Path]:
    """(inputs, source outputs) files of a probe inside a reference target's folder."""
    return folder / PROBES_DIR / f"{probe_id}.inputs.npz", folder / PROBES_DIR / f"{probe_id}.outputs.npz"


def load_probes(folder: Path) -> list[dict]:
    """The probe list a reference target wrote ([] for a reference made without probes)."""
    path = Path(folder) / PROBES_FILE
    return json.loads(path.read_text()) if path.is_file() else []


__all__ = ["ProbeParams", "PROBES_FILE", "EXPORT_BATCH", "DEFAULT_PROBE_BATCHES", "auto_probe_sizes",
           "default_probe_batches", "probe_plan",
           "probe_feeds", "probe_files", "load_probes", "axis_sizes"]
