"""The recipe schema: Hydra structured configs, the single source of truth for keys, types and defaults.

Each field is declared once with :func:`navbuild.settings.setting` (default, allowed values,
bounds, doc); the sections a conversion reads are declared beside its step (whose ``Params`` are
made from them) and assembled here. ``navbuild.recipe.reference`` renders the whole reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from navbuild.device import device_problem
from navbuild.executor_settings import ExecutorConfig
from navbuild.formats.onnxruntime import ORT_BACKEND
from navbuild.runtime import RuntimeConfig
from navbuild.settings import setting
from navbuild.steps.accuracy import AccuracyAwareConfig
from navbuild.steps.correctness import MetricConfig
from navbuild.steps.drift import DriftConfig
from navbuild.steps.onnx_fp16 import Fp16Config
from navbuild.steps.onnx_from_torch import OnnxConfig
from navbuild.steps.openvino_quantized import OpenVinoConfig, OpenVinoQuantConfig
from navbuild.steps.ort_optimized import OnnxOptConfig
from navbuild.steps.ort_quantized import DynamicQuantConfig, StaticQuantConfig
from navbuild.steps.profile import ProfileConfig
from navbuild.steps.tensorrt_from_onnx import TensorRtConfig
from navbuild.steps.torchscript_from_torch import TorchScriptConfig
from navbuild.triton.model_config import INSTANCE_KINDS, WARMUP_DATA


@dataclass
class SourceConfig:
    """Where the model comes from: a torch callable or an existing ONNX file."""

    torch: Optional[str] = setting(None, doc="'package.module:function' returning a torch.nn.Module")
    kwargs: Dict[str, Any] = setting(factory=dict, doc="keyword arguments of the torch factory (JSON-able: "
                                                        "they enter the cache key)")
    onnx: Optional[str] = setting(None, doc="path to an existing .onnx file")
    torchscript: Optional[str] = setting(None, doc="a serialized torch model: TorchScript (.pt, torch.jit.save) "
                                                   "or exported program (.pt2)")
    package: Optional[str] = setting(None, doc="a .nav package written by navbuild.export: continue from it "
                                               "without the training code")
    # Files and installed distributions that define the model besides the factory's module
    # (checkpoints, helper modules, the package that ships the weights): their content or
    # version is part of the source's identity, so changing them rebuilds what depends on it.
    watch: List[str] = setting(factory=list, doc="files that define the model besides the factory's module "
                                                 "(checkpoints, helper modules): changing them rebuilds")
    packages: List[str] = setting(factory=list, doc="installed distributions that define the model (the package "
                                                    "that ships the weights): a new version rebuilds")


@dataclass
class InputConfig:
    """One model input. ``shape`` holds ints and axis names; the first axis must be ``batch``."""

    name: str = setting(MISSING, doc="the tensor's name")
    dtype: str = setting("float32", choices=("float32", "float16", "bfloat16", "float64", "int64", "int32", "int8",
                                             "uint8", "bool"))
    shape: List[Any] = setting(MISSING, doc="ints and axis names; the first axis is batch")
    range: List[float] = setting(factory=lambda: [0.0, 1.0], doc="[low, high] of generated sample values")


@dataclass
class SamplesConfig:
    """The samples every check and profile runs on: a ``.npz`` file, or generated (seeded)."""

    file: Optional[str] = setting(None, doc="a .npz file with one array per input")
    generator: Optional[str] = setting(None, doc="or 'module:function(count, seed, axes, **kwargs) -> {input name: "
                                                 "array}' (e.g. real tokenized sentences); otherwise random values "
                                                 "in each input's range")
    generator_kwargs: Dict[str, Any] = setting(factory=dict, doc="keyword arguments of the generator")
    count: int = setting(8, minimum=1, doc="samples generated")
    seed: int = setting(0, doc="seed of generated samples and example inputs")
    axes: Dict[str, int] = setting(factory=dict, minimum=1, doc="size of each dynamic axis except batch")


@dataclass
class QuantizationConfig:
    """ONNX Runtime int8 quantization (onnx-int8-dynamic, onnx-int8-static, onnx-int8-aa)."""

    dynamic: DynamicQuantConfig = field(default_factory=DynamicQuantConfig)
    static: StaticQuantConfig = field(default_factory=StaticQuantConfig)
    accuracy_aware: AccuracyAwareConfig = field(default_factory=AccuracyAwareConfig)


@dataclass
class ToleranceConfig:
    """An element passes when |variant - source| <= atol + rtol*|source| + range_rtol*range, range
    being that output's max - min in the source's outputs; with ``cosine_min``, every sample's
    cosine similarity must reach it too."""

    atol: float = setting(1e-4, doc="absolute tolerance")
    rtol: float = setting(1e-3, doc="tolerance relative to |source|")
    range_rtol: float = setting(0.0, minimum=0, note="a fraction of the output's range")
    cosine_min: Optional[float] = setting(None, check=lambda v: None if -1.0 <= v <= 1.0 else
                                          f"{v} must be within [-1, 1]",
                                          doc="every sample's cosine similarity must reach it, within [-1, 1]")


def _precision_tolerances() -> Dict[str, ToleranceConfig]:
    # Reduced precisions get a scale-aware budget: a fraction of each output's range plus a
    # cosine floor. A fixed atol is scale-blind: 0.1 failed int8 logits of range ~100 at cosine
    # 0.999 and passed 0.001 probabilities that were 100% off. fp32 uses correctness.atol/rtol.
    return {"bf16": ToleranceConfig(0.0, 0.0, range_rtol=0.05, cosine_min=0.995),
            "fp16": ToleranceConfig(0.0, 0.0, range_rtol=0.01, cosine_min=0.999),
            "int8": ToleranceConfig(0.0, 0.0, range_rtol=0.1, cosine_min=0.99),
            # TensorRT's fp8 (e4m3: 3 mantissa bits) errs about as much as int8
            "fp8": ToleranceConfig(0.0, 0.0, range_rtol=0.1, cosine_min=0.99)}


@dataclass
class ProbeConfig:
    """Shapes and values besides the samples' that every variant must also match the source on."""

    enabled: bool = setting(True, doc="make and judge the probes")
    axes: Dict[str, List[int]] = setting(factory=dict, doc="sizes per non-batch dynamic axis, e.g. {seq: [17, 300]}; "
                                                           "an axis not named gets two: about half and about 1.5x the "
                                                           "samples' size (128 -> 65, 193). A size the source itself "
                                                           "rejects is skipped")
    batch_sizes: Optional[List[int]] = setting(None, minimum=1, doc="batches probed at the samples' axis sizes; "
                                                                    "null: 1 and 3, less those profiled (never only "
                                                                    "the export's batch 2)")
    rows: int = setting(3, minimum=1, doc="the batch of each axis and stressed-values probe")
    stress: bool = setting(True, doc="exact-precision (fp32) variants also see stressed values: floats x -2, "
                                     "integers redrawn in range")


@dataclass
class CorrectnessConfig:
    """How every variant is checked against the source."""

    atol: float = setting(1e-4, minimum=0, doc="fp32 tolerances")
    rtol: float = setting(1e-3, minimum=0)
    precisions: Dict[str, ToleranceConfig] = setting(factory=_precision_tolerances,
                                                     doc="budget per reduced precision (bf16, fp16, int8, fp8)")
    outputs: Dict[str, ToleranceConfig] = setting(factory=dict, doc="per output, all precisions")
    metric: Optional[MetricConfig] = setting(None, doc="a user metric that judges the outputs")
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    accept_trace_risk: bool = setting(False, doc="a variant built from a trace that some conversion of this model "
                                                 "found unreliable (a TracerWarning, a trace that diverged, a branch "
                                                 "torch.export refused) is not chosen as best unless this is true")


@dataclass
class SelectConfig:
    """How the best variant is chosen among the correct ones."""

    objective: str = setting("throughput", choices=("throughput", "latency"))
    batch_size: Optional[int] = setting(None, doc="default: the largest profiled batch size")
    percentile: str = setting("p50", choices=("p50", "p90", "p95", "p99"), doc="for objective=latency")
    noise: float = setting(0.05, check=lambda v: None if 0 <= v < 1 else f"{v} must be between 0 and 1",
                           doc="differences below this relative margin are ties (simpler wins), in [0, 1)")


@dataclass
class TritonServerConfig:
    """Which Triton server runs the search and the validation."""

    path: Optional[str] = setting(None, doc="another tritonserver binary; default: the one nvidia-pytriton bundles")
    url: Optional[str] = setting(None, doc="an already running server ('host:port', HTTP) for the validation")
    grpc_url: Optional[str] = setting(None, doc="its gRPC 'host:port' (unset: that server is checked over HTTP only)")
    startup_timeout_s: float = setting(120.0, above=0)


@dataclass
class TritonSearchConfig:
    """The model configurations to measure (their cartesian product; Triton's default is always added)."""

    max_batch_sizes: List[int] = setting(factory=lambda: [8], minimum=1)
    instance_counts: List[int] = setting(factory=lambda: [1, 2], minimum=1, doc="on KIND_GPU: instances per GPU")
    instance_kind: Optional[str] = setting(None, choices=INSTANCE_KINDS,
                                           doc="null: from the deployed variant's device (KIND_GPU for a GPU "
                                               "variant or a cuda recipe device, else KIND_CPU)")
    gpus: List[int] = setting(factory=list, minimum=0, doc="KIND_GPU: the GPUs that get instance_counts instances "
                                                          "each, as the server numbers the GPUs it sees; empty: [0] "
                                                          "(a cuda:N build's servers see only GPU N, as 0)")
    accelerators: List[str] = setting(factory=lambda: ["none"], choices=("none", "tensorrt"),
                                      doc="ONNX Runtime on KIND_GPU: the GPU execution accelerators to try "
                                          "(tensorrt: the TensorRT execution provider, set in triton.tensorrt)")
    dynamic_batching: List[bool] = setting(factory=lambda: [False, True])
    cuda_graphs: List[bool] = setting(factory=lambda: [False], doc="TensorRT engines (tensorrt_plan, KIND_GPU): "
                                                                   "whether the backend replays CUDA graphs; "
                                                                   "[false, true] tries both")
    max_queue_delays_us: List[int] = setting(factory=lambda: [0], minimum=0)
    backend_options: Dict[str, Dict[str, List[Any]]] = setting(
        factory=dict, doc="per native backend, option name -> values to try, e.g. {onnxruntime_onnx: "
                          "{intra_op_thread_count: [1, 2]}}; names as the backend's config.pbtxt spells them")


@dataclass
class TritonLoadConfig:
    """The load perf_analyzer applies to every configuration."""

    concurrency: List[int] = setting(factory=list, minimum=1, doc="empty: automatic (1, 2, 4, ... max_concurrency)")
    max_concurrency: int = setting(8, minimum=1)
    batch_size: int = setting(1, minimum=1, doc="the batch of each client request")
    measurement_interval_ms: int = setting(1000, minimum=1)
    stability_percentage: int = setting(15, minimum=1, doc="perf_analyzer: 3 windows within this spread count as stable")
    max_trials: int = setting(10, minimum=1)


@dataclass
class TritonConstraintsConfig:
    """What a configuration must meet to be chosen (None: no bound)."""

    p99_latency_ms: Optional[float] = setting(None, above=0, note="or null for no bound")
    min_throughput: Optional[float] = setting(None, above=0, note="or null for no bound", doc="inferences per second")
    max_memory_mb: Optional[float] = setting(None, above=0, note="or null for no bound", doc="server CPU memory")
    max_gpu_memory_mb: Optional[float] = setting(None, above=0, note="or null for no bound",
                                                 doc="GPU memory in use while serving (Model Analyzer's gpu_used_memory)")


@dataclass
class TritonTensorRTConfig:
    """ONNX Runtime's TensorRT accelerator on KIND_GPU (triton.search.accelerators: [tensorrt])."""

    precision_mode: str = setting("FP16", choices=ORT_BACKEND.gpu_accelerators["tensorrt"]["precision_mode"].choices)
    max_workspace_size_bytes: int = setting(1 << 30, minimum=1, doc="scratch GPU memory TensorRT may use")
    trt_engine_cache_enable: bool = setting(False, doc="keep built engines (in the server's working folder) so a "
                                                       "restart does not rebuild them")


@dataclass
class TritonConfig:
    """Deploy the best variants to Triton and search its model configuration (off unless enabled)."""

    enabled: bool = setting(False, doc="deploy and search (the section is checked only when on)")
    variants: List[str] = setting(factory=list, doc="empty: the top `top` correct deployable variants")
    top: int = setting(1, minimum=1, doc="how many of the best correct deployable variants")
    server: TritonServerConfig = field(default_factory=TritonServerConfig)
    search: TritonSearchConfig = field(default_factory=TritonSearchConfig)
    load: TritonLoadConfig = field(default_factory=TritonLoadConfig)
    constraints: TritonConstraintsConfig = field(default_factory=TritonConstraintsConfig)
    tensorrt: TritonTensorRTConfig = field(default_factory=TritonTensorRTConfig)
    warmup: Optional[bool] = setting(None, doc="model_warmup requests at each batch size before a model is ready; "
                                               "null: on for KIND_GPU deployments, off for KIND_CPU")
    warmup_data: str = setting("zero", choices=WARMUP_DATA,
                               doc="random: random floating-point inputs (integer inputs stay zero)")
    objective: str = setting("throughput", choices=("throughput", "latency", "weighted"))
    weights: Dict[str, float] = setting(factory=lambda: {"throughput": 1.0, "latency": 1.0},
                                        doc="of throughput and latency, for the weighted objective")
    validate: bool = setting(True, doc="serve the winner and check its outputs through HTTP and gRPC")
    protocols: List[str] = setting(factory=lambda: ["http", "grpc"], choices=("http", "grpc"))


@dataclass
class CacheConfig:
    """Where built targets are stored."""

    dir: Optional[str] = setting(None, doc="default: $NAVBUILD_CACHE_DIR, else ./.navbuild-cache")


@dataclass
class Recipe:
    """A whole recipe. Every key a recipe file or an override may set is declared here."""

    name: str = setting("", doc="the recipe's name (the default output_dir is build/<name>)")
    description: str = ""
    source: SourceConfig = field(default_factory=SourceConfig)
    inputs: List[InputConfig] = setting(factory=list, doc="the model's inputs")
    outputs: List[str] = setting(factory=list, doc="the model's output names")
    samples: SamplesConfig = field(default_factory=SamplesConfig)
    formats: List[str] = field(default_factory=lambda: ["torch", "onnx", "onnx-opt"])
    precisions: List[str] = field(default_factory=lambda: ["fp32"])
    variants: List[str] = setting(factory=list, doc="explicit variant names (the format families' variants, navbuild/formats); non-empty replaces formats x precisions")
    device: str = setting("auto", check=device_problem,
                          doc="where the variants run: auto (the first CUDA GPU torch can use, else cpu), cpu, cuda "
                              "or cuda:N (GPU N as nvidia-smi numbers it; the build's steps see only it); picks the "
                              "variants of that kind among formats x precisions")
    onnx: OnnxConfig = field(default_factory=OnnxConfig)
    onnx_opt: OnnxOptConfig = field(default_factory=OnnxOptConfig)
    torchscript: TorchScriptConfig = field(default_factory=TorchScriptConfig)
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    openvino: OpenVinoConfig = field(default_factory=OpenVinoConfig)
    fp16: Fp16Config = field(default_factory=Fp16Config)
    tensorrt: TensorRtConfig = field(default_factory=TensorRtConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    correctness: CorrectnessConfig = field(default_factory=CorrectnessConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    triton: TritonConfig = field(default_factory=TritonConfig)
    output_dir: Optional[str] = setting(None, doc="default: build/<name>")
    cache: CacheConfig = field(default_factory=CacheConfig)
    keep_going: bool = setting(True, doc="a failing target does not stop its siblings")
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)


#: every section of the recipe, those declared beside their steps included, is importable from here
__all__ = ["Recipe", "SourceConfig", "InputConfig", "SamplesConfig", "OnnxConfig", "OnnxOptConfig", "TorchScriptConfig",
           "QuantizationConfig", "DynamicQuantConfig", "StaticQuantConfig", "OpenVinoConfig", "OpenVinoQuantConfig",
           "Fp16Config", "TensorRtConfig", "RuntimeConfig", "ToleranceConfig", "ProbeConfig", "MetricConfig", "CorrectnessConfig", "DriftConfig",
           "ProfileConfig", "SelectConfig", "TritonServerConfig", "TritonSearchConfig", "TritonLoadConfig",
           "TritonConstraintsConfig", "TritonTensorRTConfig", "TritonConfig", "CacheConfig", "ExecutorConfig"]
