"""OpenVinoFromOnnx: convert an ONNX model to OpenVINO IR (model.xml + model.bin)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

from navbuild.model_io import model_file
from navbuild.runners.openvino_runner import ir_size, save_ir
from navbuild.steps.base import Step, StepContext


@dataclass(frozen=True)
class OpenVinoParams:
    compress_to_fp16: bool = False  # False keeps f32 weights, so the IR matches the ONNX numerically


class OpenVinoFromOnnx(Step):
    """Convert ``model.onnx`` with ``openvino.convert_model`` and save it as IR.

    Dynamic dims of the ONNX graph stay dynamic (no input shapes are given to the converter),
    so one IR serves every batch size and sequence length.
    """

    name: ClassVar[str] = "OpenVinoFromOnnx"
    version: ClassVar[int] = 1
    Params: ClassVar[type] = OpenVinoParams
    requires: ClassVar[tuple[str, ...]] = ("openvino",)
    tools: ClassVar[tuple[str, ...]] = ("openvino",)

    def run(self, params: OpenVinoParams, ctx: StepContext) -> dict:
        import openvino as ov


        source = model_file(ctx.inputs["onnx"])
        print(f"converting {source.name} to OpenVINO IR "
              f"({'f16' if params.compress_to_fp16 else 'f32'} weights)", flush=True)
        model = ov.convert_model(str(source))
        save_ir(model, ctx.out, compress_to_fp16=params.compress_to_fp16)
        ops = Counter(op.get_type_name() for op in model.get_ops())
        shapes = ", ".join(f"{p.get_any_name()} {p.get_partial_shape()}" for p in model.inputs)
        print(f"{sum(ops.values())} ops; inputs {shapes}", flush=True)
        return {"size_bytes": ir_size(ctx.out), "ops": sum(ops.values())}


__all__ = ["OpenVinoFromOnnx", "OpenVinoParams"]
