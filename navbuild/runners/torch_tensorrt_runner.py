"""Running a Torch-TensorRT program (``model.ep``, runner ``torch-tensorrt``) on numpy feeds on the GPU it
was compiled for, timing itself there (``bind``) and reporting its peak memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from navbuild.runners.device_timing import ExportedCallRunner
from navbuild.runners.torch_runner import serialized_model_path

#: the saved program and the call description beside it (written by navbuild/steps/torch_tensorrt_from_torch.py)
PROGRAM_FILE = "model.ep"
CALL_FILE = "torch_tensorrt.json"


class TorchTensorRtRunner(ExportedCallRunner):
    """The ExportedProgram Torch-TensorRT saved (its TensorRT engines inside), on ``cuda``, called as
    it was exported: by input name, or positionally in forward's order (``torch_tensorrt.json``)."""

    def __init__(self, path: Path, input_names: Sequence[str], threads: int) -> None:
        # importing torch_tensorrt registers the TensorRT engine class the saved program holds
        import torch_tensorrt

        call = json.loads((Path(path).parent / CALL_FILE).read_text())
        program = torch_tensorrt.load(str(path))
        super().__init__(program.module(), Path(path), call, input_names, threads, device="cuda")


def make(model_path: Path | None, factory: Any, input_names: Sequence[str], options: Any,
         source: Path | None = None) -> TorchTensorRtRunner:
    """Runner registry entry: the Torch-TensorRT program at ``model_path`` (``model.ep`` or a folder holding it)."""
    if getattr(options, "mode", ""):
        raise ValueError(f"the torch-tensorrt runner has no runtime mode '{options.mode}' (only '')")
    return TorchTensorRtRunner(serialized_model_path(model_path, PROGRAM_FILE), input_names, options.intra_op_threads)


__all__ = ["TorchTensorRtRunner", "PROGRAM_FILE", "CALL_FILE", "make"]
