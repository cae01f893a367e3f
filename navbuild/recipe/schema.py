"""The recipe schema: Hydra structured configs, the single source of truth for keys, types and defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from navbuild.measure_conditions import DEFAULT_MAX_BACKGROUND_LOAD

CALIBRATIONS = ("minmax", "entropy", "percentile")
EXPORTERS = ("torchscript", "dynamo")
OPENVINO_PRESETS = ("auto", "performance", "mixed")
OPENVINO_SOURCES = ("onnx", "torch")
ORT_LEVELS = ("basic", "extended", "all")
RUNTIME_GRAPH_LEVELS = ("disable", "basic", "extended", "all")
FUSION_MODEL_TYPES = ("bert", "bart", "gpt2", "t5", "vit", "clip", "unet", "vae")
DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int8", "uint8", "bool")
OBJECTIVES = ("throughput", "latency")
LATENCY_PERCENTILES = ("p50", "p90", "p95", "p99")


@dataclass
class SourceConfig:
    """Where the model comes from: a torch callable or an existing ONNX file."""

    torch: Optional[str] = None  # "package.module:function" returning a torch.nn.Module
    kwargs: Dict[str, Any] = field(default_factory=dict)
    onnx: Optional[str] = None  # path to an existing .onnx file
    # a serialized torch model: TorchScript (.pt, torch.jit.save) or exported program (.pt2)
    torchscript: Optional[str] = None
    # a .nav package written by navbuild.export: continue from it without the training code
    package: Optional[str] = None
    # Files and installed distributions that define the model besides the factory's module
    # (checkpoints, helper modules, the package that ships the weights): their content or
    # version is part of the source's identity, so changing them rebuilds what depends on it.
    watch: List[str] = field(default_factory=list)
    packages: List[str] = field(default_factory=list)


@dataclass
class InputConfig:
    """One model input. ``shape`` holds ints and axis names; the first axis must be ``batch``."""

    name: str = MISSING
    dtype: str = "float32"
    shape: List[Any] = MISSING
    range: List[float] = field(default_factory=lambda: [0.0, 1.0])


@dataclass
class SamplesConfig:
    """The samples every check and profile runs on: a ``.npz`` file, or generated (seeded)."""

    file: Optional[str] = None
    # or a generator "module:function(count, seed, axes, **kwargs) -> {input name: array}"
    # (e.g. real tokenized sentences); otherwise random values in each input's range
    generator: Optional[str] = None
    generator_kwargs: Dict[str, Any] = field(default_factory=dict)
    count: int = 8
    seed: int = 0
    axes: Dict[str, int] = field(default_factory=dict)  # size of each dynamic axis except batch


@dataclass
class OnnxConfig:
    opset: int = 17
    exporter: str = "torchscript"


@dataclass
class OnnxOptConfig:
    level: str = "all"
    fusion: Optional[str] = None  # onnxruntime transformer optimizer model type, e.g. "bert"
    num_heads: int = 0  # 0: let the optimizer detect
    hidden_size: int = 0


@dataclass
class TorchScriptConfig:
    method: str = "trace"  # trace | script
    freeze: bool = True


@dataclass
class DynamicQuantConfig:
    per_channel: bool = True
    reduce_range: bool = False
    weight_type: str = "qint8"
    exclude: List[str] = field(default_factory=list)  # node name / op type patterns kept in float
    op_types: List[str] = field(default_factory=list)  # empty: ONNX Runtime's default set


@dataclass
class StaticQuantConfig:
    calibration: str = "minmax"
    per_channel: bool = True
    reduce_range: bool = False
    activation_type: str = "quint8"
    weight_type: str = "qint8"
    exclude: List[str] = field(default_factory=list)
    op_types: List[str] = field(default_factory=list)
    max_samples: int = 64
    batch_size: int = 1


@dataclass
class QuantizationConfig:
    dynamic: DynamicQuantConfig = field(default_factory=DynamicQuantConfig)
    static: StaticQuantConfig = field(default_factory=StaticQuantConfig)


@dataclass
class OpenVinoQuantConfig:
    # "auto" is NNCF's own default: "mixed" (asymmetric activations) for model_type transformer,
    # else "performance" (symmetric). Asymmetric activations are unsigned, which the int8 dot
    # product (VNNI, u8 x s8) takes as they are: MiniLM int8 ran 28.4 ms mixed against 32.9 ms
    # performance (batch 8, 2 threads), and mixed was more accurate (pooled cosine 0.9971/0.9969).
    preset: str = "auto"
    subset_size: int = 300
    fast_bias_correction: bool = True
    model_type: Optional[str] = None  # "transformer" for transformer models
    ignored_patterns: List[str] = field(default_factory=list)


@dataclass
class OpenVinoConfig:
    # what the IR is converted from: "onnx" (the onnx variant's model) or "torch" (the source
    # module, through OpenVINO's PyTorch frontend; needs a torch source)
    source: str = "onnx"
    quantization: OpenVinoQuantConfig = field(default_factory=OpenVinoQuantConfig)
    weight_compression: str = "int8_asym"


@dataclass
class Fp16Config:
    keep_io_types: bool = True


@dataclass
class RuntimeConfig:
    """Runtime options for checks and profiles (part of their cache keys)."""

    intra_op_threads: int = 2
    inter_op_threads: int = 1
    graph_level: str = "all"
    # ONNX Runtime only: treat denormal floats as zero (session.set_denormal_as_zero). Masked
    # attention (padded sentences) makes denormals; keeping them cost MiniLM's ONNX graph ~20%.
    flush_denormals: bool = True


@dataclass
class ToleranceConfig:
    """An element passes when |variant - source| <= atol + rtol*|source| + range_rtol*range, range
    being that output's max - min in the source's outputs; with ``cosine_min``, every sample's
    cosine similarity must reach it too."""

    atol: float = 1e-4
    rtol: float = 1e-3
    range_rtol: float = 0.0
    cosine_min: Optional[float] = None


def _precision_tolerances() -> Dict[str, ToleranceConfig]:
    # Reduced precisions get a scale-aware budget: a fraction of each output's range plus a
    # cosine floor. A fixed atol is scale-blind: 0.1 failed int8 logits of range ~100 at cosine
    # 0.999 and passed 0.001 probabilities that were 100% off. fp32 uses correctness.atol/rtol.
    return {"bf16": ToleranceConfig(0.0, 0.0, range_rtol=0.05, cosine_min=0.995),
            "fp16": ToleranceConfig(0.0, 0.0, range_rtol=0.01, cosine_min=0.999),
            "int8": ToleranceConfig(0.0, 0.0, range_rtol=0.1, cosine_min=0.99)}


@dataclass
class ProbeConfig:
    """Shapes and values besides the samples' that every variant must also match the source on."""

    enabled: bool = True
    # sizes per non-batch dynamic axis, e.g. {seq: [17, 300]}; an axis not named gets two: about
    # half and about 1.5x the samples' size (128 -> 65, 193). A size the source itself rejects is skipped.
    axes: Dict[str, List[int]] = field(default_factory=dict)
    # batches probed at the samples' axis sizes; null: 1 and 3, less those profiled (never only
    # the export's batch 2)
    batch_sizes: Optional[List[int]] = None
    rows: int = 3  # the batch of each axis and stressed-values probe
    # exact-precision (fp32) variants also see stressed values: floats x -2, integers redrawn in range
    stress: bool = True


@dataclass
class MetricConfig:
    """A user metric ``module:function(reference_outputs, variant_outputs, inputs) -> {name: value}``
    and its pass condition on ``name`` (the worst value over batch sizes must satisfy min/max)."""

    function: str = MISSING
    name: str = MISSING
    min: Optional[float] = None
    max: Optional[float] = None
    # when true the metric alone decides pass/fail (tolerance figures are still reported)
    replaces_tolerance: bool = True


@dataclass
class CorrectnessConfig:
    atol: float = 1e-4  # fp32 tolerances
    rtol: float = 1e-3
    precisions: Dict[str, ToleranceConfig] = field(default_factory=_precision_tolerances)
    outputs: Dict[str, ToleranceConfig] = field(default_factory=dict)  # per output, all precisions
    metric: Optional[MetricConfig] = None
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    # a variant built from a trace that some conversion of this model found unreliable (a
    # TracerWarning, a trace that diverged, a branch torch.export refused) is not chosen as best
    # unless this is true
    accept_trace_risk: bool = False


@dataclass
class ProfileConfig:
    batch_sizes: List[int] = field(default_factory=lambda: [1, 8])
    warmup_iters: int = 6  # TorchScript needs ~5 calls before its optimized plan runs
    window_s: float = 0.5
    min_window_iters: int = 5
    stable_windows: int = 3
    stability: float = 0.1  # window medians must agree within this relative spread
    max_windows: int = 15
    pin_cores: bool = True
    finalists: int = 3  # re-measured interleaved (A B A B ...) before a winner is named; <2: off
    finalist_rounds: int = 10
    finalist_iters: int = 3  # timed runs per variant and round
    finalist_warmup_iters: int = 1  # untimed runs at the start of each variant's turn
    # Background cores busy (other processes' CPU time averaged over the measurement, from /proc)
    # above which a profile, the finalists' ranking or a Triton measurement is provisional: this
    # build uses it and says so, the next build measures it again. 0.5 suits 2-core CI runners
    # (a quarter of the machine taken by others); raise it on a many-core host. A policy, not an
    # input: it is in no cache key, so changing it re-measures nothing that was measured quietly.
    max_background_load: float = DEFAULT_MAX_BACKGROUND_LOAD
    # re-run every timed target (profiles, finalists, Triton measurements) even when cached;
    # conversions and checks stay cached (`navbuild --remeasure` sets it for one build)
    remeasure: bool = False


@dataclass
class SelectConfig:
    """How the best variant is chosen among the correct ones."""

    objective: str = "throughput"
    batch_size: Optional[int] = None  # default: the largest profiled batch size
    percentile: str = "p50"  # for objective=latency
    noise: float = 0.05  # differences below this relative margin are ties (simpler wins)


TRITON_OBJECTIVES = ("throughput", "latency", "weighted")
TRITON_PROTOCOLS = ("http", "grpc")
INSTANCE_KINDS = ("KIND_CPU", "KIND_GPU")


@dataclass
class TritonServerConfig:
    """Which Triton server runs the search and the validation."""

    path: Optional[str] = None  # another tritonserver binary; default: the one nvidia-pytriton bundles
    url: Optional[str] = None  # an already running server ("host:port", HTTP) for the validation
    grpc_url: Optional[str] = None  # its gRPC "host:port" (unset: that server is checked over HTTP only)
    startup_timeout_s: float = 120.0


@dataclass
class TritonSearchConfig:
    """The model configurations to measure (their cartesian product; Triton's default is always added)."""

    max_batch_sizes: List[int] = field(default_factory=lambda: [8])
    instance_counts: List[int] = field(default_factory=lambda: [1, 2])
    instance_kind: str = "KIND_CPU"
    dynamic_batching: List[bool] = field(default_factory=lambda: [False, True])
    max_queue_delays_us: List[int] = field(default_factory=lambda: [0])
    # per native backend, option name -> values to try, e.g.
    # {onnxruntime_onnx: {intra_op_thread_count: [1, 2]}}; names as the backend's config.pbtxt spells them
    backend_options: Dict[str, Dict[str, List[Any]]] = field(default_factory=dict)


@dataclass
class TritonLoadConfig:
    """The load perf_analyzer applies to every configuration."""

    concurrency: List[int] = field(default_factory=list)  # empty: automatic (1, 2, 4, ... max_concurrency)
    max_concurrency: int = 8
    batch_size: int = 1  # the batch of each client request
    measurement_interval_ms: int = 1000
    stability_percentage: int = 15  # perf_analyzer: 3 windows within this spread count as stable
    max_trials: int = 10


@dataclass
class TritonConstraintsConfig:
    """What a configuration must meet to be chosen (None: no bound)."""

    p99_latency_ms: Optional[float] = None
    min_throughput: Optional[float] = None  # inferences per second
    max_memory_mb: Optional[float] = None  # server CPU memory


@dataclass
class TritonConfig:
    """Deploy the best variants to Triton and search its model configuration (off unless enabled)."""

    enabled: bool = False
    variants: List[str] = field(default_factory=list)  # empty: the top `top` correct deployable variants
    top: int = 1
    server: TritonServerConfig = field(default_factory=TritonServerConfig)
    search: TritonSearchConfig = field(default_factory=TritonSearchConfig)
    load: TritonLoadConfig = field(default_factory=TritonLoadConfig)
    constraints: TritonConstraintsConfig = field(default_factory=TritonConstraintsConfig)
    objective: str = "throughput"  # throughput | latency | weighted
    weights: Dict[str, float] = field(default_factory=lambda: {"throughput": 1.0, "latency": 1.0})
    validate: bool = True  # serve the winner and check its outputs through HTTP and gRPC
    protocols: List[str] = field(default_factory=lambda: ["http", "grpc"])


@dataclass
class CacheConfig:
    dir: Optional[str] = None  # default: $NAVBUILD_CACHE_DIR, else ./.navbuild-cache


@dataclass
class Recipe:
    """A whole recipe. Every key a recipe file or an override may set is declared here."""

    name: str = ""
    description: str = ""
    source: SourceConfig = field(default_factory=SourceConfig)
    inputs: List[InputConfig] = field(default_factory=list)
    outputs: List[str] = field(default_factory=list)
    samples: SamplesConfig = field(default_factory=SamplesConfig)
    formats: List[str] = field(default_factory=lambda: ["torch", "onnx", "onnx-opt"])
    precisions: List[str] = field(default_factory=lambda: ["fp32"])
    # explicit variant names (the format families' variants, navbuild/formats); non-empty replaces formats x precisions
    variants: List[str] = field(default_factory=list)
    onnx: OnnxConfig = field(default_factory=OnnxConfig)
    onnx_opt: OnnxOptConfig = field(default_factory=OnnxOptConfig)
    torchscript: TorchScriptConfig = field(default_factory=TorchScriptConfig)
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    openvino: OpenVinoConfig = field(default_factory=OpenVinoConfig)
    fp16: Fp16Config = field(default_factory=Fp16Config)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    correctness: CorrectnessConfig = field(default_factory=CorrectnessConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    triton: TritonConfig = field(default_factory=TritonConfig)
    output_dir: Optional[str] = None  # default: build/<name>
    cache: CacheConfig = field(default_factory=CacheConfig)
    keep_going: bool = True  # a failing target does not stop its siblings
