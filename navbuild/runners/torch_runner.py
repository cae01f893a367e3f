"""Loading a torch model from its factory and running it eagerly on numpy feeds."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any, Mapping, Sequence

from navbuild.errors import InputError
from navbuild.lazy import lazy_import
from navbuild.model_io import model_file
from navbuild.runtime import SERIALIZED_SOURCE, TorchFactory

np = lazy_import("numpy")


def takes_names(model: Any, names: Sequence[str]) -> bool:
    """Whether ``model``'s forward takes every one of ``names`` as a keyword.

    When it does not (``nn.Sequential``'s ``forward(input)``, a ``forward(x)`` the recipe
    feeds as ``pixels``), the inputs go positionally in the recipe's order, as Model
    Navigator feeds them. A forward with ``**kwargs`` or no readable signature takes names.
    """
    model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper hides the signature
    schema = getattr(getattr(model, "forward", None), "schema", None)
    try:
        if schema is not None:  # TorchScript: the schema names forward's arguments (self first)
            return all(n in {a.name for a in schema.arguments[1:]} for n in names)
        parameters = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError, AttributeError):
        return True
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return True
    keywords = {p.name for p in parameters
                if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    return all(n in keywords for n in names)


def call_model(model: Any, tensors: Mapping[str, Any], by_name: bool | None = None) -> Any:
    """``model(**tensors)``, or ``model(*tensors.values())`` (in the mapping's order, the
    recipe's) when forward does not take the names (``by_name`` None: decided by ``takes_names``)."""
    if by_name is None:
        by_name = takes_names(model, list(tensors))
    return model(**tensors) if by_name else model(*tensors.values())


def load_serialized(path: Path) -> Any:
    """Load a TorchScript (``torch.jit.save``) or exported-program (``torch.export.save``) file."""
    import torch

    if path is None or not Path(path).is_file():
        raise InputError(f"source.torchscript: serialized model '{path}' does not exist")
    try:
        if Path(path).suffix == ".pt2":
            return torch.export.load(str(path)).module()
        return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input problem
        raise InputError(f"source.torchscript: '{path}' cannot be loaded as TorchScript or an "
                         f"exported program: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e


def load_torch_model(factory: TorchFactory, source: Path | None = None) -> Any:
    """Import ``factory.factory`` ("pkg.mod:function"), call it with its kwargs, return the module in eval mode.

    A serialized source (``SERIALIZED_SOURCE``) is loaded from ``source`` instead, without
    the code that defined the model.
    """
    import torch

    if factory.factory == SERIALIZED_SOURCE:
        return load_serialized(source)

    module_name, sep, func_name = factory.factory.partition(":")
    if not sep or not module_name or not func_name:
        raise InputError(f"source.torch: factory '{factory.factory}' must be 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        # only the named module itself missing is the user's mistake; a missing dependency
        # inside it is an environment problem and keeps its own traceback
        if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise InputError(f"source.torch: module '{module_name}' not found; check the spelling "
                             "and that its package is installed or on PYTHONPATH") from e
        raise
    func = getattr(module, func_name, None)
    if func is None or not callable(func):
        raise InputError(f"source.torch: function '{func_name}' not found in module '{module_name}'")
    model = func(**dict(factory.kwargs))
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"source.torch: {factory.factory} did not return a torch.nn.Module "
                         f"(got {type(model).__name__})")
    return model.eval()


def flatten_outputs(result: Any) -> tuple[list[str] | None, list[Any]]:
    """Normalize what a forward returns into (names or None, tensors in order).

    Tensor -> [t]; tuple/list -> items (nested ones flattened); dict / transformers
    ModelOutput -> values in order with None skipped, and their keys as names.
    """
    import torch

    if isinstance(result, torch.Tensor):
        return None, [result]
    if isinstance(result, Mapping):
        names, values = [], []
        for k, v in result.items():
            if v is None:
                continue
            sub_names, sub_values = flatten_outputs(v)
            if len(sub_values) == 1:
                names.append(str(k))
            else:
                names.extend(f"{k}.{i}" if sub_names is None else f"{k}.{n}"
                             for i, n in enumerate(sub_names or range(len(sub_values))))
            values.extend(sub_values)
        return names, values
    if isinstance(result, (tuple, list)):
        values = []
        for item in result:
            if item is None:
                continue
            values.extend(flatten_outputs(item)[1])
        return None, values
    raise TypeError(f"model returned {type(result).__name__}; expected a Tensor, tuple, list or dict")


#: the torch runner's runtime modes (``RuntimeOptions.mode``), applied when the model is loaded:
#: eager fp32, eager under bf16 autocast, eager with bf16 weights and inputs, eager with int8
#: dynamically quantized Linear layers, and torch.compile (inductor, frozen weights) in fp32 or bf16.
TORCH_MODES: tuple[str, ...] = ("", "autocast-bf16", "cast-bf16", "dynamic-int8", "compile", "compile-bf16")


class TorchRunner:
    """Runs a torch module on numpy feeds without autograd, on ``device`` ("cpu", "cuda", "cuda:N").

    Eager modules run under ``torch.inference_mode``; TorchScript modules under
    ``torch.no_grad``, because with inference tensors TorchScript's profiling executor never
    settles on an optimized plan (measured: ~45 ms per call instead of ~0.07 ms for a small MLP).
    ``no_grad=True`` forces ``torch.no_grad`` (torch.compile's frozen graphs are built for it).

    ``cast_dtype`` casts floating inputs (the weights must already be in it); ``autocast_dtype``
    runs every call under ``torch.autocast(<device type>, dtype=...)``. With either, floating
    outputs come back as float32, as bfloat16 outputs always do (numpy has no bfloat16). The
    model must already be on ``device``; inputs are copied there, outputs back to numpy.
    """

    def __init__(self, model: Any, input_names: Sequence[str], threads: int, *,
                 cast_dtype: Any = None, autocast_dtype: Any = None, no_grad: bool | None = None,
                 device: str = "cpu") -> None:
        import torch

        torch.set_num_threads(max(1, int(threads)))
        self.model = model
        self.input_names = list(input_names)
        #: output names when the model returns a dict / ModelOutput, else None (set by ``run``)
        self.output_names: list[str] | None = None
        self.cast_dtype = cast_dtype
        self.autocast_dtype = autocast_dtype
        self.device = device
        self.no_grad = isinstance(model, torch.jit.ScriptModule) if no_grad is None else no_grad
        #: False: forward does not take the recipe's names, inputs go positionally in recipe order
        self.by_name = takes_names(model, self.input_names)

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Call the model on ``feeds`` (by input name) and return its outputs as numpy arrays."""
        tensors = self.to_device(feeds)
        with self.calling():
            result = self._call(tensors)
        return self.outputs(result)

    def to_device(self, feeds: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """The model's inputs from ``feeds``: tensors on the runner's device, in its precision."""
        return {n: self._tensor(feeds[n]) for n in self.input_names}

    def calling(self) -> Any:
        """The context every call runs in: no autograd, and autocast in an autocast mode."""
        import contextlib

        import torch

        stack = contextlib.ExitStack()
        stack.enter_context(torch.no_grad() if self.no_grad else torch.inference_mode())
        if self.autocast_dtype is not None:
            stack.enter_context(torch.autocast(torch.device(self.device).type, dtype=self.autocast_dtype))
        return stack

    def outputs(self, result: Any) -> list[np.ndarray]:
        """What a call returned, as numpy arrays (float32 where the runner lowers precision)."""
        names, values = flatten_outputs(result)
        self.output_names = names
        low_precision = self.cast_dtype is not None or self.autocast_dtype is not None
        return [_to_numpy(v, low_precision) for v in values]

    def _call(self, tensors: dict[str, Any]) -> Any:
        return call_model(self.model, tensors, self.by_name)

    def _tensor(self, array: np.ndarray) -> Any:
        import torch

        t = torch.from_numpy(np.ascontiguousarray(array))
        if self.device != "cpu":
            t = t.to(self.device)
        # integer inputs (token ids, masks) keep their dtype: only floating data changes precision
        if self.cast_dtype is not None and t.is_floating_point():
            t = t.to(self.cast_dtype)
        return t


def _to_numpy(value: Any, to_float32: bool) -> np.ndarray:
    import torch

    value = value.detach()
    if value.dtype == torch.bfloat16 or (to_float32 and value.is_floating_point()):
        value = value.float()
    return value.cpu().numpy()


def serialized_model_path(model_path: Path | None, name: str) -> Path:
    """The serialized model of a variant: ``model_path`` itself, or ``name`` in that folder.

    A ``model_path`` that does not exist but whose folder holds ``name`` is accepted too:
    callers that pass ``model_file(dir)`` get the ONNX default name in a torch variant's folder.
    """

    if model_path is None:
        raise ValueError(f"a serialized torch variant needs a model path ({name})")
    path = Path(model_path)
    if not path.exists() and (path.parent / name).is_file():
        return path.parent / name
    path = model_file(path, name)
    if not path.is_file():
        raise FileNotFoundError(f"no {name} at {model_path}")
    return path


def _quantize_dynamic_int8(model: Any) -> Any:
    """``model`` with every ``nn.Linear`` replaced by an int8 dynamically quantized Linear."""
    import warnings

    import torch

    with warnings.catch_warnings():
        # torch.ao eager quantization announces its move to torchao on every call; it still works
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    if not any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in quantized.modules()):
        # a serialized source (TorchScript, exported program) hides its Linear modules: without
        # this check the "int8" variant would silently be the fp32 model
        raise ValueError("torch mode 'dynamic-int8': the model has no torch.nn.Linear module to quantize")
    return quantized


def check_mode(mode: str, modes: Sequence[str] = TORCH_MODES) -> None:
    """Raise ValueError naming the known modes unless ``mode`` is one of ``modes``."""
    if mode not in modes:
        raise ValueError(f"torch runtime mode '{mode}' is unknown; known modes: "
                         + ", ".join(repr(m) for m in modes))


#: the reduced precisions a mode name may end in (``cast-fp16``, ``autocast-bf16``, ``compile-bf16``)
_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


def apply_mode(model: Any, mode: str, input_names: Sequence[str], threads: int, *, device: str = "cpu",
               modes: Sequence[str] = TORCH_MODES, runner: type[TorchRunner] = TorchRunner) -> TorchRunner:
    """A ``runner`` for ``model`` moved to ``device``, in runtime mode ``mode`` (one of ``modes``).

    ``cast-<p>`` casts weights and floating inputs to precision ``p``; ``autocast-<p>`` runs under
    autocast to ``p``; ``compile`` is torch.compile (inductor, frozen weights), ``compile-bf16``
    the same under bf16 autocast, ``compile-cudagraphs`` inductor's CUDA graphs
    (``mode="reduce-overhead"``); ``dynamic-int8`` quantizes nn.Linear to int8 (CPU only).
    """
    import torch

    check_mode(mode, modes)
    kind, _, precision = mode.partition("-")
    dtype = getattr(torch, _DTYPES[precision]) if precision in _DTYPES else None
    model = model.to(device) if device != "cpu" else model
    if mode == "":
        return runner(model, input_names, threads, device=device)
    if kind == "autocast":
        return runner(model, input_names, threads, autocast_dtype=dtype, device=device)
    if kind == "cast":
        return runner(model.to(dtype), input_names, threads, cast_dtype=dtype, device=device)
    if mode == "dynamic-int8":
        return runner(_quantize_dynamic_int8(model), input_names, threads, device=device)
    # compile / compile-bf16 / compile-cudagraphs
    if isinstance(model, torch.jit.ScriptModule):
        raise ValueError(f"torch mode '{mode}': a TorchScript source cannot be compiled by torch.compile; "
                         "use the torchscript format or mode ''")
    _keep_precompiled_headers_in_cache_dir()
    # compile-bf16 runs the compiled graph under bf16 autocast rather than with bf16 weights:
    # measured on MiniLM (batch 8, seq 128, 2 threads, AVX512-BF16 without AMX) both run at the
    # same speed, and autocast's fp32 softmax/LayerNorm keep the error ~3x smaller (0.022 vs 0.062)
    autocast = dtype
    # Freezing folds the weights into the graph as constants (valid: the runner never trains
    # and runs under no_grad). It is set for the whole process because it must hold at every
    # (re)compile, which happens lazily at the first run of each new input shape (profile
    # warm-up covers it), and runners live in a step's child process. Measured on torch 2.13:
    # torch.compile(options={"freezing": True}) silently does not freeze (weights stay graph
    # inputs), and config.patch around each call costs ~35 us.
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    if precision == "cudagraphs":
        compiled = torch.compile(model, backend="inductor", mode="reduce-overhead")
    else:
        compiled = torch.compile(model, backend="inductor")
    return runner(compiled, input_names, threads, autocast_dtype=autocast, no_grad=True, device=device)


def _keep_precompiled_headers_in_cache_dir() -> None:
    """Put inductor's precompiled C++ headers under its cache dir instead of ``$TMPDIR/torchinductor_<user>``.

    Inductor honours TORCHINDUCTOR_CACHE_DIR for everything except its precompiled headers
    (~150 MB, torch 2.13), which it keeps in the default cache dir on purpose; navbuild keeps
    compile artifacts inside its store, so they follow the cache dir here. Where this torch
    has no such module global, header precompilation is turned off instead (slower compiles,
    nothing outside the cache dir).
    """
    import os

    import torch._inductor.codecache as codecache
    import torch._inductor.config as inductor_config
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    if hasattr(codecache, "_HEADER_DIR") and hasattr(codecache, "_HEADER_LOCK_DIR"):
        codecache._HEADER_DIR = os.path.join(cache_dir(), "precompiled_headers")
        codecache._HEADER_LOCK_DIR = os.path.join(codecache._HEADER_DIR, "locks")
    else:
        inductor_config.cpp_cache_precompile_headers = False


__all__ = ["SERIALIZED_SOURCE", "TORCH_MODES", "takes_names", "call_model", "load_serialized", "load_torch_model", "flatten_outputs",
           "TorchRunner", "check_mode", "apply_mode", "serialized_model_path"]


def make(model_path: Path | None, factory: TorchFactory | None, input_names: Sequence[str],
         options: Any, source: Path | None = None) -> TorchRunner:
    """Runner registry entry: the source model, eager or in runtime mode ``options.mode`` (TORCH_MODES)."""
    if factory is None:
        raise ValueError("a torch variant needs a factory")
    mode = getattr(options, "mode", "") or ""
    check_mode(mode)  # before loading: a typo should not cost a model load
    return apply_mode(load_torch_model(factory, source), mode, input_names, options.intra_op_threads)
