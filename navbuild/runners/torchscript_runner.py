"""Running a TorchScript module (``model.pt``) on numpy feeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from navbuild.runners.torch_runner import TorchRunner, serialized_model_path


class TorchScriptRunner(TorchRunner):
    """A ``torch.jit.load``-ed module run under ``torch.no_grad``.

    Not ``inference_mode``: with inference tensors TorchScript's profiling executor never
    settles on an optimized plan. Inputs go by name; a module whose schema does not take
    them by name gets them positionally in the order of its forward's arguments.
    """

    def __init__(self, path: Path, input_names: Sequence[str], threads: int) -> None:
        import torch

        model = torch.jit.load(str(path), map_location="cpu").eval()
        super().__init__(model, input_names, threads, no_grad=True)
        self.path = Path(path)
        schema = getattr(getattr(model, "forward", None), "schema", None)
        #: forward's argument names (self dropped), for the positional fallback
        self.schema_names: list[str] = [a.name for a in schema.arguments][1:] if schema is not None else []
        self._positional = False

    def _call(self, tensors: dict[str, Any]) -> Any:
        if not self._positional:
            try:
                return self.model(**tensors)
            except RuntimeError as by_name:
                # a module saved from a positional trace may name its arguments x.1, input_1, ...
                # (not the recipe's names); fall back once, and keep the first error if that fails too
                try:
                    result = self.model(*self._positional_args(tensors))
                except Exception:
                    raise by_name from None
                self._positional = True
                return result
        return self.model(*self._positional_args(tensors))

    def _positional_args(self, tensors: dict[str, Any]) -> list[Any]:
        # schema order where the names match; inputs the schema does not name keep the feed order
        ordered = [n for n in self.schema_names if n in tensors]
        ordered += [n for n in tensors if n not in ordered]
        return [tensors[n] for n in ordered]


def make(model_path: Path | None, factory: Any, input_names: Sequence[str], options: Any,
         source: Path | None = None) -> TorchScriptRunner:
    """Runner registry entry: ``torch.jit.load`` of ``model_path`` (``model.pt`` or a folder holding it)."""
    if getattr(options, "mode", ""):
        raise ValueError(f"the torchscript runner has no runtime mode '{options.mode}' (only '')")
    return TorchScriptRunner(serialized_model_path(model_path, "model.pt"), input_names,
                             options.intra_op_threads)


__all__ = ["TorchScriptRunner", "make"]
