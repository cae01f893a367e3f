"""Loading a torch model from its factory and running it eagerly on numpy feeds."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from navbuild.errors import InputError
from navbuild.steps.common import SERIALIZED_SOURCE, TorchFactory




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


