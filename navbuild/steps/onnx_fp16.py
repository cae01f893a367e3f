"""OnnxFp16FromOnnx: convert an ONNX model's float32 weights and compute to float16 with ONNX Runtime's converter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from navbuild.model_io import model_file
from navbuild.runners.ort_runner import OrtRunner
from navbuild.runtime import RuntimeOptions
from navbuild.settings import params_of, setting
from navbuild.steps.base import Step, StepContext
from navbuild.steps.common import first_line

NOTE = "fp16 is for GPU targets; on CPU it is usually slower than fp32"
#: above this size the protobuf 2 GB limit is near: weights go to an external data file
_EXTERNAL_DATA_BYTES = 1_800_000_000


@dataclass
class Fp16Config:
    """The recipe's ``fp16``: ONNX Runtime's float16 conversion (onnx-fp16)."""

    keep_io_types: bool = setting(True, doc="float inputs and outputs stay float32 (Casts at the edges)")


_Fp16Params = params_of(Fp16Config, "_Fp16Params", __name__)


@dataclass(frozen=True)
class OnnxFp16Params(_Fp16Params):
    """The ``fp16`` section's fields and what no recipe sets."""

    op_block_list: tuple[str, ...] = ()   # op types kept in float32, on top of ORT's default list


class OnnxFp16FromOnnx(Step):
    """Write a float16 copy of an ONNX model to ``model.onnx``.

    Uses ``onnxruntime.transformers.float16.convert_float_to_float16``. Op types in ORT's
    ``DEFAULT_OP_BLOCK_LIST`` (ops without float16 kernels, e.g. Range, TopK, Min/Max) always
    stay float32; ``op_block_list`` adds to them. The result is loaded once by ONNX Runtime on
    the CPU so that a model no session can open fails here, not later in its correctness check.
    """

    name: ClassVar[str] = "OnnxFp16FromOnnx"
    version: ClassVar[int] = 1
    Params: ClassVar[type] = OnnxFp16Params
    requires: ClassVar[tuple[str, ...]] = ("onnx", "onnxruntime")
    tools: ClassVar[tuple[str, ...]] = ("onnx", "onnxruntime")

    def run(self, params: OnnxFp16Params, ctx: StepContext) -> dict:
        import onnx
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

        source = model_file(ctx.inputs["onnx"])
        target = ctx.out / "model.onnx"
        # a list that replaced ORT's defaults would push ops without fp16 kernels into fp16
        block = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(params.op_block_list))
        print(f"float16 conversion: keep_io_types {params.keep_io_types}, extra blocked op types "
              f"{list(params.op_block_list) or 'none'}", flush=True)
        model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=params.keep_io_types,
                                         op_block_list=block)
        # judged on the fp32 source: ByteSize() itself fails on a proto past 2 GB
        large = source.stat().st_size > _EXTERNAL_DATA_BYTES
        onnx.save(model, str(target), save_as_external_data=large, all_tensors_to_one_file=True,
                  location="model.onnx.data")
        _check_loads(target)
        print(f"note: {NOTE}", flush=True)
        return {"keep_io_types": params.keep_io_types,
                "size_bytes": sum(p.stat().st_size for p in ctx.out.rglob("*") if p.is_file()),
                "note": NOTE}


def _check_loads(path: Path) -> None:
    """Open the model in an ORT CPU session (no run: the step has no inputs to feed)."""

    try:
        # graph level "disable": check the file as written; kernel lookup happens at any level
        OrtRunner(path, RuntimeOptions(intra_op_threads=1, graph_level="disable"))
    except Exception as e:
        raise RuntimeError(f"the float16 model cannot be loaded by ONNX Runtime on the CPU: {first_line(e)}; "
                           "add the op type it names to op_block_list to keep it in float32") from e


__all__ = ["OnnxFp16FromOnnx", "OnnxFp16Params", "Fp16Config", "NOTE"]
