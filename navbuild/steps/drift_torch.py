"""TorchDrift: a torch runtime mode's (bf16 cast or autocast, dynamic int8) every module output against eager fp32.

The source model is loaded twice, once as it is and once in the variant's mode (the torch
runner's own ``apply_mode``), and a forward hook on every leaf module records its first input
and its output. A layer is a leaf module, named by its qualified name (``encoder.layer.0.
attention.self.query``), its op type the module's class; its tensors are ``<name>:input`` and
``<name>:output``, so its error before is its own input's. torch.compile modes run no module
hooks inside the compiled graph, and a TorchScript or exported-program source has no modules to
hook: those are not measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

from navbuild.lazy import lazy_import
from navbuild.runners.torch_runner import apply_mode, load_torch_model
from navbuild.steps.drift import DriftParams, DriftStep, GraphRun, Node, NotMeasurable

np = lazy_import("numpy")

#: the runner's threads: fixed, so the recipe's thread count does not change what a drift measures
THREADS = 2


def run_hooked(params: DriftParams, source: Path, mode: str, feeds: Mapping[str, Any]) -> GraphRun:
    """Every leaf module's first input and output of the source in runtime ``mode``, on ``feeds``."""
    import torch

    model = load_torch_model(params.factory, source)
    if isinstance(model, torch.jit.ScriptModule) or not any(True for _ in model.named_modules()):
        raise NotMeasurable("a serialized torch source has no modules to hook")
    # the leaves of the model as written: a mode may wrap one (dynamic int8's Linear holds its packed weights)
    leaves = {n for n, m in model.named_modules() if n and not any(True for _ in m.children())}
    runner = apply_mode(model, mode, list(feeds), THREADS)
    nodes: list[Node] = []
    tensors: dict[str, Any] = {}

    def hook(name: str, module: Any) -> Any:
        def record(_: Any, args: tuple, output: Any) -> None:
            if f"{name}:output" in tensors:
                return  # a module called again (shared weights): its first call is its layer
            first = next((a for a in args if isinstance(a, torch.Tensor)), None)
            out = output if isinstance(output, torch.Tensor) else next(
                (o for o in (output if isinstance(output, (tuple, list)) else ()) if isinstance(o, torch.Tensor)), None)
            if out is None:
                return
            nodes.append(Node(name, type(module).__name__, (f"{name}:input",), (f"{name}:output",)))
            tensors[f"{name}:output"] = _numpy(out)
            if first is not None:
                tensors[f"{name}:input"] = _numpy(first)
        return record

    handles = [m.register_forward_hook(hook(n, m)) for n, m in runner.model.named_modules() if n in leaves]
    try:
        outputs = runner.run(feeds)
    finally:
        for h in handles:
            h.remove()
    names = runner.output_names or [f"output:{i}" for i in range(len(outputs))]
    tensors.update({f"output:{n}": o for n, o in zip(names, outputs)})
    return GraphRun(tuple(nodes), tensors, tuple(f"output:{n}" for n in names))


def _numpy(tensor: Any) -> Any:
    tensor = tensor.detach()
    if tensor.is_quantized:
        tensor = tensor.dequantize()
    return tensor.float().cpu().numpy() if tensor.is_floating_point() else tensor.cpu().numpy()


class TorchDrift(DriftStep):
    """Rank the modules of a torch runtime mode (bf16, dynamic int8) by how much they add to its error against eager fp32."""

    name: ClassVar[str] = "TorchDrift"
    version: ClassVar[int] = 1
    requires: ClassVar[tuple[str, ...]] = ("numpy", "torch", "matplotlib")
    tools: ClassVar[tuple[str, ...]] = ("torch", "numpy")

    @classmethod
    def depends_on_hardware(cls, params: DriftParams) -> bool:
        # bf16 and int8 kernels differ between CPUs (AMX, AVX512-BF16, VNNI)
        return True

    def run_graphs(self, params: DriftParams, variant: Path, fp32: Path,
                   feeds: Mapping[str, Any]) -> tuple[GraphRun, GraphRun, dict[str, str]]:
        if params.factory is None:
            raise ValueError("a torch drift needs the source's factory")
        if params.mode.startswith("compile"):
            raise NotMeasurable(f"torch mode '{params.mode}' runs a compiled graph, where no module hook runs")
        fp32_run = run_hooked(params, fp32, "", feeds)
        return run_hooked(params, variant, params.mode, feeds), fp32_run, {}


__all__ = ["TorchDrift", "run_hooked"]
