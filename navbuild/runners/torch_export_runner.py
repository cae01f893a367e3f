"""Running an exported program (``model.pt2``, ``torch.export.save``) on numpy feeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from navbuild.runners.torch_runner import TorchRunner, serialized_model_path


#: beside a program (or an AOTInductor package): the modules to import before it loads (absent: none needed)
IMPORTS_FILE = "imports.json"


def import_load_modules(folder: Path) -> None:
    """Import the modules that ``IMPORTS_FILE`` in ``folder`` names (output classes registered in
    torch's pytree, without which the program's output spec does not load)."""
    import importlib
    import json

    imports = Path(folder) / IMPORTS_FILE
    for module_name in json.loads(imports.read_text()) if imports.is_file() else ():
        importlib.import_module(module_name)


class ExportedProgramRunner(TorchRunner):
    """The module of a ``torch.export.load``-ed program, run under ``torch.no_grad`` with inputs by name.

    The modules that ``imports.json`` beside the program names (the conversion found the
    program loads only after them: output classes registered in torch's pytree) are imported first.
    """

    def __init__(self, path: Path, input_names: Sequence[str], threads: int) -> None:
        import torch

        import_load_modules(Path(path).parent)
        module = torch.export.load(str(path)).module()
        super().__init__(module, input_names, threads, no_grad=True)
        self.path = Path(path)


def make(model_path: Path | None, factory: Any, input_names: Sequence[str], options: Any,
         source: Path | None = None) -> ExportedProgramRunner:
    """Runner registry entry: the exported program at ``model_path`` (``model.pt2`` or a folder holding it)."""
    if getattr(options, "mode", ""):
        raise ValueError(f"the torch-export runner has no runtime mode '{options.mode}' (only '')")
    return ExportedProgramRunner(serialized_model_path(model_path, "model.pt2"), input_names,
                                 options.intra_op_threads)


__all__ = ["IMPORTS_FILE", "import_load_modules", "ExportedProgramRunner", "make"]
