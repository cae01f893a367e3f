"""OrtOptimizedFromOnnx: ONNX Runtime offline graph optimization, optionally with transformer fusion."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional

from navbuild.model_io import model_file
from navbuild.runners.ort_runner import session_options
from navbuild.runtime import GRAPH_LEVELS, RuntimeOptions
from navbuild.settings import params_of, setting
from navbuild.steps.base import Step, StepContext

#: offline optimization levels: every runtime graph level but "disable"
LEVELS: tuple[str, ...] = tuple(level for level in GRAPH_LEVELS if level != "disable")
#: onnxruntime.transformers.optimizer model types a recipe may name for fusion
FUSION_MODEL_TYPES: tuple[str, ...] = ("bert", "bart", "gpt2", "t5", "vit", "clip", "unet", "vae")
#: opt_level of onnxruntime.transformers.optimizer for each level name
_TRANSFORMER_OPT_LEVEL = {"basic": 1, "extended": 2, "all": 99}
#: ONNX-domain op types that only appear in an optimized graph as the result of a fusion
_FUSED_ONNX_OPS = frozenset({"LayerNormalization", "Gelu", "RMSNormalization"})


@dataclass
class OnnxOptConfig:
    """The recipe's ``onnx_opt``: ONNX Runtime's offline graph optimization (onnx-opt)."""

    level: str = setting("all", choices=LEVELS)
    fusion: Optional[str] = setting(None, choices=FUSION_MODEL_TYPES,
                                    doc="onnxruntime transformer optimizer model type, e.g. bert; null: no fusion")
    num_heads: int = setting(0, minimum=0, note="0 = detect", doc="0: let the optimizer detect")
    hidden_size: int = setting(0, minimum=0, note="0 = detect", doc="0: let the optimizer detect")


OrtOptimizedParams = params_of(OnnxOptConfig, "OrtOptimizedParams", __name__)


class OrtOptimizedFromOnnx(Step):
    """Write the ORT-optimized graph of an ONNX model to ``model.onnx``.

    Without fusion this is ORT's own session optimizer saved offline. Note that level "all"
    adds layout transforms chosen for the CPU it runs on, so such a file is best rebuilt per
    machine type.
    """

    name: ClassVar[str] = "OrtOptimizedFromOnnx"
    version: ClassVar[int] = 1
    Params: ClassVar[type] = OrtOptimizedParams
    requires: ClassVar[tuple[str, ...]] = ("onnxruntime", "onnx")
    tools: ClassVar[tuple[str, ...]] = ("onnxruntime", "onnx")

    @classmethod
    def depends_on_hardware(cls, params: OrtOptimizedParams) -> bool:
        # Level "all" bakes layout transforms chosen for this CPU into the saved file.
        return params.level == "all"

    def run(self, params: OrtOptimizedParams, ctx: StepContext) -> dict:
        if params.level not in LEVELS:
            raise ValueError(f"level '{params.level}' is not one of {LEVELS}")
        source = model_file(ctx.inputs["onnx"])
        target = ctx.out / "model.onnx"
        before = _op_counts(source)
        if params.fusion is None:
            print(f"ORT graph optimization at level {params.level}", flush=True)
            _optimize_with_session(source, target, params.level)
        else:
            print(f"transformer optimizer: model_type {params.fusion}, level {params.level}", flush=True)
            _optimize_with_fusion(source, target, params)
        after = _op_counts(target)
        fused = {op: n - before.get(op, 0) for op, n in sorted(after.items())
                 if n > before.get(op, 0) and _is_fused(op)}
        fused_flat: dict[str, int] = {}
        for op, n in fused.items():
            short = op.split("::")[-1]
            fused_flat[short] = fused_flat.get(short, 0) + n
        print(f"nodes {sum(before.values())} -> {sum(after.values())}; fused {fused_flat}", flush=True)
        return {"level": params.level, "fusion": params.fusion, "nodes_before": sum(before.values()),
                "nodes_after": sum(after.values()), "fused_ops": fused_flat}


def _optimize_with_session(source: Path, target: Path, level: str) -> None:
    """Let an ORT session optimize the graph and write it out (the session itself is discarded)."""
    import onnxruntime as ort


    so = session_options(RuntimeOptions(graph_level=level))
    so.optimized_model_filepath = str(target)
    if source.stat().st_size > 1_800_000_000:
        # near the 2 GB protobuf limit the optimized copy must keep its weights outside
        so.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                    "model.onnx.data")
        so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes",
                                    "1024")
    ort.InferenceSession(str(source), sess_options=so, providers=["CPUExecutionProvider"])


def _optimize_with_fusion(source: Path, target: Path, params: OrtOptimizedParams) -> None:
    """Run onnxruntime.transformers' optimizer (pattern fusions ORT's session does not do)."""
    from onnxruntime.transformers.optimizer import optimize_model

    model = optimize_model(str(source), model_type=params.fusion, num_heads=params.num_heads,
                           hidden_size=params.hidden_size,
                           opt_level=_TRANSFORMER_OPT_LEVEL[params.level], use_gpu=False)
    model.save_model_to_file(str(target), use_external_data_format=source.stat().st_size > 1_800_000_000)


def _op_counts(path: Path) -> Counter[str]:
    """Node count per ``domain::op_type`` of the main graph (no weights loaded)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return Counter(f"{n.domain}::{n.op_type}" if n.domain else n.op_type for n in proto.graph.node)


def _is_fused(op: str) -> bool:
    # contrib ops (com.microsoft*) are ORT's fused kernels: Attention, SkipLayerNormalization,
    # FastGelu, BiasGelu, FusedMatMul, NCHWc convs, ...
    return op.startswith("com.microsoft") or op in _FUSED_ONNX_OPS


__all__ = ["OrtOptimizedFromOnnx", "OrtOptimizedParams", "OnnxOptConfig", "LEVELS", "FUSION_MODEL_TYPES"]
