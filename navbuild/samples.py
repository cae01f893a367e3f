"""Input samples: seeded generation, loading a user's .npz against the declared specs, batching, deterministic saving."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Mapping, Sequence

from navbuild.errors import InputError
from navbuild.lazy import lazy_import
from navbuild.model_io import BATCH_AXIS, TensorSpec

np = lazy_import("numpy")

#: fixed zip member timestamp so that saving the same arrays twice gives identical bytes
#: (the cache hashes output contents; a timestamp would make every rebuild look like a change).
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


def generate_samples(specs: Sequence[TensorSpec], count: int, seed: int,
                     axes: Mapping[str, int]) -> dict[str, np.ndarray]:
    """``count`` rows per input, drawn from ``np.random.default_rng(seed)`` in spec order.

    Integers are uniform in ``[low, high)``, floats uniform in ``[low, high]``, bools from {0, 1}.
    The same arguments always give the same bytes.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        unsized = [d for d in spec.dynamic_axes().values() if d != BATCH_AXIS and d not in axes]
        if unsized:
            raise InputError(f"inputs.{spec.name}: axis {', '.join(repr(d) for d in unsized)} has no "
                             "size; give it one in the recipe's axes")
        dtype = np.dtype(spec.dtype)
        shape = spec.concrete_shape(count, dict(axes))
        if dtype == np.bool_:
            arr = rng.integers(0, 2, size=shape).astype(np.bool_)
        elif np.issubdtype(dtype, np.integer):
            low, high = int(spec.low), int(spec.high)
            # an empty integer range [k, k) would make rng.integers raise; draw the constant k
            arr = rng.integers(low, max(high, low + 1), size=shape, dtype=np.int64).astype(dtype)
        elif np.issubdtype(dtype, np.floating):
            # float64 draw then cast: the values are the same whatever the target precision
            arr = rng.uniform(spec.low, spec.high, size=shape).astype(dtype)
        else:
            raise InputError(f"inputs.{spec.name}: dtype {spec.dtype} cannot be generated; "
                             "use a numeric or bool dtype, or give a samples file")
        out[spec.name] = np.ascontiguousarray(arr)
    return out


def load_samples(path: Path, specs: Sequence[TensorSpec],
                 axes: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Load a user's .npz and check it against the declared inputs; every problem in one InputError.

    Dynamic dims (axis names) are free; ``axes`` is accepted for symmetry with
    :func:`generate_samples` but the sample file may use other sizes for them.
    """
    path = Path(path)
    where = f"samples file {path.name}"
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise InputError(f"{where}: cannot be read as an .npz file ({e}); "
                         "write it with numpy.savez(path, name=array, ...)") from e
    missing = [s.name for s in specs if s.name not in arrays]
    if missing:
        raise InputError(f"{where}: missing input(s) {', '.join(missing)}; "
                         f"the file has {', '.join(sorted(arrays)) or 'no arrays'}")
    problems: list[str] = []
    for spec in specs:
        arr = arrays[spec.name]
        if arr.dtype != np.dtype(spec.dtype):
            problems.append(f"input '{spec.name}' has dtype {arr.dtype}, the recipe declares {spec.dtype}")
        if arr.ndim != len(spec.shape):
            problems.append(f"input '{spec.name}' has {arr.ndim} dims {list(arr.shape)}, "
                            f"the recipe declares {len(spec.shape)} {list(spec.shape)}")
            continue
        for i, (got, want) in enumerate(zip(arr.shape, spec.shape)):
            if isinstance(want, int) and got != want:
                problems.append(f"input '{spec.name}' dim {i} is {got}, the recipe declares {want}")
        if arr.ndim == 0 or arr.shape[0] < 1:
            problems.append(f"input '{spec.name}' has no rows (leading dim must be >= 1)")
    counts = {arrays[s.name].shape[0] for s in specs if arrays[s.name].ndim >= 1}
    if len(counts) > 1:
        problems.append("inputs have different row counts "
                        + ", ".join(f"{s.name}={arrays[s.name].shape[0]}" for s in specs))
    if problems:
        raise InputError(f"{where}: " + "; ".join(problems))
    return {s.name: np.ascontiguousarray(arrays[s.name]) for s in specs}


def take_batch(samples: Mapping[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """A batch of ``batch`` rows: row i is sample ``i % count`` (tiles when batch > count)."""
    out: dict[str, np.ndarray] = {}
    for name, arr in samples.items():
        rows = [i % arr.shape[0] for i in range(batch)]
        out[name] = np.ascontiguousarray(arr[rows])
    return out


def save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an uncompressed .npz whose bytes depend only on the arrays and their order."""
    with zipfile.ZipFile(path, mode="w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE_TIME)
            info.external_attr = 0o644 << 16  # fixed permissions: no umask dependence
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Load an .npz written by :func:`save_npz`, keeping the member order."""
    with np.load(path, allow_pickle=False) as data:
        return {k: np.asarray(data[k]) for k in data.files}


__all__ = ["generate_samples", "load_samples", "take_batch", "save_npz", "read_npz"]
