"""AotiFromTorch: ``torch.export`` a torch model with dynamic axes and compile it ahead of time with
AOTInductor into ``model.pt2``, a package that loads and runs without the model's Python code."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from navbuild.errors import MissingTool
from navbuild.runners.aoti_runner import AOTI_LOAD, CALL_FILE, PACKAGE_FILE, AotiRunner
from navbuild.runners.torch_cuda_runner import fp32_is_fp32
from navbuild.runners.torch_export_runner import IMPORTS_FILE
from navbuild.runners.torch_runner import (_keep_precompiled_headers_in_cache_dir, flatten_outputs, load_torch_model,
                                           takes_names)
from navbuild.steps.base import Step, StepContext
from navbuild.steps.eager_check import TORCH_KERNELS, eager_mismatch
from navbuild.steps.exported_program_from_torch import _fresh_load_imports, export_dynamic
from navbuild.steps.onnx_from_torch import EXAMPLE_BATCH, _signature_order
from navbuild.steps.torchscript_from_torch import (
    CHECK_BATCH,
    _TorchSource,
    example_inputs,
)

#: where the package is compiled for: the CPU it is built on, or a CUDA GPU
DEVICES: tuple[str, ...] = ("cpu", "cuda")


@dataclass(frozen=True)
class AotiFromTorchParams(_TorchSource):
    """The torch source (factory, inputs, axes, seed), the device the package is compiled for, and
    the packages a fresh process may need to load it."""

    device: str = "cpu"  # one of DEVICES
    # the recipe's source.packages: modules a fresh process may need imported before the package
    # loads (output classes their package registers in torch's pytree)
    packages: tuple[str, ...] = ()


class AotiFromTorch(Step):
    """Export the torch source with ``torch.export`` (every named axis dynamic) and compile it with
    AOTInductor for ``device`` into ``model.pt2``; the package is checked against eager torch at two
    batch sizes."""

    name: ClassVar[str] = "AotiFromTorch"
    version: ClassVar[int] = 1
    Params: ClassVar[type] = AotiFromTorchParams
    requires: ClassVar[tuple[str, ...]] = ("torch",)
    tools: ClassVar[tuple[str, ...]] = ("torch",)
    # the package is machine code for this CPU's instruction set or this GPU's architecture
    hardware_dependent: ClassVar[bool] = True

    def run(self, params: AotiFromTorchParams, ctx: StepContext) -> dict:
        import torch

        if params.device not in DEVICES:
            raise ValueError(f"device '{params.device}' is not one of {', '.join(DEVICES)}")
        if params.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("an AOTInductor package for cuda is compiled on a CUDA GPU, and torch sees none "
                               f"(torch {torch.__version__}); build it on the GPU machine")
        if not hasattr(torch._inductor, "aoti_compile_and_package"):
            raise MissingTool(f"AOTInductor packages need torch >= 2.6 (this is torch {torch.__version__}); "
                              "upgrade torch or leave out the torch-aoti variants")
        fp32_is_fp32(params.device)  # inductor picks its matmul kernels at compile time: no TF32 in fp32
        model = load_torch_model(params.factory, ctx.inputs.get("source")).to(params.device)
        names = _signature_order(model, [s.name for s in params.inputs])
        positional = not takes_names(model, names)
        examples = _on(example_inputs(params, EXAMPLE_BATCH, params.seed, names), params.device)
        with torch.no_grad():
            program, how = export_dynamic(model, examples, params, names, positional)
        # inductor's cache (TORCHINDUCTOR_CACHE_DIR, set by the step's process) keeps its headers too
        _keep_precompiled_headers_in_cache_dir()
        path = ctx.out / PACKAGE_FILE
        torch._inductor.aoti_compile_and_package(program, package_path=str(path))
        (ctx.out / CALL_FILE).write_text(json.dumps({"device": params.device, "inputs": names,
                                                     "by_name": not positional}))
        # deployable means it loads without the model's code: proven in a fresh process
        imports = _fresh_load_imports(path, params, AOTI_LOAD)
        if imports:
            (ctx.out / IMPORTS_FILE).write_text(json.dumps(imports))
        runner = AotiRunner(path, names, threads=torch.get_num_threads())
        for batch, seed in ((EXAMPLE_BATCH, params.seed), (CHECK_BATCH, params.seed + 1)):
            examples = example_inputs(params, batch, seed, names)
            with torch.no_grad():
                on_device = _on(examples, params.device)
                result = model(*on_device.values()) if positional else model(**on_device)
            want = [t.detach().float().cpu().numpy() for t in flatten_outputs(result)[1]]
            problem = eager_mismatch(want, runner.run({n: t.numpy() for n, t in examples.items()}), TORCH_KERNELS)
            if problem:
                raise RuntimeError(f"the AOTInductor package does not reproduce the model at batch {batch}: {problem}")
        size = path.stat().st_size
        print(f"{PACKAGE_FILE}: AOTInductor package for {params.device}, {size} bytes, {how} dims, reproduces "
              f"eager at batch {EXAMPLE_BATCH} and {CHECK_BATCH}", flush=True)
        return {"size_bytes": size, "dims": how, "device": params.device, "load_imports": imports}


def _on(tensors: dict[str, Any], device: str) -> dict[str, Any]:
    return {n: t.to(device) for n, t in tensors.items()} if device != "cpu" else tensors


__all__ = ["AotiFromTorch", "AotiFromTorchParams", "DEVICES"]
