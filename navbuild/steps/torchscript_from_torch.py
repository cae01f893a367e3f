"""TorchScriptFromTorch: trace or script a torch model to ``model.pt``, optionally frozen, checked at two batch sizes."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

from navbuild.evidence import TraceDivergence, trace_warnings
from navbuild.lazy import lazy_import
from navbuild.model_io import TensorSpec
from navbuild.runners.torch_runner import call_model, load_torch_model, takes_names
from navbuild.runtime import TorchFactory
from navbuild.samples import generate_samples
from navbuild.settings import params_of, setting
from navbuild.steps.base import Step, StepContext
from navbuild.steps.common import first_line
from navbuild.steps.eager_check import TORCH_KERNELS, eager_mismatch
from navbuild.steps.onnx_from_torch import EXAMPLE_BATCH, _signature_order

np = lazy_import("numpy")

METHODS: tuple[str, ...] = ("trace", "script")
#: the second batch size the saved module is checked at: a trace that baked the example batch
#: (2) into a shape or a slice is right at 2 and wrong at 3
CHECK_BATCH = 3


@dataclass
class TorchScriptConfig:
    """The recipe's ``torchscript``: how the torch source is serialized as TorchScript."""

    method: str = setting("trace", choices=METHODS, doc="torch.jit.trace or torch.jit.script")
    freeze: bool = setting(True, doc="torch.jit.freeze: weights and attributes become constants")


@dataclass(frozen=True)
class _TorchSource:
    """What the serialization reads besides the recipe's ``torchscript`` section."""

    factory: TorchFactory
    inputs: tuple[TensorSpec, ...]
    axes: Mapping[str, int]
    seed: int


TorchScriptFromTorchParams = params_of(TorchScriptConfig, "TorchScriptFromTorchParams", __name__, bases=(_TorchSource,))


class TorchScriptFromTorch(Step):
    """Serialize the torch source as TorchScript (``model.pt``), loadable without the model's code."""

    name: ClassVar[str] = "TorchScriptFromTorch"
    version: ClassVar[int] = 2  # 2: TracerWarnings recorded as evidence in the result
    Params: ClassVar[type] = TorchScriptFromTorchParams
    requires: ClassVar[tuple[str, ...]] = ("torch",)
    tools: ClassVar[tuple[str, ...]] = ("torch",)

    def run(self, params: TorchScriptFromTorchParams, ctx: StepContext) -> dict:
        import torch


        if params.method not in METHODS:
            raise ValueError(f"method '{params.method}' is not one of {METHODS}")
        model = load_torch_model(params.factory, ctx.inputs.get("source"))
        names = _signature_order(model, [s.name for s in params.inputs])
        examples = example_inputs(params, EXAMPLE_BATCH, params.seed, names)

        print(f"{params.method} at batch {EXAMPLE_BATCH}, freeze={params.freeze}", flush=True)
        evidence: list[dict] = []
        with torch.no_grad():
            scripted = _trace(model, examples, evidence) if params.method == "trace" else _script(model)
            if params.freeze:
                # freeze needs an eval-mode ScriptModule: it folds weights and inlines submodules
                scripted = torch.jit.freeze(scripted.eval())

        path = ctx.out / "model.pt"
        stripped = save_without_debug_info(scripted, path)
        loaded = torch.jit.load(str(path), map_location="cpu").eval()
        for batch, seed in ((EXAMPLE_BATCH, params.seed), (CHECK_BATCH, params.seed + 1)):
            _check_same(model, loaded, example_inputs(params, batch, seed, names), params.method, batch)
        size = path.stat().st_size
        print(f"model.pt: {size} bytes, reproduces eager at batch {EXAMPLE_BATCH} and {CHECK_BATCH}"
              f"{'' if stripped else ' (debug info kept: this torch cannot rewrite the archive)'}", flush=True)
        return {"method": params.method, "freeze": params.freeze, "size_bytes": size, "evidence": evidence}


def example_inputs(params: Any, batch: int, seed: int, names: list[str]) -> dict[str, Any]:
    """Generated inputs (``params.inputs`` specs, ``params.axes``) as tensors, keyed in forward's
    signature order: what the torch conversions trace with and check against."""
    import torch

    arrays = generate_samples(params.inputs, batch, seed, params.axes)
    return {n: torch.from_numpy(arrays[n]) for n in names}


def _trace(model: Any, examples: dict[str, Any], evidence: list[dict]) -> Any:
    import torch


    # TracerWarnings flag Python-level logic baked into the trace: recorded as evidence that
    # every traced variant of this model carries; the batch 2 / 3 check below is a first test of it
    with trace_warnings(evidence):
        try:
            # strict=False: models may return dicts or lists (ModelOutput), which the tracer records as such
            if not takes_names(model, list(examples)):  # nn.Sequential's input: positionally, recipe order
                return torch.jit.trace(model, tuple(examples.values()), strict=False, check_trace=False)
            return torch.jit.trace(model, example_kwarg_inputs=examples, strict=False, check_trace=False)
        except Exception as e:
            raise RuntimeError(f"torch.jit.trace failed at batch {EXAMPLE_BATCH}: "
                             f"{type(e).__name__}: {first_line(e)}") from e


def _script(model: Any) -> Any:
    import torch

    try:
        return torch.jit.script(model)
    except Exception as e:
        # a RuntimeError, not an InputError: this variant fails, the build and its siblings go on.
        # The compiler's message starts with an empty line and ends with the source excerpt:
        # keep the few lines that say what is unsupported
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()][:3]
        raise RuntimeError(f"torch.jit.script cannot compile this model ({' '.join(lines)}); "
                         "use method 'trace', or annotate forward's arguments as torch.Tensor") from e


def _check_same(model: Any, loaded: Any, examples: dict[str, Any], method: str, batch: int) -> None:
    """Raise RuntimeError unless the saved module's outputs match eager ones (eager_check, torch's kernels)."""
    import torch

    with torch.no_grad():
        problem = eager_mismatch(call_model(model, examples), call_model(loaded, examples), TORCH_KERNELS)
    if problem:
        hint = (" (the trace baked a batch-dependent value into the graph: a Python int or branch "
                "on a shape; use method 'script' or fix the model)" if method == "trace" and batch != EXAMPLE_BATCH
                else "")
        error = TraceDivergence if method in ("trace", "export") else RuntimeError
        what = "the torch.export program" if method == "export" else f"TorchScript ({method})"
        raise error(f"{what} does not reproduce the model at batch {batch}: {problem}{hint}")


def save_without_debug_info(module: Any, path: Path) -> bool:
    """``torch.jit.save`` to ``path`` minus the ``*.debug_pkl`` records; True if they were dropped.

    The debug records hold the model's source file paths and line numbers, so the same model
    saved from another checkout, or after a comment was added above ``forward``, would give
    different bytes and rebuild every target downstream. TorchScript loads without them (error
    messages then lack source excerpts). The archive is rewritten with torch's own zip writer,
    which recomputes the serialization id from the content; where that fails, the plain save stays.
    """
    import torch

    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    raw = buffer.getvalue()
    try:
        reader = torch._C.PyTorchFileReader(io.BytesIO(raw))
        names = reader.get_all_records()
        # the writer adds these itself (version from set_min_version, id from the content); the
        # version record is ".data/version" or, from older writers' code paths, "version"
        own = {".data/version", "version", ".data/serialization_id", "byteorder"}
        records = sorted(r for r in names if r not in own and not r.endswith(".debug_pkl"))
        version_record = ".data/version" if ".data/version" in names else "version"
        version = int(bytes(reader.get_record(version_record)).decode().strip())
        out = io.BytesIO()
        writer = torch._C.PyTorchFileWriter(out)
        writer.set_min_version(version)
        for name in records:
            data = reader.get_record(name)
            writer.write_record(name, data, len(data))
        writer.write_end_of_file()
        stripped = out.getvalue()
        torch.jit.load(io.BytesIO(stripped), map_location="cpu")  # refuse a rewrite that does not load
    except Exception:  # noqa: BLE001 - private API: any failure keeps the plain, valid archive
        path.write_bytes(raw)
        return False
    path.write_bytes(stripped)
    return True


__all__ = ["TorchScriptFromTorch", "TorchScriptFromTorchParams", "TorchScriptConfig", "METHODS", "CHECK_BATCH", "example_inputs",
           "save_without_debug_info"]
