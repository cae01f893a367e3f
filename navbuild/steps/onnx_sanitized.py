"""OnnxSanitizedFromOnnx: Polygraphy's sanitizer (constant folding, shape inference) on an ONNX file, old-style files normalised."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from navbuild.model_io import model_file
from navbuild.steps.base import Step, StepContext

#: the first IR version in which an initializer need not also be a graph input
MIN_IR_VERSION = 4
#: above this a model is saved with its weights in ``model.onnx.data`` (protobuf's 2 GB limit, with margin)
EXTERNAL_DATA_BYTES = 1_800_000_000


@dataclass(frozen=True)
class OnnxSanitizedParams:
    """No knobs: the sanitizing is fixed (and so is its key)."""


class OnnxSanitizedFromOnnx(Step):
    """Write ``model.onnx``: the input model with its constants folded and its shapes inferred by
    Polygraphy (``polygraphy surgeon sanitize --fold-constants``: ONNX Runtime evaluates the
    constant subgraphs), weights out of the graph inputs, at IR version >= 4.

    Older exporters listed every initializer as a graph input too (required before IR 4).
    ONNX Runtime then treats each weight as an input a caller may override: its offline
    optimizer cannot fold them, and the quantizers' shape inference asks for ``*__SHAPE``
    inputs. The outputs are those of the input model (checked by the variant's correctness).

    Version 2: constant folding and shape inference added (version 1 only normalised the inputs).
    """

    name: ClassVar[str] = "OnnxSanitizedFromOnnx"
    version: ClassVar[int] = 2
    Params: ClassVar[type] = OnnxSanitizedParams
    requires: ClassVar[tuple[str, ...]] = ("onnx", "polygraphy", "onnx_graphsurgeon", "onnxruntime")
    tools: ClassVar[tuple[str, ...]] = ("onnx", "polygraphy", "onnx-graphsurgeon", "onnxruntime")

    def run(self, params: OnnxSanitizedParams, ctx: StepContext) -> dict:
        import onnx
        from polygraphy.backend.onnx import fold_constants, infer_shapes

        source = model_file(ctx.inputs["onnx"])
        proto = onnx.load(str(source))
        nodes_before = len(proto.graph.node)
        dropped = normalise_inputs(proto)
        before = proto.ir_version
        # the weights are initializers only now: an IR version that allows it before folding
        proto.ir_version = max(before, MIN_IR_VERSION,
                               onnx.helper.find_min_ir_version_for(list(proto.opset_import), True))
        # what `polygraphy surgeon sanitize --fold-constants` does: shapes inferred, then passes of
        # folding (each with shape inference, Shape ops of static dims folded) until nothing changes
        proto = infer_shapes(proto, allow_onnxruntime=True)
        proto = fold_constants(proto, num_passes=None, fold_shapes=True, allow_onnxruntime_shape_inference=True)
        onnx.checker.check_model(proto)
        large = proto.ByteSize() > EXTERNAL_DATA_BYTES
        onnx.save(proto, str(ctx.out / "model.onnx"), save_as_external_data=large,
                  location="model.onnx.data" if large else None)
        inputs = [i.name for i in proto.graph.input]
        print(f"{dropped} weight(s) removed from the graph inputs; IR version {before} -> {proto.ir_version}; "
              f"nodes {nodes_before} -> {len(proto.graph.node)} after constant folding; "
              f"{len(proto.graph.value_info)} inferred shapes; inputs: {', '.join(inputs)}", flush=True)
        return {"weights_removed_from_inputs": dropped, "ir_version_before": before, "ir_version": proto.ir_version,
                "nodes_before": nodes_before, "nodes": len(proto.graph.node),
                "inferred_shapes": len(proto.graph.value_info), "inputs": inputs}

    @classmethod
    def reproduce_commands(cls, params: OnnxSanitizedParams) -> str:
        """Polygraphy's command line for the same work, from the folder of the input ``model.onnx``
        into ``sanitized/model.onnx`` (it keeps the IR version as it was; GraphSurgeon drops the
        weights from the inputs as this step does)."""
        return "polygraphy surgeon sanitize model.onnx --fold-constants -o sanitized/model.onnx\n"


def normalise_inputs(proto: object) -> int:
    """Remove from ``proto``'s graph inputs the names that are initializers; the count removed."""
    graph = proto.graph  # type: ignore[attr-defined]
    weights = {i.name for i in graph.initializer}
    kept = [i for i in graph.input if i.name not in weights]
    dropped = len(graph.input) - len(kept)
    del graph.input[:]
    graph.input.extend(kept)
    return dropped


__all__ = ["OnnxSanitizedFromOnnx", "OnnxSanitizedParams", "MIN_IR_VERSION", "normalise_inputs"]
