"""ExportedProgramFromTorch: ``torch.export`` a torch model with dynamic axes to ``model.pt2``."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from navbuild.evidence import BakedShape, DataDependentBranch, is_data_dependent
from navbuild.model_io import TensorSpec
from navbuild.steps.base import Step, StepContext
from navbuild.steps.common import TorchFactory, first_line
from navbuild.steps.onnx_from_torch import EXAMPLE_BATCH, _signature_order
from navbuild.steps.torchscript_from_torch import CHECK_BATCH, _check_same, example_inputs


@dataclass(frozen=True)
class ExportedProgramFromTorchParams:
    factory: TorchFactory
    inputs: tuple[TensorSpec, ...]
    axes: Mapping[str, int]
    seed: int


class ExportedProgramFromTorch(Step):
    """Export the torch source with ``torch.export`` (every named axis dynamic) to ``model.pt2``."""

    name: ClassVar[str] = "ExportedProgramFromTorch"
    version: ClassVar[int] = 1
    Params: ClassVar[type] = ExportedProgramFromTorchParams
    requires: ClassVar[tuple[str, ...]] = ("torch",)
    tools: ClassVar[tuple[str, ...]] = ("torch",)

    def run(self, params: ExportedProgramFromTorchParams, ctx: StepContext) -> dict:
        import torch

        from navbuild.runners.torch_runner import load_torch_model

        model = load_torch_model(params.factory, ctx.inputs.get("source"))
        names = _signature_order(model, [s.name for s in params.inputs])
        examples = example_inputs(params, EXAMPLE_BATCH, params.seed, names)

        program, how = _export(model, examples, params)
        specialized = _specialized_axes(program, params)
        if specialized:
            raise BakedShape("torch.export made axes static: " + ", ".join(specialized)
                             + " (the model computes with that size as a Python int or branches on it)")
        _strip_stack_traces(program)
        path = ctx.out / "model.pt2"
        torch.export.save(program, str(path))
        loaded = torch.export.load(str(path)).module()
        for batch, seed in ((EXAMPLE_BATCH, params.seed), (CHECK_BATCH, params.seed + 1)):
            _check_same(model, loaded, example_inputs(params, batch, seed, names), "export", batch)
        nodes = len(program.graph.nodes)
        size = path.stat().st_size
        print(f"model.pt2: {nodes} nodes, {size} bytes, {how} dims, reproduces eager at batch "
              f"{EXAMPLE_BATCH} and {CHECK_BATCH}", flush=True)
        return {"size_bytes": size, "nodes": nodes, "dims": how}


def _export(model: Any, examples: dict[str, Any], params: ExportedProgramFromTorchParams) -> tuple[Any, str]:
    """``torch.export.export`` with one named ``Dim`` per axis name, else ``Dim.AUTO`` on every named dim.

    Named Dims state the intent (same name, same size) and fail on any relation between axes
    the model imposes (``seq == 2 * batch``, a reshape); ``Dim.AUTO`` lets torch infer those
    relations instead, and ``_specialized_axes`` then says if it fell back to a constant.
    """
    import torch

    def shapes(dim_for: Any) -> dict[str, dict[int, Any]]:
        return {spec.name: {i: dim_for(axis) for i, axis in spec.dynamic_axes().items()}
                for spec in params.inputs if spec.name in examples}

    dims: dict[str, Any] = {}
    with warnings.catch_warnings():
        # torch warns that shared Dim names "will not be used" — sharing is the intent
        warnings.filterwarnings("ignore", message=r"# The axis name")
        try:
            named = shapes(lambda axis: dims.setdefault(axis, torch.export.Dim(axis)))
            return torch.export.export(model, (), examples, dynamic_shapes=named), "named"
        except Exception as first:  # noqa: BLE001 - retry with inferred relations, report both
            print(f"named Dims failed ({type(first).__name__}: {first_line(first)}); retrying with Dim.AUTO",
                  flush=True)
            try:
                auto = shapes(lambda axis: torch.export.Dim.AUTO)
                return torch.export.export(model, (), examples, dynamic_shapes=auto), "auto"
            except Exception as second:
                # a branch on values is news about the model: every trace of it bakes one side
                error = DataDependentBranch if is_data_dependent(second) or is_data_dependent(first) else RuntimeError
                raise error(f"torch.export failed: {type(first).__name__}: {first_line(first)}; "
                            f"with Dim.AUTO: {type(second).__name__}: {first_line(second)}") from second


def _strip_stack_traces(program: Any) -> None:
    """Drop the nodes' Python stack traces (source paths, line numbers) before saving.

    Without this the same model exported from another checkout, or with a comment added above
    ``forward``, gives different bytes and every target downstream rebuilds.
    """
    for module in program.graph_module.modules():
        graph = getattr(module, "graph", None)
        for node in getattr(graph, "nodes", ()):
            node.meta.pop("stack_trace", None)


def _specialized_axes(program: Any, params: ExportedProgramFromTorchParams) -> list[str]:
    """``"input.dim (axis) = size"`` for every named input dim the program holds as a constant."""
    from torch.fx.experimental.symbolic_shapes import is_concrete_int

    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    user_inputs = program.graph_signature.user_inputs
    out = []
    for spec in params.inputs:
        node = placeholders.get(spec.name) if spec.name in user_inputs else None
        value = node.meta.get("val") if node is not None else None
        if value is None:
            continue  # an input the program dropped (unused) has no shape to check
        for i, axis in spec.dynamic_axes().items():
            # a dim torch specialized can still be a SymInt, one whose expression is a constant
            if is_concrete_int(value.shape[i]):
                out.append(f"{spec.name}.{i} ({axis}) = {int(value.shape[i])}")
    return out


__all__ = ["ExportedProgramFromTorch", "ExportedProgramFromTorchParams"]
