"""OnnxSanitizedFromOnnx: normalise an ONNX file whose weights are listed as graph inputs (IR < 4) before other tools read it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from navbuild.model_io import model_file
from navbuild.steps.base import Step, StepContext

#: the first IR version in which an initializer need not also be a graph input
MIN_IR_VERSION = 4


@dataclass(frozen=True)
class OnnxSanitizedParams:
    """No knobs: the normalisation is fixed (and so is its key)."""


class OnnxSanitizedFromOnnx(Step):
    """Write ``model.onnx`` without weights among the graph inputs, at IR version >= 4.

    Older exporters listed every initializer as a graph input too (required before IR 4).
    ONNX Runtime then treats each weight as an input a caller may override: its offline
    optimizer cannot fold them, and the quantizers' shape inference asks for ``*__SHAPE``
    inputs. The graph and the weights are unchanged; only the input list and the IR version
    (raised to what the file's opsets need, at least 4) are.
    """

    name: ClassVar[str] = "OnnxSanitizedFromOnnx"
    version: ClassVar[int] = 1
    Params: ClassVar[type] = OnnxSanitizedParams
    requires: ClassVar[tuple[str, ...]] = ("onnx",)
    tools: ClassVar[tuple[str, ...]] = ("onnx",)

    def run(self, params: OnnxSanitizedParams, ctx: StepContext) -> dict:
        import onnx

        source = model_file(ctx.inputs["onnx"])
        proto = onnx.load(str(source))
        weights = {i.name for i in proto.graph.initializer}
        kept = [i for i in proto.graph.input if i.name not in weights]
        dropped = len(proto.graph.input) - len(kept)
        del proto.graph.input[:]
        proto.graph.input.extend(kept)
        before = proto.ir_version
        proto.ir_version = max(before, MIN_IR_VERSION,
                               onnx.helper.find_min_ir_version_for(list(proto.opset_import), True))
        onnx.checker.check_model(proto)
        large = proto.ByteSize() > 1_800_000_000
        onnx.save(proto, str(ctx.out / "model.onnx"), save_as_external_data=large,
                  location="model.onnx.data" if large else None)
        print(f"{dropped} weight(s) removed from the graph inputs; IR version {before} -> {proto.ir_version}; "
              f"inputs: {', '.join(i.name for i in kept)}", flush=True)
        return {"weights_removed_from_inputs": dropped, "ir_version_before": before,
                "ir_version": proto.ir_version, "inputs": [i.name for i in kept]}


__all__ = ["OnnxSanitizedFromOnnx", "OnnxSanitizedParams", "MIN_IR_VERSION"]
