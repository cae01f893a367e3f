"""TensorRT optimization profiles derived from the recipe: the batch and every dynamic axis's min/opt/max, never typed twice.

An engine runs only the shapes its profiles cover, so the sizes come from what navbuild itself
will run it at: the profiled batch sizes, the correctness probes' batches and rows, the probes'
sizes of every non-batch dynamic axis, and the samples' sizes (each axis's ``opt``). Pure: the
plan computes them (they are in the engine's Params, hence its key) without TensorRT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from navbuild.errors import RecipeError
from navbuild.model_io import BATCH_AXIS, TensorSpec
from navbuild.probe_sizes import auto_probe_sizes, default_probe_batches

#: ``tensorrt.profiles``: one profile over every size, or one per profiled batch size (shape buckets)
PROFILE_MODES: tuple[str, ...] = ("single", "per_batch_size")


@dataclass(frozen=True)
class ShapeRange:
    """One input's shapes in a profile: the smallest, the one tuned for, the largest."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def covers(self, shape: Sequence[int]) -> bool:
        """Whether ``shape`` lies within min..max on every dim."""
        return len(shape) == len(self.min) and all(lo <= d <= hi for lo, d, hi in zip(self.min, shape, self.max))


@dataclass(frozen=True)
class EngineProfile:
    """One optimization profile: a shape range per input."""

    inputs: tuple[ShapeRange, ...]

    def covers(self, shapes: Mapping[str, Sequence[int]]) -> bool:
        """Whether every input of ``shapes`` this profile names lies within its range."""
        ranges = {r.name: r for r in self.inputs}
        return all(ranges[n].covers(s) for n, s in shapes.items() if n in ranges)

    @property
    def max_batch(self) -> int:
        return max((r.max[0] for r in self.inputs if r.max), default=0)


@dataclass(frozen=True)
class SizePlan:
    """The sizes an engine must run at, read from the recipe: ``batches`` (every batch size run),
    ``opt_batch`` (the batch tuned for), ``profiled`` (the profiled batch sizes), and per non-batch
    dynamic axis its sizes and its samples' size."""

    batches: tuple[int, ...]
    opt_batch: int
    profiled: tuple[int, ...]
    axes: Mapping[str, tuple[int, ...]]
    axes_opt: Mapping[str, int]


def recipe_sizes(recipe: Any) -> SizePlan:
    """The sizes of ``recipe`` an engine must cover: profile.batch_sizes, the probes' batch sizes and
    rows, every dynamic axis's probe sizes (correctness.probe.axes, else the automatic ones) and its
    samples' size (samples.axes). A dynamic axis whose samples' size the plan cannot know (a samples
    file that does not say it) is a RecipeError naming the setting that fixes it."""
    profiled = tuple(sorted(set(int(b) for b in recipe.profile.batch_sizes)))
    probe = recipe.correctness.probe
    batches = set(profiled)
    if probe.enabled:
        probe_batches = (tuple(probe.batch_sizes) if probe.batch_sizes is not None
                         else default_probe_batches(list(profiled)))
        batches |= {int(b) for b in probe_batches} | {int(probe.rows)}
    dynamic = [d for i in recipe.inputs for d in list(i.shape)[1:] if isinstance(d, str) and d != BATCH_AXIS]
    axes: dict[str, tuple[int, ...]] = {}
    axes_opt: dict[str, int] = {}
    for axis in dict.fromkeys(dynamic):
        n = recipe.samples.axes.get(axis)
        if n is None:
            raise RecipeError(f"tensorrt: the size of axis '{axis}' is not known at plan time, and an engine's "
                              f"optimization profiles need it; set samples.axes.{axis} to the samples' size",
                              where="recipe")
        sizes = {int(n)}
        if probe.enabled:
            sizes |= {int(s) for s in (probe.axes.get(axis) or auto_probe_sizes(int(n)))}
        axes[axis] = tuple(sorted(sizes))
        axes_opt[axis] = int(n)
    return SizePlan(batches=tuple(sorted(batches)), opt_batch=max(profiled), profiled=profiled, axes=axes,
                    axes_opt=axes_opt)


def derive_profiles(specs: Sequence[TensorSpec], sizes: SizePlan, mode: str = "single") -> tuple[EngineProfile, ...]:
    """The engine's optimization profiles for inputs ``specs``.

    ``single``: one profile, the batch from the smallest to the largest size run, tuned for the
    largest profiled batch; every non-batch dynamic axis from its smallest to its largest size,
    tuned for the samples' size. ``per_batch_size``: shape buckets, one profile per profiled batch
    size b, covering the batches above the previous profiled size up to b (the first from the
    smallest size run, the last to the largest) and tuned for b; the other axes as in ``single``.
    """
    if mode not in PROFILE_MODES:
        raise ValueError(f"tensorrt.profiles: '{mode}' is not one of {', '.join(PROFILE_MODES)}")
    low, high = min(sizes.batches), max(sizes.batches)
    if mode == "single":
        buckets = [(low, sizes.opt_batch, high)]
    else:
        buckets = []
        for i, b in enumerate(sizes.profiled):
            start = low if i == 0 else sizes.profiled[i - 1] + 1
            stop = high if i == len(sizes.profiled) - 1 else b
            buckets.append((start, b, stop))
    return tuple(EngineProfile(tuple(_range(spec, bucket, sizes) for spec in specs)) for bucket in buckets)


def _range(spec: TensorSpec, batch: tuple[int, int, int], sizes: SizePlan) -> ShapeRange:
    dims: list[tuple[int, int, int]] = []
    for d in spec.shape:
        if d == BATCH_AXIS:
            dims.append(batch)
        elif isinstance(d, str):
            dims.append((min(sizes.axes[d]), sizes.axes_opt[d], max(sizes.axes[d])))
        else:
            dims.append((int(d),) * 3)
    return ShapeRange(spec.name, tuple(d[0] for d in dims), tuple(d[1] for d in dims), tuple(d[2] for d in dims))


def profile_for(profiles: Sequence[EngineProfile], shapes: Mapping[str, Sequence[int]]) -> int:
    """The index of the first profile that covers ``shapes``; ValueError naming the shapes when none does."""
    for i, profile in enumerate(profiles):
        if profile.covers(shapes):
            return i
    shown = ", ".join(f"{n}{list(s)}" for n, s in shapes.items())
    raise ValueError(f"no optimization profile of the engine covers {shown}: the engine was built for "
                     f"{describe(profiles)}; add the size to profile.batch_sizes, correctness.probe or samples.axes "
                     "and rebuild")


def describe(profiles: Sequence[EngineProfile]) -> str:
    """The profiles in words: ``#0 x[1,4]..[8,4] opt [8,4]``."""
    return "; ".join(f"#{i} " + ", ".join(f"{r.name}{list(r.min)}..{list(r.max)} opt {list(r.opt)}"
                                          for r in p.inputs) for i, p in enumerate(profiles))


__all__ = ["PROFILE_MODES", "ShapeRange", "EngineProfile", "SizePlan", "recipe_sizes", "derive_profiles",
           "profile_for", "describe"]
