"""The one check of a model converted from torch against eager torch, and its tolerance policy."""

from __future__ import annotations

import numpy as np
import pytest

from navbuild.steps.eager_check import OTHER_KERNELS, TORCH_KERNELS, Tolerance, eager_mismatch

WANT = [np.linspace(-10, 10, 12, dtype=np.float32).reshape(3, 4), np.ones((3, 2), np.float32)]


def test_outputs_that_agree_pass() -> None:
    assert eager_mismatch(WANT, [w.copy() for w in WANT], TORCH_KERNELS) == ""
    assert eager_mismatch([], [], TORCH_KERNELS) == ""


def test_rounding_of_other_kernels_passes_only_their_budget() -> None:
    # a sum reassociated by another runtime: 5e-4 relative, inside OTHER_KERNELS, outside TORCH_KERNELS
    got = [WANT[0] * (1 + 5e-4), WANT[1]]
    assert eager_mismatch(WANT, got, OTHER_KERNELS) == ""
    assert eager_mismatch(WANT, got, TORCH_KERNELS) == "output 0 differs by up to 0.005"


def test_every_budget_is_far_below_a_conversion_error() -> None:
    # a batch size baked into a trace, a wrong op: off by whole units, failed by each budget
    for tolerance in (TORCH_KERNELS, OTHER_KERNELS):
        assert tolerance.atol <= 1e-4 and tolerance.rtol <= 1e-3
        assert eager_mismatch(WANT, [WANT[0] + 0.5, WANT[1]], tolerance) == "output 0 differs by up to 0.5"


def test_what_differs_is_said() -> None:
    loose = Tolerance(atol=1.0, rtol=1.0)
    assert eager_mismatch(WANT, WANT[:1], loose) == "1 outputs instead of 2"
    assert eager_mismatch(WANT, [WANT[0][:2], WANT[1]], loose) == "output 0 has shape (2, 4) instead of (3, 4)"
    assert eager_mismatch(WANT, [WANT[0], WANT[1] + 2.5], loose) == "output 1 differs by up to 2.5"


def test_torch_outputs_and_runtime_arrays_compare_alike() -> None:
    torch = pytest.importorskip("torch")
    eager = {"logits": torch.from_numpy(WANT[0]), "extra": None, "mask": torch.from_numpy(WANT[1]).to(torch.float64)}
    assert eager_mismatch(eager, (torch.from_numpy(WANT[0]), torch.from_numpy(WANT[1])), TORCH_KERNELS) == ""
    assert eager_mismatch(eager, [WANT[0], WANT[1]], TORCH_KERNELS) == ""
    assert eager_mismatch(torch.from_numpy(WANT[0]), [WANT[0] - 1], TORCH_KERNELS) == "output 0 differs by up to 1"
