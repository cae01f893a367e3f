"""An ONNX model in ONNX Runtime on a CUDA GPU (runner ``onnx-cuda``): CUDAExecutionProvider, and IO
binding so that a profile times the model, not the copies to and from the device."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from navbuild.errors import MissingTool
from navbuild.lazy import lazy_import
from navbuild.model_io import model_file
from navbuild.runners.device_timing import Bound, device_used_mb, grown_mb, is_cuda, timer
from navbuild.runners.ort_runner import OrtRunner
from navbuild.runtime import RuntimeOptions

np = lazy_import("numpy")

CUDA_EP = "CUDAExecutionProvider"
#: the wheel that carries CUDA_EP (it replaces the plain onnxruntime wheel)
CUDA_EP_PACKAGE = "onnxruntime-gpu"


def device_providers(device: str) -> list[Any]:
    """The execution providers for ``device``: CUDA's on GPU 0 of the process (the CPU provider takes
    the nodes it has no kernel for), the CPU's on "cpu". Raises MissingTool where this onnxruntime
    has no CUDA provider."""
    if not is_cuda(device):
        return ["CPUExecutionProvider"]
    import onnxruntime as ort

    offered = ort.get_available_providers()
    if CUDA_EP not in offered:
        raise MissingTool(f"{CUDA_EP_PACKAGE} is not installed (this onnxruntime {ort.__version__} offers: "
                          f"{', '.join(offered)}); install {CUDA_EP_PACKAGE} in place of onnxruntime to run "
                          "onnx-cuda variants")
    return [(CUDA_EP, {"device_id": str(_device_id(device))}), "CPUExecutionProvider"]


def _device_id(device: str) -> int:
    _, _, index = device.partition(":")
    return int(index) if index else 0


class OrtDeviceRunner(OrtRunner):
    """An ONNX Runtime session on ``device`` ("cuda", "cuda:N" or "cpu") with IO binding.

    ``run(feeds)`` copies in and out (numpy); ``bind(feeds)`` puts the inputs on the device once
    and leaves the outputs there, so each timed call is the model's run alone.
    """

    def __init__(self, path: Path, options: RuntimeOptions, device: str) -> None:
        self.device = device
        self._ort_device = ("cuda" if is_cuda(device) else "cpu", _device_id(device))
        self._baseline_mb = device_used_mb(device)
        super().__init__(path, options, providers_=device_providers(device))

    def bind(self, feeds: Mapping[str, np.ndarray]) -> Bound:
        """The session bound to ``feeds`` (copied to the device once) and to outputs on the device."""
        import onnxruntime as ort

        binding = self.session.io_binding()
        arrays = {n: np.ascontiguousarray(feeds[n]) for n in self.input_names if n in feeds}
        values = {n: ort.OrtValue.ortvalue_from_numpy(a, *self._ort_device) for n, a in arrays.items()}
        for name, value in values.items():
            binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, *self._ort_device)
        binding.synchronize_inputs()

        def call() -> None:
            self.session.run_with_iobinding(binding)
            binding.synchronize_outputs()

        # ONNX Runtime runs on its own CUDA stream: a host clock around run + synchronize is its time
        return Bound(call, binding.copy_outputs_to_cpu, timer("cpu"), inputs=(arrays, values))

    def peak_memory_mb(self) -> float | None:
        """GPU memory in use now beyond what was in use before the session, in MiB (None on the CPU).

        ONNX Runtime allocates from its own arena, which torch's counters do not see and which
        keeps what it grew to: after the runs its size is the session's high-water mark. Read
        from the driver (other processes on the same GPU count too)."""
        return grown_mb(self.device, self._baseline_mb)


def make(model_path: Path | None, factory: Any, input_names: Any, options: RuntimeOptions,
         source: Path | None = None) -> OrtDeviceRunner:
    """Runner registry entry: an ONNX Runtime session on the GPU over ``model_path``."""
    if model_path is None:
        raise ValueError("an onnx-cuda variant needs a model path")
    if options.mode:
        raise ValueError(f"the onnx-cuda runner has no runtime mode '{options.mode}' (only '')")
    return OrtDeviceRunner(model_file(Path(model_path)), options, "cuda")


__all__ = ["CUDA_EP", "CUDA_EP_PACKAGE", "device_providers", "OrtDeviceRunner", "make"]
