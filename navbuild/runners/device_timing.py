"""Runners that time themselves on their device: ``bind(feeds)`` and ``peak_memory_mb()``.

A profile of a runner that offers ``bind`` times the model, not the copies: the inputs go to
the device once, each call of the bound model runs it and returns its time in ms (CUDA events
and a synchronize on a GPU, ``perf_counter`` on the CPU), and the outputs stay on the device.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

from navbuild.lazy import lazy_import
from navbuild.runners.torch_runner import TorchRunner

np = lazy_import("numpy")


def is_cuda(device: str) -> bool:
    """Whether ``device`` ("cpu", "cuda", "cuda:N") is a CUDA GPU."""
    return device.split(":")[0] == "cuda"


def timer(device: str) -> Callable[[Callable[[], Any]], float]:
    """``time(call) -> ms``: CUDA events around ``call`` and a synchronize on a GPU (the kernels it
    queued are counted, not just their launch), ``perf_counter`` elsewhere."""
    if not is_cuda(device):
        def on_cpu(call: Callable[[], Any]) -> float:
            t0 = time.perf_counter_ns()
            call()
            return (time.perf_counter_ns() - t0) / 1e6
        return on_cpu

    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def on_cuda(call: Callable[[], Any]) -> float:
        start.record()
        call()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))
    return on_cuda


class Bound:
    """A model bound to inputs already on its device: each call runs it once and returns its time
    in ms; ``outputs()`` copies the last call's outputs to numpy (for checks, never timed)."""

    def __init__(self, call: Callable[[], Any], outputs: Callable[[], Sequence[Any]],
                 time: Callable[[Callable[[], Any]], float], inputs: Any = None) -> None:
        self._call = call
        self._outputs = outputs
        self._time = time
        #: what the call reads, kept alive as long as the binding is (an OrtValue on the CPU wraps
        #: its numpy array without copying it)
        self.inputs = inputs

    def __call__(self) -> float:
        return self._time(self._call)

    def outputs(self) -> list[np.ndarray]:
        return list(self._outputs())


def reset_peak_memory(device: str) -> None:
    """Start counting the peak of torch's allocations on ``device`` from now (a no-op off CUDA)."""
    if is_cuda(device):
        import torch

        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: str) -> float | None:
    """The peak of torch's allocations on ``device`` since the last reset, in MiB (None off CUDA)."""
    if not is_cuda(device):
        return None
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20


def device_used_mb(device: str) -> float | None:
    """Memory in use on the CUDA ``device`` as the driver reports it, in MiB (None off CUDA or without
    torch): what a runtime with its own allocator (ONNX Runtime's arena, TensorRT) holds, which torch's
    counters do not see (other processes on the same GPU count too)."""
    if not is_cuda(device):
        return None
    try:
        import torch
    except ImportError:
        return None
    _, _, index = device.partition(":")
    free, total = torch.cuda.mem_get_info(int(index) if index else 0)
    return (total - free) / 2**20


def grown_mb(device: str, baseline_mb: float | None) -> float | None:
    """GPU memory in use now beyond ``baseline_mb`` (a :func:`device_used_mb` read earlier), in MiB; None
    off CUDA or without a baseline. A runtime that keeps what its allocator grew to (ONNX Runtime's
    arena, TensorRT's activations) reads its high-water mark so."""
    used = device_used_mb(device)
    return None if used is None or baseline_mb is None else max(0.0, used - baseline_mb)


class TorchDeviceRunner(TorchRunner):
    """A TorchRunner that times itself on its device (``bind``) and reports its peak memory."""

    def bind(self, feeds: Mapping[str, np.ndarray]) -> Bound:
        """The model bound to ``feeds`` copied to the device once."""
        tensors = self.to_device(feeds)
        last: list[Any] = [None]

        def call() -> None:
            with self.calling():
                last[0] = self._call(tensors)

        return Bound(call, lambda: self.outputs(last[0]), timer(self.device))

    def peak_memory_mb(self) -> float | None:
        """Peak torch memory on the GPU since the model was loaded, in MiB (None on the CPU)."""
        return peak_memory_mb(self.device)



class ExportedCallRunner(TorchDeviceRunner):
    """A compiled torch program (an AOTInductor package, a Torch-TensorRT program) on its device, called as
    it was exported: by input name, or positionally in forward's order, as the call description its
    conversion wrote beside it says (``{"device", "inputs", "by_name"}``); the peak memory counts from
    the loaded program, not its loading."""

    def __init__(self, program: Any, path: Any, call: Mapping[str, Any], input_names: Sequence[str],
                 threads: int, device: str) -> None:
        super().__init__(program, input_names, threads, no_grad=True, device=device)
        self.path = path
        self.by_name = bool(call["by_name"])
        self.call_order: list[str] = list(call["inputs"])
        reset_peak_memory(self.device)

    def _call(self, tensors: dict[str, Any]) -> Any:
        if self.by_name:
            return self.model(**tensors)
        return self.model(*(tensors[n] for n in self.call_order))

__all__ = ["ExportedCallRunner", "is_cuda", "timer", "Bound", "reset_peak_memory", "peak_memory_mb", "device_used_mb", "grown_mb",
           "TorchDeviceRunner"]
