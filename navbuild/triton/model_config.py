"""One Triton model configuration (a point of the search space) and its ``config.pbtxt`` text."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence, Union

from navbuild import formats
from navbuild.formats.base import BackendOption, TritonBackend
from navbuild.formats.onnxruntime import ORT_GRAPH_LEVELS
from navbuild.key_fields import added, key_data

#: what ``ModelConfig.backend_parameters`` and ``check_backend_parameters`` accept
ParamsLike = Union[Mapping[str, Any], Iterable[tuple[str, Any]]]

INSTANCE_KINDS: tuple[str, ...] = ("KIND_CPU", "KIND_GPU")


@dataclass(frozen=True)
class TritonTensor:
    """A model input or output as ``config.pbtxt`` declares it."""

    name: str
    dtype: str  # numpy dtype name: "float32", "int64", "float16", "int32", "bool", "bfloat16", "object", ...
    dims: tuple[int, ...]  # WITHOUT the batch dimension; -1 = dynamic


_BOOL_VALUES = ("true", "false", "yes", "no", "on", "off", "1", "0")


#: backends no format family owns: the python backend that serves navbuild's local models
OWN_BACKENDS: tuple[TritonBackend, ...] = (
    TritonBackend("python", "python", "", ("model.py",), options=None),
)

def backends() -> dict[str, TritonBackend]:
    """Every native backend, by name: the format families', then navbuild's own."""
    declared = formats.triton_backends()
    return {b.name: b for b in (*declared, *OWN_BACKENDS)}


#: parameter names write_local uses for a local model's own settings; not for recipes
RESERVED_PREFIX = "navbuild_"

#: numpy dtype name -> config.pbtxt data type
DATA_TYPES: dict[str, str] = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32", "uint64": "TYPE_UINT64",
    "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
    "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64",
    "bfloat16": "TYPE_BF16",  # not a numpy dtype, but a Triton type (torch and ONNX have it)
    "object": "TYPE_STRING", "bytes": "TYPE_STRING", "str": "TYPE_STRING", "string": "TYPE_STRING",
}


def _text(value: Any) -> str:
    """A parameter value as the string config.pbtxt carries (YAML booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parameter_pairs(params: ParamsLike) -> tuple[tuple[str, str], ...]:
    """``params`` as sorted ``(key, value)`` string pairs (the form ``ModelConfig`` keeps)."""
    items = params.items() if isinstance(params, Mapping) else params
    return tuple(sorted((str(k), _text(v)) for k, v in items))


#: how warm-up requests fill their inputs: "zero" (zero_data everywhere), "random" (random_data for
#: floating-point inputs, zeros for integer and boolean ones: random token ids would index outside
#: an embedding table and fail the model's load)
WARMUP_DATA: tuple[str, ...] = ("zero", "random")


@dataclass(frozen=True)
class Warmup:
    """The ``model_warmup`` requests Triton runs on each instance before it is ready: one per batch size.

    ``dims``: an input's dims (without the batch dim) where its config dims have dynamic (-1)
    axes, as (name, dims) pairs: a warm-up request needs a concrete shape.
    """

    batch_sizes: tuple[int, ...]
    data: str = "zero"
    dims: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch_sizes", tuple(int(b) for b in self.batch_sizes))
        object.__setattr__(self, "dims", tuple((str(n), tuple(int(d) for d in dims)) for n, dims in self.dims))


@dataclass(frozen=True)
class ModelConfig:
    """One point of the search space (what Model Analyzer would vary).

    ``backend_parameters`` may be given as a mapping; it is kept as sorted string pairs so that
    equal configurations compare, hash and label equal.
    """

    max_batch_size: int = 8
    instance_count: int = 1
    instance_kind: str = "KIND_CPU"  # KIND_CPU | KIND_GPU
    dynamic_batching: bool = False
    max_queue_delay_us: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    backend_parameters: tuple[tuple[str, str], ...] = ()  # sorted (key, value) pairs
    # GPU fields, added after CPU configurations' keys were issued: a CPU configuration leaves
    # them at their defaults, which keeps them out of its key (navbuild.key_fields)
    #: KIND_GPU: the GPUs that get ``instance_count`` instances each; empty: every GPU Triton sees
    gpus: tuple[int, ...] = added(())
    #: a ``gpu_execution_accelerator`` of the backend ("tensorrt"), "" for none, and its parameters
    accelerator: str = added("")
    accelerator_parameters: tuple[tuple[str, str], ...] = added(())
    #: the warm-up requests, or None for none
    warmup: Warmup | None = added(None)
    #: a TensorRT engine's optimization profiles its instances may use (``instance_group.profile``), by index
    profiles: tuple[str, ...] = added(())
    #: ``optimization { cuda { graphs: true } }``: TensorRT's backend captures and replays CUDA graphs
    cuda_graphs: bool = added(False)

    def __post_init__(self) -> None:
        # frozen: normalise through object.__setattr__ (mapping/list in, sorted tuple out)
        object.__setattr__(self, "backend_parameters", parameter_pairs(self.backend_parameters))
        object.__setattr__(self, "preferred_batch_sizes", tuple(int(b) for b in self.preferred_batch_sizes))
        object.__setattr__(self, "gpus", tuple(int(g) for g in self.gpus))
        object.__setattr__(self, "accelerator_parameters", parameter_pairs(self.accelerator_parameters))
        object.__setattr__(self, "profiles", tuple(str(p) for p in self.profiles))

    def problems(self) -> list[str]:
        """What Triton would reject in this configuration (empty when it is valid)."""
        found: list[str] = []
        if self.max_batch_size < 0:
            found.append(f"max_batch_size: {self.max_batch_size} must be >= 0 (0: the model does not batch)")
        if self.instance_count < 1:
            found.append(f"instance_count: {self.instance_count} must be >= 1")
        if self.instance_kind not in INSTANCE_KINDS:
            found.append(f"instance_kind: '{self.instance_kind}' is not one of {', '.join(INSTANCE_KINDS)}")
        if self.max_queue_delay_us < 0:
            found.append(f"max_queue_delay_us: {self.max_queue_delay_us} must be >= 0")
        if not self.dynamic_batching and (self.max_queue_delay_us or self.preferred_batch_sizes):
            found.append("max_queue_delay_us / preferred_batch_sizes are set but dynamic_batching is off; "
                         "turn dynamic_batching on or drop them")
        if self.dynamic_batching and self.max_batch_size < 1:
            found.append("dynamic_batching needs max_batch_size >= 1 (a model with max_batch_size 0 does not batch)")
        for i, size in enumerate(self.preferred_batch_sizes):
            if not 1 <= size <= max(self.max_batch_size, 1):
                found.append(f"preferred_batch_sizes[{i}]: {size} must be between 1 and max_batch_size "
                             f"({self.max_batch_size})")
        if len(set(self.preferred_batch_sizes)) != len(self.preferred_batch_sizes):
            found.append(f"preferred_batch_sizes: {list(self.preferred_batch_sizes)} repeats a size")
        on_gpu = self.instance_kind == "KIND_GPU"
        if self.gpus and not on_gpu:
            found.append(f"gpus: {list(self.gpus)} name GPUs but instance_kind is {self.instance_kind}; "
                         "use KIND_GPU or drop the GPU list")
        if any(g < 0 for g in self.gpus) or len(set(self.gpus)) != len(self.gpus):
            found.append(f"gpus: {list(self.gpus)} must be distinct GPU indices >= 0")
        if self.accelerator and not on_gpu:
            found.append(f"accelerator: '{self.accelerator}' is a GPU execution accelerator but instance_kind is "
                         f"{self.instance_kind}; use KIND_GPU or drop it")
        for name, value in (("profiles", self.profiles), ("cuda_graphs", self.cuda_graphs)):
            if value and not on_gpu:
                found.append(f"{name}: a TensorRT engine's setting on GPU instances, but instance_kind is "
                             f"{self.instance_kind}; use KIND_GPU or drop it")
        if any(not p.isdigit() for p in self.profiles):
            found.append(f"profiles: {list(self.profiles)} must be profile indices (\"0\", \"1\", ...)")
        if self.accelerator_parameters and not self.accelerator:
            found.append("accelerator_parameters are set but no accelerator is")
        if self.warmup is not None:
            if not self.warmup.batch_sizes:
                found.append("warmup: give at least one batch size")
            for size in self.warmup.batch_sizes:
                if not 1 <= size <= max(self.max_batch_size, 1):
                    found.append(f"warmup batch size {size} must be between 1 and max_batch_size "
                                 f"({max(self.max_batch_size, 1)})")
            if self.warmup.data not in WARMUP_DATA:
                found.append(f"warmup data '{self.warmup.data}' is not one of {', '.join(WARMUP_DATA)}")
        return found

    def label(self) -> str:
        """A short, filesystem-safe, deterministic id: ``mbs8-i2cpu-db100us-intra_op_thread_count=1``.

        Distinct points of one search get distinct labels: where making a part safe changed it
        (or the label grew too long) a digest of the whole configuration is appended. The
        warm-up and an accelerator's parameters other than its precision are the same for
        every point of a search and stay out of the label.
        """
        parts = [f"mbs{self.max_batch_size}", f"i{self.instance_count}{self.instance_kind.lower().removeprefix('kind_')}"]
        if self.dynamic_batching:
            parts.append(f"db{self.max_queue_delay_us}us")
            if self.preferred_batch_sizes:
                parts.append("pb" + ".".join(str(b) for b in self.preferred_batch_sizes))
        if self.gpus:  # i1gpug0.1: one instance on each of GPUs 0 and 1
            parts[1] += "g" + ".".join(str(g) for g in self.gpus)
        if self.cuda_graphs:
            parts.append("cudagraphs")
        if self.accelerator:  # tensorrt_FP16
            parts.append(self.accelerator + "".join(f"_{v}" for k, v in self.accelerator_parameters
                                                    if k == "precision_mode"))
        # "-" joins parts and "=" joins key and value, so neither may appear inside one
        clean = [re.sub(r"[^A-Za-z0-9_.+]", "_", p) for p in parts]
        pairs = [(re.sub(r"[^A-Za-z0-9_.+]", "_", k), re.sub(r"[^A-Za-z0-9_.+]", "_", v))
                 for k, v in self.backend_parameters]
        label = "-".join(clean + [f"{k}={v}" for k, v in pairs])
        if clean != parts or pairs != list(self.backend_parameters) or len(label) > 96:
            digest = hashlib.sha256(json.dumps(key_data(self), sort_keys=True).encode()).hexdigest()
            label = f"{label[:80]}-{digest[:10]}"
        return label


#: backends for which Triton itself creates 2 CPU instances when a model has no instance_group
#: (triton core, model_config_utils.cc SetDefaultInstanceCount: "Backends opt into the
#: default_cpu_instance_count since some backends (pytorch, OpenVINO) don't perform well/have
#: high overhead when using multiple instances"; tensorflow opts in too, navbuild writes none)


def default_config(max_batch_size: int, backend: str | None = None, parameters: ParamsLike = ()) -> ModelConfig:
    """What Triton does with no tuning: its default instance group, no dynamic batching, no options
    but ``parameters``, the ones that make the model the variant it is (an ONNX Runtime graph
    level, OpenVINO's bf16 hint).

    On a CPU-only machine Triton fills a missing instance_group with KIND_CPU and count 1,
    except for backends that opt into 2 CPU instances (ONNX Runtime: ``default_cpu_instances``),
    so pass ``backend`` to get the count Triton would really use for it.
    """
    return ModelConfig(max_batch_size=max_batch_size,
                       instance_count=_default_cpu_instances(backend),
                       instance_kind="KIND_CPU", backend_parameters=parameters)


def _default_cpu_instances(backend: str | None) -> int:
    spec = backends().get(backend or "")
    return spec.default_cpu_instances if spec is not None else 1


def _did_you_mean(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    if not close:
        # option names differ mostly in case between backends (INTRA_OP_THREAD_COUNT)
        lowered = {k.lower(): k for k in known}
        close = [lowered[m] for m in difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)]
    return f"; did you mean '{close[0]}'?" if close else ""


def _value_problem(option: BackendOption, value: str) -> str | None:
    """Why ``value`` is not valid for ``option``, or None (an empty value: only the name is checked)."""
    if not value:
        return None
    if option.choices and value.upper() in (c.upper() for c in option.choices):
        return None
    if option.kind == "count":
        if value.isdigit():
            return None
        alternatives = f" or one of {', '.join(option.choices)}" if option.choices else ""
        return f"'{value}' is not a whole number >= 0{alternatives}"
    if option.kind == "bool":
        return None if value.lower() in _BOOL_VALUES else f"'{value}' is not a boolean ({', '.join(_BOOL_VALUES)})"
    if option.kind == "choice":
        return f"'{value}' is not one of {', '.join(option.choices)}"
    return None


def check_backend_parameters(backend: str, params: ParamsLike) -> list[str]:
    """Problems with ``params`` for ``backend`` (unknown options, bad values); empty when valid.

    ``params`` may repeat a key (pairs), so every value a search would try can be checked in
    one call; an empty value checks only the option's name. The recipe validator prefixes
    each problem with its key path.
    """
    known = backends()
    if backend not in known:
        return [f"unknown Triton backend '{backend}' (known: {', '.join(known)}){_did_you_mean(backend, known)}"]
    options = known[backend].options
    problems: list[str] = []
    for key, value in parameter_pairs(params):
        if options is None:  # free-form: any string parameter reaches model.py
            if not key:
                problems.append(f"an empty backend option name for {backend}")
            elif key.startswith(RESERVED_PREFIX):
                problems.append(f"backend option '{key}' for {backend}: names starting with "
                                f"'{RESERVED_PREFIX}' are navbuild's own; rename it")
            continue
        option = options.get(key)
        if option is None:
            known = ", ".join(options) or "none"
            problems.append(f"unknown backend option '{key}' for {backend} (known: {known})"
                            f"{_did_you_mean(key, options)}")
            continue
        why = _value_problem(option, value)
        if why:
            problems.append(f"backend option '{key}' for {backend}: {why}")
    return problems


def check_gpu_fields(backend: str, config: ModelConfig) -> list[str]:
    """Problems with ``config``'s instance kind and GPU accelerator for ``backend``; empty when valid."""
    spec = backends().get(backend)
    if spec is None:
        return []  # check_backend_parameters names the unknown backend
    problems: list[str] = []
    if config.instance_kind not in spec.kinds:
        why = spec.no_gpu if config.instance_kind == "KIND_GPU" and spec.no_gpu else \
            f"the {backend} backend runs {', '.join(spec.kinds)} only"
        problems.append(f"instance_kind {config.instance_kind}: {why}")
    if (config.profiles or config.cuda_graphs) and not spec.engine_fields:
        problems.append(f"profiles / cuda_graphs are TensorRT engine settings; the {backend} backend does not "
                        "read them")
    if config.accelerator:
        known = spec.gpu_accelerators
        if config.accelerator not in known:
            problems.append(f"unknown GPU execution accelerator '{config.accelerator}' for {backend} (known: "
                            f"{', '.join(known) or 'none'}){_did_you_mean(config.accelerator, known)}")
        else:
            options = known[config.accelerator]
            for key, value in config.accelerator_parameters:
                option = options.get(key)
                if option is None:
                    problems.append(f"unknown {config.accelerator} parameter '{key}' for {backend} (known: "
                                    f"{', '.join(options)}){_did_you_mean(key, options)}")
                elif (why := _value_problem(option, value)):
                    problems.append(f"{config.accelerator} parameter '{key}' for {backend}: {why}")
    return problems


def local_runtime(backend: str, params: ParamsLike) -> dict[str, str]:
    """The navbuild runtime options (``intra_op_threads``, ``graph_level``, ``mode``...) that
    emulate ``backend``'s ``params`` in a locally served python-backend model.

    Options with no local equivalent are left out; a thread count of 0 means "the runtime's
    default" to the native backends, so it is left out too.
    """
    spec = backends().get(backend)
    options = (spec.options if spec is not None else None) or {}
    runtime: dict[str, str] = {}
    for key, value in parameter_pairs(params):
        option = options.get(key)
        if option is None or not option.runtime or (option.kind == "count" and value == "0"):
            continue
        runtime[option.runtime] = dict(option.runtime_values).get(value.upper(), value)
    return runtime


def data_type(dtype: str) -> str:
    """The config.pbtxt data type (``TYPE_FP32``...) of a numpy dtype name."""
    name = str(dtype).lower()
    if name in DATA_TYPES:
        return DATA_TYPES[name]
    import numpy as np

    try:
        np_dtype = np.dtype(str(dtype))  # not lowered: '<U3' is text, '<u3' is not a dtype
    except TypeError:
        np_dtype = None
    if np_dtype is not None:
        if np_dtype.kind in "SUO":  # bytes, unicode, object: Triton's BYTES/STRING
            return "TYPE_STRING"
        if np_dtype.name in DATA_TYPES:
            return DATA_TYPES[np_dtype.name]
    raise ValueError(f"dtype '{dtype}' has no Triton data type (known: {', '.join(DATA_TYPES)})")


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _quote(text: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + "".join(_ESCAPES.get(c, c) for c in text) + '"'


def _int_list(values: Sequence[int]) -> str:
    return "[ " + ", ".join(str(int(v)) for v in values) + " ]" if values else "[ ]"


def _tensor_block(tensor: TritonTensor, max_batch_size: int) -> list[str]:
    dims = tuple(int(d) for d in tensor.dims)
    bad = [d for d in dims if d < 1 and d != -1]
    if bad:
        raise ValueError(f"tensor '{tensor.name}': dims {list(dims)} must be -1 (dynamic) or >= 1")
    lines = ["  {", f"    name: {_quote(tensor.name)}", f"    data_type: {data_type(tensor.dtype)}"]
    if max_batch_size == 0:
        # the model does not batch: dims are the full shape, so the batch dim becomes an
        # ordinary dynamic dim that the caller did not list
        lines.append(f"    dims: {_int_list((-1, *dims))}")
    elif not dims:
        # one scalar per batch item: Triton needs non-empty dims, so declare [1] and reshape
        # it away (the model sees shape [batch])
        lines += ["    dims: [ 1 ]", "    reshape { shape: [ ] }"]
    else:
        lines.append(f"    dims: {_int_list(dims)}")
    lines.append("  }")
    return lines


def _parameter_block(key: str, value: str) -> list[str]:
    return ["parameters {", f"  key: {_quote(key)}", f"  value {{ string_value: {_quote(value)} }}", "}"]


def config_text(name: str, backend: str, inputs: Sequence[TritonTensor], outputs: Sequence[TritonTensor],
                config: ModelConfig, parameters: Mapping[str, str] = {}) -> str:  # read only: a shared {} is safe
    """The ``config.pbtxt`` (protobuf text of ``inference.ModelConfig``) of one model.

    ``inputs``/``outputs`` dims exclude the batch dim; with ``config.max_batch_size == 0`` a
    leading -1 is prepended (Triton then wants the full shape). ``config.backend_parameters``
    land where ``backend`` reads them; ``parameters`` are extra string parameters written as
    they are (the python backend's own settings). ValueError when anything is invalid.
    """
    problems = (config.problems() + check_backend_parameters(backend, config.backend_parameters)
                + check_gpu_fields(backend, config))
    clash = sorted(set(parameters) & {k for k, _ in config.backend_parameters})
    if clash:
        problems.append(f"parameters {', '.join(clash)} are given both as backend options and as extra parameters")
    if not inputs or not outputs:
        problems.append("a model needs at least one input and one output")
    if problems:
        raise ValueError(f"invalid Triton configuration for model '{name}': " + "; ".join(problems))
    spec = backends()[backend]
    options = spec.options or {}

    lines = [f"name: {_quote(name)}"]
    if spec.backend:
        lines.append(f"backend: {_quote(spec.backend)}")
    if spec.platform:
        lines.append(f"platform: {_quote(spec.platform)}")
    lines.append(f"max_batch_size: {config.max_batch_size}")
    for field, tensors in (("input", inputs), ("output", outputs)):
        lines.append(f"{field} [")
        blocks = [_tensor_block(t, config.max_batch_size) for t in tensors]
        for i, block in enumerate(blocks):
            if i < len(blocks) - 1:
                block[-1] += ","
            lines += block
        lines.append("]")
    lines += ["instance_group [", "  {", f"    count: {config.instance_count}",
              f"    kind: {config.instance_kind}"]
    if config.gpus:
        lines.append(f"    gpus: {_int_list(config.gpus)}")
    if config.profiles:
        lines.append(f"    profile: [ {', '.join(_quote(p) for p in config.profiles)} ]")
    lines += ["  }", "]"]
    if config.dynamic_batching:
        lines.append("dynamic_batching {")
        if config.preferred_batch_sizes:
            lines.append(f"  preferred_batch_size: {_int_list(config.preferred_batch_sizes)}")
        lines += [f"  max_queue_delay_microseconds: {config.max_queue_delay_us}", "}"]
    string_params: list[tuple[str, str]] = []
    optimization: list[str] = []  # one optimization block: the graph level and the accelerators
    for key, value in config.backend_parameters:
        option = options.get(key)
        if option is not None and option.lands == "graph_level":
            level = ORT_GRAPH_LEVELS[value.lower()]
            if level is not None:
                optimization += ["  graph {", f"    level: {level}", "  }"]
        else:
            string_params.append((key, value))
    if config.accelerator:
        optimization += ["  execution_accelerators {", "    gpu_execution_accelerator [", "      {",
                         f"        name: {_quote(config.accelerator)}"]
        optimization += [f"        parameters {{ key: {_quote(k)} value: {_quote(v)} }}"
                         for k, v in config.accelerator_parameters]
        optimization += ["      }", "    ]", "  }"]
    if config.cuda_graphs:
        optimization += ["  cuda {", "    graphs: true", "  }"]
    if optimization:
        lines += ["optimization {", *optimization, "}"]
    if config.warmup is not None:
        lines += _warmup_blocks(config.warmup, inputs, config.max_batch_size)
    string_params += sorted((str(k), _text(v)) for k, v in parameters.items())
    for key, value in string_params:
        lines += _parameter_block(key, value)
    return "\n".join(lines) + "\n"


def _warmup_blocks(warmup: Warmup, inputs: Sequence[TritonTensor], max_batch_size: int) -> list[str]:
    """``model_warmup``: per batch size one request with every input (zeros, or random floats)."""
    concrete = dict(warmup.dims)
    samples = []
    for size in warmup.batch_sizes:
        entries = []
        for tensor in inputs:
            dims = tuple(int(d) for d in concrete.get(tensor.name, tensor.dims))
            if any(d < 1 for d in dims):
                raise ValueError(f"warm-up of input '{tensor.name}': dims {list(dims)} have a dynamic axis; give "
                                 "its size (the recipe's samples.axes)")
            if max_batch_size == 0:
                dims = (size, *dims)  # the full shape: this model does not batch
            elif not dims:
                dims = (1,)  # a scalar per batch item is declared [1] (see _tensor_block)
            dtype = data_type(tensor.dtype)
            floating = dtype in ("TYPE_FP16", "TYPE_FP32", "TYPE_FP64", "TYPE_BF16")
            fill = "random_data: true" if warmup.data == "random" and floating else "zero_data: true"
            entries += ["    inputs {", f"      key: {_quote(tensor.name)}", "      value {",
                        f"        data_type: {dtype}", f"        dims: {_int_list(dims)}", f"        {fill}",
                        "      }", "    }"]
        # a model that does not batch takes batch_size 1 (Triton's rule); the request is the whole shape
        batch = size if max_batch_size > 0 else 1
        samples.append(["  {", f"    name: {_quote(f'warmup_batch_{size}')}", f"    batch_size: {batch}",
                        *entries, "  }"])
    lines = ["model_warmup ["]
    for i, block in enumerate(samples):
        if i < len(samples) - 1:
            block[-1] += ","
        lines += block
    return lines + ["]"]


def parse_config(text: str) -> Any:
    """``text`` parsed into ``tritonclient.grpc.model_config_pb2.ModelConfig``; ValueError if invalid."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    message = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        raise ValueError(f"invalid config.pbtxt: {e}") from e
    return message


__all__ = ["TritonTensor", "ModelConfig", "Warmup", "WARMUP_DATA", "check_gpu_fields", "OWN_BACKENDS", "backends", "DATA_TYPES", "INSTANCE_KINDS", "RESERVED_PREFIX",
           "config_text", "parse_config", "default_config", "check_backend_parameters", "local_runtime",
           "parameter_pairs", "data_type"]
