"""OpenVinoQuantized and OpenVinoWeightCompressed: NNCF int8 post-training quantization of an OpenVINO IR."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, List, Optional

from navbuild.runners.openvino_runner import ir_size, numpy_dtype, port_name, read_model, save_ir
from navbuild.samples import read_npz
from navbuild.settings import params_of, regex_problem, setting
from navbuild.steps.base import Step, StepContext
from navbuild.steps.reference import SAMPLES_FILE

PRESETS: tuple[str, ...] = ("performance", "mixed")
MODEL_TYPES: tuple[str, ...] = ("transformer",)
WEIGHT_MODES: tuple[str, ...] = ("int8_asym", "int8_sym")


def _model_type_problem(value: str) -> str | None:
    return None if value in MODEL_TYPES else f"'{value}' must be null or 'transformer'"


@dataclass
class OpenVinoQuantConfig:
    """The recipe's ``openvino.quantization``: NNCF post-training int8 quantization (openvino-int8)."""

    # "auto" is NNCF's own default: "mixed" (asymmetric activations) for model_type transformer,
    # else "performance" (symmetric). Asymmetric activations are unsigned, which the int8 dot
    # product (VNNI, u8 x s8) takes as they are: MiniLM int8 ran 28.4 ms mixed against 32.9 ms
    # performance (batch 8, 2 threads), and mixed was more accurate (pooled cosine 0.9971/0.9969).
    # The planner resolves "auto" (planning.planner.nncf_preset): the step's params name the preset that ran.
    preset: str = setting("auto", choices=("auto",) + PRESETS,
                          doc="performance: symmetric activations; mixed: asymmetric; auto: mixed for transformers")
    subset_size: int = setting(300, doc="calibration samples NNCF reads at most")
    fast_bias_correction: bool = setting(True, doc="false: NNCF's slower, more exact bias correction")
    model_type: Optional[str] = setting(None, choices=MODEL_TYPES, check=_model_type_problem,
                                        doc="null (generic), or transformer (NNCF's transformer patterns)")
    ignored_patterns: List[str] = setting(factory=list, check=regex_problem,
                                          doc="node-name regexes kept in float (nncf.IgnoredScope)")


@dataclass
class OpenVinoConfig:
    """The recipe's ``openvino``: how the OpenVINO IR is made and compressed."""

    source: str = setting("onnx", choices=("onnx", "torch"),
                          doc="what the IR is converted from: onnx (the onnx variant's model) or torch "
                              "(the source module, through OpenVINO's PyTorch frontend; needs a torch source)")
    quantization: OpenVinoQuantConfig = setting(factory=OpenVinoQuantConfig)
    weight_compression: str = setting("int8_asym", choices=WEIGHT_MODES,
                                      doc="nncf.compress_weights mode of openvino-int8-wo")


OpenVinoQuantizedParams = params_of(OpenVinoQuantConfig, "OpenVinoQuantizedParams", __name__)
OpenVinoWeightCompressedParams = params_of(OpenVinoConfig, "OpenVinoWeightCompressedParams", __name__,
                                           only=("weight_compression",), rename={"weight_compression": "mode"})


class OpenVinoQuantized(Step):
    """Quantize weights and activations to int8 with ``nncf.quantize``, calibrated on the reference samples.

    The result holds FakeQuantize nodes; the CPU plugin runs them as int8 kernels when it
    compiles the model.
    """

    name: ClassVar[str] = "OpenVinoQuantized"
    version: ClassVar[int] = 1
    Params: ClassVar[type] = OpenVinoQuantizedParams
    requires: ClassVar[tuple[str, ...]] = ("openvino", "nncf")
    tools: ClassVar[tuple[str, ...]] = ("openvino", "nncf")

    def run(self, params: OpenVinoQuantizedParams, ctx: StepContext) -> dict:
        check_quant_params(params)
        import nncf


        model = read_model(ctx.inputs["openvino"])
        batches = calibration_batches(model, ctx.inputs["reference"] / SAMPLES_FILE)
        used = min(params.subset_size, len(batches))
        print(f"nncf.quantize: preset {params.preset}, model_type {params.model_type}, "
              f"{used} calibration sample(s), ignoring {list(params.ignored_patterns)}", flush=True)
        quantized = nncf.quantize(
            model, nncf.Dataset(batches),
            preset=getattr(nncf.QuantizationPreset, params.preset.upper()),
            subset_size=params.subset_size,
            fast_bias_correction=params.fast_bias_correction,
            model_type=nncf.ModelType.TRANSFORMER if params.model_type == "transformer" else None,
            ignored_scope=(nncf.IgnoredScope(patterns=list(params.ignored_patterns))
                           if params.ignored_patterns else None))
        fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
        print(f"{fake_quantize} FakeQuantize node(s) inserted", flush=True)
        if fake_quantize == 0:
            raise nothing_quantized("nncf.quantize inserted no FakeQuantize node", model,
                                    "openvino.quantization.ignored_patterns / model_type")
        save_ir(quantized, ctx.out)
        return {"preset": params.preset, "subset_size": params.subset_size,
                "model_type": params.model_type, "size_bytes": ir_size(ctx.out),
                "calibration_samples": used, "fake_quantize": fake_quantize}


class OpenVinoWeightCompressed(Step):
    """Store the weights of MatMul/Conv/Gather as int8 with ``nncf.compress_weights`` (activations stay float)."""

    name: ClassVar[str] = "OpenVinoWeightCompressed"
    version: ClassVar[int] = 2  # 2: the count of int8 weights in the result (zero: a failed conversion)
    Params: ClassVar[type] = OpenVinoWeightCompressedParams
    requires: ClassVar[tuple[str, ...]] = ("openvino", "nncf")
    tools: ClassVar[tuple[str, ...]] = ("openvino", "nncf")

    def run(self, params: OpenVinoWeightCompressedParams, ctx: StepContext) -> dict:
        if params.mode not in WEIGHT_MODES:
            raise ValueError(f"mode '{params.mode}' is not one of {WEIGHT_MODES}")
        import nncf


        model = read_model(ctx.inputs["openvino"])
        print(f"nncf.compress_weights: mode {params.mode}", flush=True)
        compressed = nncf.compress_weights(model, mode=getattr(nncf.CompressWeightsMode,
                                                                params.mode.upper()))
        weights = sum(op.get_type_name() == "Constant" and op.get_element_type().get_type_name() in ("u8", "i8")
                      for op in compressed.get_ops())
        print(f"{weights} weight(s) stored as int8", flush=True)
        if weights == 0:
            raise nothing_quantized("nncf.compress_weights stored no weight as int8", model,
                                    "openvino.weight_compression")
        save_ir(compressed, ctx.out)
        return {"mode": params.mode, "size_bytes": ir_size(ctx.out), "compressed_weights": weights}


def check_quant_params(params: Any) -> None:
    """The ``openvino.quantization`` values a step received (a Params made by hand skips the recipe's checks)."""
    if params.preset not in PRESETS:
        raise ValueError(f"preset '{params.preset}' is not one of {PRESETS}")
    if params.model_type is not None and params.model_type not in MODEL_TYPES:
        raise ValueError(f"model_type '{params.model_type}' is not one of {MODEL_TYPES} or None")
    if params.subset_size < 1:
        raise ValueError(f"subset_size {params.subset_size} must be >= 1")


def nothing_quantized(what: str, model: Any, knobs: str) -> RuntimeError:
    """The failure of an int8 step that quantized nothing: its output would be an fp32 model
    reported as int8 (bit-identical outputs, fp32 speed)."""
    from collections import Counter

    ops = Counter(op.get_type_name() for op in model.get_ops()
                  if op.get_type_name() not in ("Parameter", "Result", "Constant"))
    shown = ", ".join(f"{n} x{c}" for n, c in ops.most_common(6)) or "none"
    return RuntimeError(f"{what}: nothing in this model was quantized, so the int8 variant would be the fp32 "
                        f"model under another name (the model's ops: {shown}); int8 needs MatMul/Convolution "
                        f"ops outside the ignored scope (check {knobs}), else leave int8 out for this model")


def calibration_batches(model: Any, samples_path: Path) -> list[dict[str, Any]]:
    """One batch-of-1 feed dict per sample row, holding only the model's inputs in their declared dtypes.

    Batch 1 keeps every calibration item the same shape whatever the sample count, and NNCF's
    ``subset_size`` then counts samples rather than batches. A model that fixes its batch at N
    (an ONNX file with a static batch dim) gets full batches of N rows instead.
    """

    samples = read_npz(samples_path)
    ports = [(port_name(p, f"input_{i}"), numpy_dtype(p.get_element_type()))
             for i, p in enumerate(model.inputs)]
    missing = [n for n, _ in ports if n not in samples]
    if missing:
        raise ValueError(f"{samples_path.name} has no array for model input(s) {', '.join(missing)}; "
                         f"it has {', '.join(samples) or 'none'}")
    rows = next(iter(samples.values())).shape[0]
    step = _static_batch(model) or 1

    def row(i: int) -> dict[str, Any]:
        return {n: samples[n][i:i + step] if d is None else samples[n][i:i + step].astype(d)
                for n, d in ports}

    return [row(i) for i in range(0, rows - step + 1, step)]


def _static_batch(model: Any) -> int | None:
    """The batch size a model fixes (dim 0 static on every input), else None."""
    sizes = set()
    for port in model.inputs:
        shape = port.get_partial_shape()
        if shape.rank.is_dynamic or shape.rank.get_length() == 0 or shape[0].is_dynamic:
            return None
        sizes.add(shape[0].get_length())
    return sizes.pop() if len(sizes) == 1 else None


__all__ = ["OpenVinoQuantized", "OpenVinoWeightCompressed", "OpenVinoQuantConfig", "OpenVinoConfig", "OpenVinoQuantizedParams",
           "OpenVinoWeightCompressedParams", "PRESETS", "MODEL_TYPES", "WEIGHT_MODES",
           "calibration_batches", "check_quant_params", "nothing_quantized"]
