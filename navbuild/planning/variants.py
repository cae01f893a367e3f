"""The variant catalogue: which variants a recipe's formats and precisions name, and how each runs.

A variant is a model form plus how it is executed. Some have a conversion target that builds
their model (``model`` names it); the rest run the source (or another variant's model) in a
runtime mode (``mode``): torch autocast, dynamic int8, torch.compile, an OpenVINO precision hint.
The order is the simplicity order: a difference within noise goes to the earlier variant.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VariantDef:
    name: str
    format: str  # the recipe format that selects it
    precision: str  # fp32 | bf16 | fp16 | int8
    runner: str  # runner format (navbuild/runners/factory.py)
    model: str | None = None  # id of the target that builds its model; None: the source itself
    mode: str = ""  # runtime mode (RuntimeOptions.mode)
    note: str = ""
    graph_level: str = ""  # ONNX Runtime graph optimization level it runs at; "" = runtime.graph_level


CATALOGUE: tuple[VariantDef, ...] = (
    VariantDef("torch", "torch", "fp32", "torch"),
    VariantDef("torchscript", "torchscript", "fp32", "torchscript", model="torchscript"),
    VariantDef("torch-export", "torch-export", "fp32", "torch-export", model="torch-export"),
    VariantDef("onnx", "onnx", "fp32", "onnx", model="onnx"),
    VariantDef("onnx-opt", "onnx-opt", "fp32", "onnx", model="onnx-opt"),
    # the onnx model with ONNX Runtime's session at each other graph optimization level
    VariantDef("onnx-disable", "onnx-levels", "fp32", "onnx", model="onnx", graph_level="disable"),
    VariantDef("onnx-basic", "onnx-levels", "fp32", "onnx", model="onnx", graph_level="basic"),
    VariantDef("onnx-extended", "onnx-levels", "fp32", "onnx", model="onnx", graph_level="extended"),
    VariantDef("openvino", "openvino", "fp32", "openvino", model="openvino"),
    # the onnx model in ONNX Runtime with OpenVINO's execution provider (the onnxruntime-openvino
    # wheel); ORT's own graph passes are off so OpenVINO receives the graph as exported
    VariantDef("onnx-openvino-ep", "onnx-openvino", "fp32", "onnx", model="onnx", mode="openvino-ep",
               graph_level="disable"),
    VariantDef("torch-compile", "torch-compile", "fp32", "torch", mode="compile"),
    VariantDef("torch-bf16-autocast", "torch", "bf16", "torch", mode="autocast-bf16"),
    VariantDef("torch-bf16", "torch", "bf16", "torch", mode="cast-bf16"),
    VariantDef("torch-compile-bf16", "torch-compile", "bf16", "torch", mode="compile-bf16"),
    VariantDef("openvino-bf16", "openvino", "bf16", "openvino", model="openvino", mode="bf16"),
    VariantDef("onnx-fp16", "onnx", "fp16", "onnx", model="onnx-fp16",
               note="fp16 is kept for GPU targets; on CPU it is usually slower than fp32"),
    VariantDef("torch-int8-dynamic", "torch", "int8", "torch", mode="dynamic-int8"),
    VariantDef("onnx-int8-dynamic", "onnx", "int8", "onnx", model="onnx-int8-dynamic"),
    VariantDef("onnx-int8-static", "onnx", "int8", "onnx", model="onnx-int8-static"),
    VariantDef("openvino-int8-wo", "openvino", "int8", "openvino", model="openvino-int8-wo"),
    VariantDef("openvino-int8", "openvino", "int8", "openvino", model="openvino-int8"),
)

BY_NAME = {v.name: v for v in CATALOGUE}

#: formats that run or convert the torch source (not available for an ONNX-file source)
TORCH_SOURCE_FORMATS = ("torch", "torchscript", "torch-export", "torch-compile")


#: what cannot run on a serialized torch source, by the file's kind: TorchScript (``.pt``) or
#: an exported program (``.pt2``); target id or variant name -> why
_NOT_ON_SERIALIZED: dict[str, dict[str, str]] = {
    "torchscript": {
        "torch-compile": "torch.compile cannot compile a TorchScript module",
        "torch-compile-bf16": "torch.compile cannot compile a TorchScript module",
        "torch-int8-dynamic": "dynamic int8 quantizes nn.Linear modules, which a TorchScript module does not expose",
        "torch-export": "torch.export cannot export a TorchScript module",
    },
    "exported-program": {
        "torch-int8-dynamic": "dynamic int8 quantizes nn.Linear modules, which an exported program does not have",
    },
}


def unavailable_on_serialized(source_file: str, name: str) -> str:
    """Why variant or conversion ``name`` cannot run on the serialized torch source ``source_file``
    ("" when it can)."""
    kind = "exported-program" if source_file.endswith(".pt2") else "torchscript"
    why = _NOT_ON_SERIALIZED[kind].get(name, "")
    return f"{why} (the source is {source_file})" if why else ""


def selected(formats: list[str], precisions: list[str], explicit: list[str]) -> list[VariantDef]:
    """The variants a recipe asks for, in catalogue (simplicity) order."""
    if explicit:
        return [v for v in CATALOGUE if v.name in explicit]
    return [v for v in CATALOGUE if v.format in formats and v.precision in precisions]


def simplicity(variant: str) -> int:
    """Lower is simpler: the catalogue order."""
    names = [v.name for v in CATALOGUE]
    return names.index(variant) if variant in names else len(names)
