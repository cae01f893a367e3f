"""Tests of navbuild.samples: seeded generation, loading checks, batching, deterministic .npz files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from navbuild.errors import InputError
from navbuild.model_io import TensorSpec
from navbuild.samples import generate_samples, load_samples, read_npz, save_npz, take_batch

SPECS = (
    TensorSpec("input_ids", "int64", ("batch", "seq"), low=0, high=100),
    TensorSpec("mask", "bool", ("batch", "seq")),
    TensorSpec("x", "float32", ("batch", 3), low=-2.0, high=2.0),
)
AXES = {"seq": 5}


def test_generate_shapes_dtypes_and_ranges() -> None:
    s = generate_samples(SPECS, count=7, seed=0, axes=AXES)
    assert list(s) == ["input_ids", "mask", "x"]
    assert s["input_ids"].shape == (7, 5) and s["input_ids"].dtype == np.int64
    assert s["input_ids"].min() >= 0 and s["input_ids"].max() < 100
    assert s["mask"].dtype == np.bool_
    assert s["x"].shape == (7, 3) and s["x"].dtype == np.float32
    assert s["x"].min() >= -2.0 and s["x"].max() <= 2.0
    assert all(a.flags["C_CONTIGUOUS"] for a in s.values())


def test_generate_is_deterministic_per_seed() -> None:
    a = generate_samples(SPECS, 4, seed=1, axes=AXES)
    b = generate_samples(SPECS, 4, seed=1, axes=AXES)
    c = generate_samples(SPECS, 4, seed=2, axes=AXES)
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert a["x"].tobytes() != c["x"].tobytes()


def test_take_batch_tiles_rows() -> None:
    s = {"x": np.arange(6, dtype=np.float32).reshape(3, 2)}
    b = take_batch(s, 5)["x"]
    assert b.shape == (5, 2) and b.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(b[:, 0], [0, 2, 4, 0, 2])
    np.testing.assert_array_equal(take_batch(s, 1)["x"], s["x"][:1])


def test_save_npz_is_byte_identical_and_round_trips(tmp_path: Path) -> None:
    arrays = generate_samples(SPECS, 3, seed=0, axes=AXES)
    save_npz(tmp_path / "a.npz", arrays)
    save_npz(tmp_path / "b.npz", arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    loaded = read_npz(tmp_path / "a.npz")
    assert list(loaded) == list(arrays)
    for k in arrays:
        np.testing.assert_array_equal(loaded[k], arrays[k])


def test_load_samples_accepts_other_dynamic_sizes(tmp_path: Path) -> None:
    arrays = generate_samples(SPECS, 2, seed=0, axes={"seq": 9})
    np.savez(tmp_path / "data.npz", **arrays)
    loaded = load_samples(tmp_path / "data.npz", SPECS, AXES)
    assert loaded["input_ids"].shape == (2, 9)


def test_load_samples_missing_names(tmp_path: Path) -> None:
    np.savez(tmp_path / "data.npz", x=np.zeros((2, 3), np.float32), other=np.zeros(2))
    with pytest.raises(InputError, match=r"samples file data.npz: missing input\(s\) input_ids, mask; "
                                         r"the file has other, x"):
        load_samples(tmp_path / "data.npz", SPECS, AXES)


def test_load_samples_reports_every_problem(tmp_path: Path) -> None:
    np.savez(tmp_path / "data.npz",
             input_ids=np.zeros((2, 5), np.int32),          # wrong dtype
             mask=np.zeros((2,), np.bool_),                 # wrong ndim
             x=np.zeros((2, 4), np.float64))                # wrong static dim and dtype
    with pytest.raises(InputError) as info:
        load_samples(tmp_path / "data.npz", SPECS, AXES)
    msg = str(info.value)
    assert "input 'input_ids' has dtype int32, the recipe declares int64" in msg
    assert "input 'mask' has 1 dims" in msg
    assert "input 'x' dim 1 is 4, the recipe declares 3" in msg
    assert "input 'x' has dtype float64, the recipe declares float32" in msg


def test_load_samples_empty_rows(tmp_path: Path) -> None:
    np.savez(tmp_path / "data.npz", x=np.zeros((0, 3), np.float32))
    with pytest.raises(InputError, match="input 'x' has no rows"):
        load_samples(tmp_path / "data.npz", SPECS[2:], AXES)


def test_load_samples_not_an_npz(tmp_path: Path) -> None:
    (tmp_path / "data.npz").write_text("hello")
    with pytest.raises(InputError, match="samples file data.npz: cannot be read"):
        load_samples(tmp_path / "data.npz", SPECS, AXES)


def test_generate_needs_every_axis_size() -> None:
    with pytest.raises(InputError, match=r"inputs.input_ids: axis 'seq' has no size"):
        generate_samples(SPECS, 2, seed=0, axes={})
