"""WriteTritonModel: a variant as a Triton model, native (to deploy) and python-backend (to serve here)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

from navbuild.model_io import TensorSpec
from navbuild.samples import read_npz
from navbuild.steps.base import Step, StepContext
from navbuild.steps.reference import SAMPLES_FILE, reference_file
from navbuild.triton.io import perf_input_data, tensors_to_json, triton_io
from navbuild.triton.model_config import default_config, local_runtime
from navbuild.triton.repository import EVERY_CORE, write_local, write_native

#: folders and files of a WriteTritonModel output
NATIVE, LOCAL, IO_FILE, INPUT_DATA = "native", "local", "io.json", "input_data.json"
_SIDE_FILES = {"log.txt", "reproduce.sh", "job.json", "result.json", "error.json"}


@dataclass(frozen=True)
class TritonModelParams:
    name: str  # the Triton model name
    variant: str
    runner: str  # the variant's runner (its format family names the native backend that serves it)
    backend: str  # that native backend
    mode: str  # the variant's runtime mode (openvino "bf16")
    inputs: tuple[TensorSpec, ...]
    batch_size: int  # the reference batch whose outputs give the output dims
    max_batch_size: int  # of the default configuration written here
    # the native parameters that make the model this variant (planning/triton.py variant_parameters)
    parameters: tuple[tuple[str, str], ...] = ()


class WriteTritonModel(Step):
    """Write the variant's native Triton model and its locally served python-backend twin.

    Both carry Triton's default configuration; the search measures others. ``io.json`` holds
    the inputs and outputs (dims from the model's samples and reference outputs) and
    ``input_data.json`` the recipe's real samples for perf_analyzer.
    """

    name: ClassVar[str] = "WriteTritonModel"
    # 2: the python-backend twin unpins OpenVINO threads when instances > 1
    # 3: the twin's default thread count is "every core" (0), counted where it is served: it was
    #    this machine's os.cpu_count(), written into an output whose key has no hardware
    version: ClassVar[int] = 3
    Params: ClassVar[type] = TritonModelParams
    requires: ClassVar[tuple[str, ...]] = ("numpy", "google.protobuf", "tritonclient")
    tools: ClassVar[tuple[str, ...]] = ("tritonclient",)

    def run(self, params: TritonModelParams, ctx: StepContext) -> dict:

        samples = read_npz(ctx.inputs["reference"] / SAMPLES_FILE)
        reference = read_npz(ctx.inputs["reference"] / reference_file(params.batch_size))
        inputs, outputs = triton_io(params.inputs, samples, reference)
        files = model_files(ctx.inputs["model"])
        config = default_config(params.max_batch_size, params.backend, params.parameters)
        write_native(ctx.out / NATIVE, params.name, params.backend, files, inputs, outputs, config)
        write_local(ctx.out / LOCAL, params.name, params.runner, files, inputs, outputs, config,
                    local_runtime_options(params.backend, params.mode, config.backend_parameters))
        (ctx.out / IO_FILE).write_text(json.dumps({"inputs": tensors_to_json(inputs),
                                                   "outputs": tensors_to_json(outputs)}, indent=2))
        perf_input_data(samples, ctx.out / INPUT_DATA)
        print(f"{params.name}: {params.backend} model with {len(inputs)} inputs, {len(outputs)} outputs; "
              f"files {', '.join(sorted(files))}", flush=True)
        return {"name": params.name, "backend": params.backend, "inputs": tensors_to_json(inputs),
                "outputs": tensors_to_json(outputs), "default_config": config.label()}


def model_files(model: Path) -> dict[str, Path]:
    """Destination name -> file for a variant's model: a leaf file, or every file of a conversion's output."""
    model = Path(model)
    if model.is_file():
        return {f"model{model.suffix}": model}
    return {p.name: p for p in sorted(model.iterdir()) if p.is_file() and p.name not in _SIDE_FILES}


def local_runtime_options(backend: str, mode: str, backend_parameters: Any) -> Mapping[str, str]:
    """The runner options that make the python-backend twin run like the native backend.

    A native backend left at its defaults uses every core for one model instance (ONNX
    Runtime's, OpenVINO's and libtorch's own default), so that is the twin's default too:
    EVERY_CORE, counted by the machine that serves the twin, not by this one.
    """
    runtime = {"intra_op_threads": EVERY_CORE, "inter_op_threads": "1", "graph_level": "all", "mode": mode}
    runtime.update(local_runtime(backend, backend_parameters))
    return runtime


__all__ = ["WriteTritonModel", "TritonModelParams", "model_files", "local_runtime_options", "NATIVE", "LOCAL",
           "IO_FILE", "INPUT_DATA"]
