"""The recipe schema: Hydra structured configs, the single source of truth for keys, types and defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

#: variant formats this version can build, in order of simplicity (simpler wins ties).
FORMATS = ("torch", "onnx", "onnx-opt")
PRECISIONS = ("fp32",)
EXPORTERS = ("torchscript", "dynamo")
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
class RuntimeConfig:
    """Runtime options for checks and profiles (part of their cache keys)."""

    intra_op_threads: int = 2
    inter_op_threads: int = 1
    graph_level: str = "all"


@dataclass
class CorrectnessConfig:
    atol: float = 1e-4
    rtol: float = 1e-3


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


@dataclass
class SelectConfig:
    """How the best variant is chosen among the correct ones."""

    objective: str = "throughput"
    batch_size: Optional[int] = None  # default: the largest profiled batch size
    percentile: str = "p50"  # for objective=latency
    noise: float = 0.05  # differences below this relative margin are ties (simpler wins)


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
    formats: List[str] = field(default_factory=lambda: list(FORMATS))
    precisions: List[str] = field(default_factory=lambda: ["fp32"])
    onnx: OnnxConfig = field(default_factory=OnnxConfig)
    onnx_opt: OnnxOptConfig = field(default_factory=OnnxOptConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    correctness: CorrectnessConfig = field(default_factory=CorrectnessConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    output_dir: Optional[str] = None  # default: build/<name>
    cache: CacheConfig = field(default_factory=CacheConfig)
    keep_going: bool = True  # a failing target does not stop its siblings
