"""The torch source on a CUDA GPU (runner ``torch-cuda``): eager fp32, fp16/bf16 cast and autocast,
torch.compile with and without CUDA graphs; timed on the device with CUDA events."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from navbuild.runners.device_timing import TorchDeviceRunner, is_cuda, reset_peak_memory
from navbuild.runners.torch_runner import apply_mode, check_mode, load_torch_model
from navbuild.runtime import TorchFactory

#: the runtime modes of the ``torch-cuda`` runner (RuntimeOptions.mode): "" is fp32 with TF32 off
TORCH_CUDA_MODES: tuple[str, ...] = ("", "cast-fp16", "autocast-fp16", "cast-bf16", "autocast-bf16", "compile",
                                     "compile-cudagraphs")
#: the device ``make`` runs on: torch's current CUDA device (the process is given its GPU)
CUDA = "cuda"


def fp32_is_fp32(device: str) -> None:
    """Turn TF32 off for matmuls and cuDNN on a GPU, so an fp32 variant computes in fp32
    (Ampere and later otherwise round matmul inputs to 10 mantissa bits)."""
    if is_cuda(device):
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def on_device(device: str, factory: TorchFactory, input_names: Sequence[str], mode: str, threads: int,
              source: Path | None = None) -> TorchDeviceRunner:
    """The source model on ``device`` in runtime mode ``mode`` (TORCH_CUDA_MODES). The same code
    runs with device "cpu", which is how it is tested where there is no GPU."""
    check_mode(mode, TORCH_CUDA_MODES)  # before loading: a typo should not cost a model load
    fp32_is_fp32(device)
    runner = apply_mode(load_torch_model(factory, source), mode, input_names, threads, device=device,
                        modes=TORCH_CUDA_MODES, runner=TorchDeviceRunner)
    reset_peak_memory(device)  # the peak counts from the loaded model, not the loading
    return runner


def make(model_path: Path | None, factory: TorchFactory | None, input_names: Sequence[str], options: Any,
         source: Path | None = None) -> TorchDeviceRunner:
    """Runner registry entry: the source model on the GPU in runtime mode ``options.mode``."""
    if factory is None:
        raise ValueError("a torch-cuda variant needs a factory")
    return on_device(CUDA, factory, input_names, getattr(options, "mode", "") or "", options.intra_op_threads,
                     source)


__all__ = ["TORCH_CUDA_MODES", "CUDA", "fp32_is_fp32", "on_device", "make"]
