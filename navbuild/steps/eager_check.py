"""Whether a model converted from torch reproduces eager torch: one comparison, one tolerance policy.

Every conversion that starts from a torch module (TorchScript, torch.export, OpenVINO's torch
frontend, and ``navbuild.export`` choosing how to serialize a model) runs the converted model
beside eager torch before it keeps it, and compares the two here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from navbuild.lazy import lazy_import
from navbuild.runners.torch_runner import flatten_outputs

np = lazy_import("numpy")


@dataclass(frozen=True)
class Tolerance:
    """An element agrees when ``|converted - eager| <= atol + rtol * |eager|`` (``numpy.allclose``)."""

    atol: float
    rtol: float


# The policy. What a conversion gets wrong (a batch size baked into a trace, an op converted
# wrongly) is off by orders of magnitude more than either budget allows; the budgets only allow
# rounding, and how much rounding depends on whose kernels run the converted model.
#: run by torch's own kernels (TorchScript, torch.export): the same ops as eager, in the same order
TORCH_KERNELS = Tolerance(atol=1e-4, rtol=1e-4)
#: run by another runtime's kernels (OpenVINO's CPU plugin), which reassociate sums differently
OTHER_KERNELS = Tolerance(atol=1e-4, rtol=1e-3)


def eager_mismatch(want: Any, got: Any, tolerance: Tolerance) -> str:
    """What differs between a converted model's outputs ``got`` and eager torch's ``want`` ("" when
    they agree within ``tolerance``).

    Each is what a forward returns (a tensor, a tuple or list, a dict, a ModelOutput) or a
    list of numpy arrays (a runtime's outputs, in the model's order).
    """
    got_arrays, want_arrays = _arrays(got), _arrays(want)
    if len(got_arrays) != len(want_arrays):
        return f"{len(got_arrays)} outputs instead of {len(want_arrays)}"
    for i, (g, w) in enumerate(zip(got_arrays, want_arrays)):
        if g.shape != w.shape:
            return f"output {i} has shape {g.shape} instead of {w.shape}"
        if not np.allclose(g, w, atol=tolerance.atol, rtol=tolerance.rtol):
            return f"output {i} differs by up to {np.abs(g - w).max():.3g}"
    return ""


def _arrays(outputs: Any) -> list[np.ndarray]:
    """``outputs`` as float arrays, in order."""
    if isinstance(outputs, (list, tuple)) and all(isinstance(o, np.ndarray) for o in outputs):
        return [np.asarray(o) for o in outputs]
    return [t.detach().float().numpy() for t in flatten_outputs(outputs)[1]]


__all__ = ["Tolerance", "TORCH_KERNELS", "OTHER_KERNELS", "eager_mismatch"]
