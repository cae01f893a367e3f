"""TorchTensorRtFromTorch: ``torch.export`` the torch source with its dynamic axes and compile it with
Torch-TensorRT's dynamo path (``torch_tensorrt.dynamo.compile``) into a saved ExportedProgram, on a CUDA GPU."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from navbuild.errors import MissingTool
from navbuild.formats.tensorrt_profiles import ShapeRange
from navbuild.runners.torch_runner import load_torch_model, takes_names
from navbuild.runners.torch_tensorrt_runner import CALL_FILE, PROGRAM_FILE, TorchTensorRtRunner
from navbuild.steps.base import Step, StepContext
from navbuild.steps.exported_program_from_torch import export_dynamic
from navbuild.steps.onnx_from_torch import EXAMPLE_BATCH, _signature_order
from navbuild.steps.torchscript_from_torch import _TorchSource, example_inputs

#: precision -> the torch dtype name TensorRT may choose kernels in (besides fp32)
PRECISIONS: dict[str, str] = {"fp16": "float16"}


@dataclass(frozen=True)
class TorchTensorRtFromTorchParams(_TorchSource):
    """The torch source (factory, inputs, axes, seed), the precision TensorRT may use, every input's
    min/opt/max shape (derived from the recipe, navbuild.formats.tensorrt_profiles), and the
    packages a fresh process may need to load the program."""

    precision: str = "fp16"  # one of PRECISIONS
    shapes: tuple[ShapeRange, ...] = ()
    packages: tuple[str, ...] = ()


class TorchTensorRtFromTorch(Step):
    """Export the torch source with ``torch.export`` (every named axis dynamic), compile it with
    ``torch_tensorrt.dynamo.compile`` (``enabled_precisions`` fp32 + ``precision``, one
    ``torch_tensorrt.Input`` min/opt/max per input) and save it with ``torch_tensorrt.save`` as an
    ExportedProgram (``model.ep``); the saved program is loaded again and run at the smallest and
    the largest batch its shapes allow."""

    name: ClassVar[str] = "TorchTensorRtFromTorch"
    version: ClassVar[int] = 1
    Params: ClassVar[type] = TorchTensorRtFromTorchParams
    requires: ClassVar[tuple[str, ...]] = ("torch", "torch_tensorrt")
    tools: ClassVar[tuple[str, ...]] = ("torch", "torch-tensorrt", "tensorrt")
    # TensorRT engines inside: built for this GPU's architecture and this TensorRT version
    hardware_dependent: ClassVar[bool] = True

    def run(self, params: TorchTensorRtFromTorchParams, ctx: StepContext) -> dict:
        import numpy as np
        import torch

        if params.precision not in PRECISIONS:
            raise ValueError(f"precision '{params.precision}' is not one of {', '.join(PRECISIONS)}")
        if not torch.cuda.is_available():
            raise RuntimeError("Torch-TensorRT compiles on a CUDA GPU, and torch sees none "
                               f"(torch {torch.__version__}); build it on the GPU machine")
        try:
            import torch_tensorrt
        except ImportError as e:
            raise MissingTool(f"torch_tensorrt does not import ({e}); install torch-tensorrt matching torch "
                              f"{torch.__version__} or leave out the torch-tensorrt variants") from e
        model = load_torch_model(params.factory, ctx.inputs.get("source")).to("cuda").eval()
        names = _signature_order(model, [s.name for s in params.inputs])
        positional = not takes_names(model, names)
        examples = _on_cuda(example_inputs(params, EXAMPLE_BATCH, params.seed, names))
        with torch.no_grad():
            program, how = export_dynamic(model, examples, params, names, positional)
        ranges = trt_inputs(params, names)
        by_kind = {"arg_inputs": [ranges[n] for n in names]} if positional else {"kwarg_inputs": ranges}
        compiled = torch_tensorrt.dynamo.compile(program, **by_kind, **compile_settings(params.precision))
        # saved (and re-traced) at the batch it is tuned for, the other axes at the samples' sizes
        opt = _on_cuda(example_inputs(params, _opt_batch(params), params.seed, names))
        saved = {"arg_inputs": list(opt.values())} if positional else {"arg_inputs": [], "kwarg_inputs": opt}
        path = ctx.out / PROGRAM_FILE
        torch_tensorrt.save(compiled, str(path), output_format="exported_program", **saved)
        (ctx.out / CALL_FILE).write_text(json.dumps({"inputs": names, "by_name": not positional}))
        runner = TorchTensorRtRunner(path, names, threads=torch.get_num_threads())
        ran = {}
        for batch in sorted({_min_batch(params), _opt_batch(params), _max_batch(params)}):
            feeds = {n: t.numpy() for n, t in example_inputs(params, batch, params.seed + 1, names).items()}
            outputs = runner.run(feeds)
            ran[batch] = [list(o.shape) for o in outputs]
            if not all(np.isfinite(np.asarray(o, dtype=np.float32)).all() for o in outputs):
                raise RuntimeError(f"the Torch-TensorRT program gives non-finite outputs at batch {batch}")
        size = path.stat().st_size
        print(f"{PROGRAM_FILE}: Torch-TensorRT ({params.precision}) ExportedProgram, {size} bytes, {how} dims; ran at "
              f"batch {', '.join(map(str, ran))} (torch_tensorrt {torch_tensorrt.__version__})", flush=True)
        return {"size_bytes": size, "dims": how, "precision": params.precision, "ran": ran,
                "torch_tensorrt": torch_tensorrt.__version__}


def compile_settings(precision: str) -> dict[str, Any]:
    """The keyword arguments of ``torch_tensorrt.dynamo.compile`` for ``precision``: fp32 and it
    enabled. Releases where explicit typing is the default (the dtypes of the graph decide) take
    ``use_explicit_typing=False``, or ``enabled_precisions`` would be ignored."""
    import torch
    import torch_tensorrt

    settings: dict[str, Any] = {"enabled_precisions": {torch.float32, getattr(torch, PRECISIONS[precision])}}
    if "use_explicit_typing" in inspect.signature(torch_tensorrt.dynamo.compile).parameters:
        settings["use_explicit_typing"] = False
    return settings


def trt_inputs(params: TorchTensorRtFromTorchParams, names: list[str]) -> dict[str, Any]:
    """One ``torch_tensorrt.Input`` per input name: its min/opt/max shape and its dtype."""
    import torch
    import torch_tensorrt

    specs = {s.name: s for s in params.inputs}
    ranges = {r.name: r for r in params.shapes}
    return {n: torch_tensorrt.Input(min_shape=ranges[n].min, opt_shape=ranges[n].opt, max_shape=ranges[n].max,
                                    dtype=getattr(torch, specs[n].dtype)) for n in names}


def _min_batch(params: TorchTensorRtFromTorchParams) -> int:
    return min(r.min[0] for r in params.shapes)


def _opt_batch(params: TorchTensorRtFromTorchParams) -> int:
    return max(r.opt[0] for r in params.shapes)


def _max_batch(params: TorchTensorRtFromTorchParams) -> int:
    return max(r.max[0] for r in params.shapes)


def _on_cuda(tensors: dict[str, Any]) -> dict[str, Any]:
    return {n: t.to("cuda") for n, t in tensors.items()}


__all__ = ["TorchTensorRtFromTorch", "TorchTensorRtFromTorchParams", "PRECISIONS", "compile_settings", "trt_inputs"]
