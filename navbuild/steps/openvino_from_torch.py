"""OpenVinoFromTorch: convert the torch source straight to OpenVINO IR (no ONNX in between)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from navbuild.evidence import TraceDivergence, trace_warnings
from navbuild.lazy import lazy_import
from navbuild.model_io import TensorSpec
from navbuild.runners.openvino_runner import ir_size, save_ir
from navbuild.runners.torch_runner import call_model, load_torch_model, takes_names
from navbuild.runtime import TorchFactory
from navbuild.steps.base import Step, StepContext
from navbuild.steps.common import first_line
from navbuild.steps.eager_check import OTHER_KERNELS, eager_mismatch
from navbuild.steps.onnx_from_torch import EXAMPLE_BATCH, _signature_order
from navbuild.steps.torchscript_from_torch import CHECK_BATCH, example_inputs

np = lazy_import("numpy")


@dataclass(frozen=True)
class OpenVinoFromTorchParams:
    factory: TorchFactory
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[str, ...]
    axes: Mapping[str, int]
    seed: int


class OpenVinoFromTorch(Step):
    """Convert the torch module with ``openvino.convert_model(module, example_input=...)``.

    OpenVINO's PyTorch frontend traces the module once with generated example inputs; every
    input dim stays dynamic, so one IR serves every batch size and sequence length. The IR
    keeps f32 weights, its outputs are named as the recipe declares them, and it is checked
    against eager torch at two batch sizes before it is saved.
    """

    name: ClassVar[str] = "OpenVinoFromTorch"
    version: ClassVar[int] = 2  # 2: TracerWarnings recorded as evidence in the result
    Params: ClassVar[type] = OpenVinoFromTorchParams
    requires: ClassVar[tuple[str, ...]] = ("torch", "openvino")
    tools: ClassVar[tuple[str, ...]] = ("torch", "openvino")

    def run(self, params: OpenVinoFromTorchParams, ctx: StepContext) -> dict:
        import openvino as ov
        import torch


        model = load_torch_model(params.factory, ctx.inputs.get("source"))
        names = _signature_order(model, [s.name for s in params.inputs])
        example = example_inputs(params, EXAMPLE_BATCH, params.seed, names)
        print(f"converting the torch module to OpenVINO IR (example batch {EXAMPLE_BATCH}, f32 weights)",
              flush=True)
        evidence: list[dict] = []
        try:
            with torch.no_grad(), trace_warnings(evidence):
                # a forward that does not take the recipe's names gets them positionally
                converted = ov.convert_model(model, example_input=example if takes_names(model, names)
                                             else tuple(example.values()))
        except Exception as e:
            raise RuntimeError(f"openvino.convert_model could not convert the torch module: "
                               f"{type(e).__name__}: {first_line(e)}") from e
        _name_ports(converted, names, params.outputs)
        # the frontend names a model "Model<process-wide counter>": name it after the factory,
        # so the same conversion saves the same bytes
        converted.set_friendly_name(params.factory.factory.rpartition(":")[2] or "model")
        for batch, seed in ((EXAMPLE_BATCH, params.seed), (CHECK_BATCH, params.seed + 1)):
            _check_same(model, converted, example_inputs(params, batch, seed, names), batch)
        save_ir(converted, ctx.out)
        ops = Counter(op.get_type_name() for op in converted.get_ops())
        shapes = ", ".join(f"{p.get_any_name()} {p.get_partial_shape()}" for p in converted.inputs)
        print(f"{sum(ops.values())} ops; inputs {shapes}; reproduces eager at batch {EXAMPLE_BATCH} and "
              f"{CHECK_BATCH}", flush=True)
        return {"size_bytes": ir_size(ctx.out), "ops": sum(ops.values()), "evidence": evidence}


def _name_ports(model: Any, inputs: list[str], outputs: tuple[str, ...]) -> None:
    """Give the IR's inputs and outputs the recipe's names, so checks and Triton find them.

    The frontend names inputs after forward's parameters, but outputs only carry the names of
    the traced graph's values; a declared output list of the same length names them in order.
    """
    for port, name in zip(model.inputs, inputs):
        if name not in port.get_names():
            port.get_tensor().set_names({name, *port.get_names()})
    if outputs and len(outputs) != len(model.outputs):
        raise RuntimeError(f"the converted model has {len(model.outputs)} output(s) but the recipe declares "
                           f"{len(outputs)} ({', '.join(outputs)})")
    for port, name in zip(model.outputs, outputs):
        port.get_tensor().set_names({name})


def _check_same(model: Any, converted: Any, feeds: dict[str, Any], batch: int) -> None:
    """Raise RuntimeError unless the IR, compiled for the CPU, reproduces eager torch at ``batch``."""
    import openvino as ov
    import torch

    with torch.no_grad():
        want = call_model(model, feeds)
    compiled = ov.Core().compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled([t.numpy() for t in feeds.values()])
    problem = eager_mismatch(want, [np.asarray(result[port]) for port in compiled.outputs], OTHER_KERNELS)
    if problem:
        raise TraceDivergence(f"the OpenVINO IR converted from torch does not reproduce the model at batch {batch}: "
                              f"{problem}")


__all__ = ["OpenVinoFromTorch", "OpenVinoFromTorchParams"]
