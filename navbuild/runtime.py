"""How a variant's model is made and run: the torch factory of a source and a runtime's options.

Shared by the runners, the steps and the format families, below all of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from navbuild.settings import setting

#: the factory of a source given as a serialized file (TorchScript ``.pt`` or exported
#: program ``.pt2``): the file itself arrives as the step's ``source`` input, so the code
#: that defined the model is not needed.
SERIALIZED_SOURCE = "navbuild:serialized-source"


@dataclass(frozen=True)
class TorchFactory:
    """A torch model given as an importable callable and its keyword arguments.

    ``factory`` is ``"package.module:function"``; the function returns a ``torch.nn.Module``.
    ``kwargs`` must be JSON-able because it enters the cache key.
    """

    factory: str
    kwargs: Mapping[str, Any]


#: ONNX Runtime graph optimization levels by their recipe names.
GRAPH_LEVELS: tuple[str, ...] = ("disable", "basic", "extended", "all")


@dataclass
class RuntimeConfig:
    """The recipe's ``runtime``: options for checks and profiles (part of their cache keys, as
    :class:`RuntimeOptions`)."""

    intra_op_threads: int = setting(2, minimum=1)
    inter_op_threads: int = setting(1, minimum=1, doc="ONNX Runtime only")
    graph_level: str = setting("all", choices=GRAPH_LEVELS, doc="ONNX Runtime only")
    # Masked attention (padded sentences) makes denormals; keeping them cost MiniLM's ONNX graph ~20%.
    flush_denormals: bool = setting(True, doc="ONNX Runtime only: treat denormal floats as zero "
                                              "(session.set_denormal_as_zero)")


@dataclass(frozen=True)
class RuntimeOptions:
    """How a variant is executed: thread counts and (ONNX Runtime only) the graph optimization level
    and denormal flushing.

    Not made from :class:`RuntimeConfig` with ``params_of``: the planner resolves it per variant
    (graph level "n/a" and one inter-op thread off ONNX Runtime, the variant's mode), and its
    defaults are a bare runtime's (denormals kept), not the recipe's."""

    intra_op_threads: int = 2
    inter_op_threads: int = 1
    graph_level: str = "all"  # disable|basic|extended|all; the torch runner ignores it
    # A runtime variant of a format, applied when the model is loaded (no conversion target):
    # torch: "" (eager fp32) | "autocast-bf16" | "cast-bf16" | "dynamic-int8" | "compile" | "compile-bf16";
    # torch-cuda: "" | "autocast-fp16" | "cast-fp16" | "autocast-bf16" | "cast-bf16" | "compile" | "compile-cudagraphs";
    # openvino: "" (f32 inference precision) | "bf16". Other runners accept only "".
    mode: str = ""
    # ONNX Runtime: flush denormals to zero (off by default: exact IEEE arithmetic, as ORT ships)
    flush_denormals: bool = False


__all__ = ["SERIALIZED_SOURCE", "TorchFactory", "GRAPH_LEVELS", "RuntimeConfig", "RuntimeOptions"]
