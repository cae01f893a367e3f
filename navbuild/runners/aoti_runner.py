"""Running an AOTInductor package (``model.pt2``, runner ``torch-aoti``) on numpy feeds, on the CPU or
the GPU it was compiled for, timing itself on that device."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from navbuild.runners.device_timing import ExportedCallRunner
from navbuild.runners.torch_export_runner import import_load_modules
from navbuild.runners.torch_runner import serialized_model_path

#: the package file and the call description beside it (written by navbuild/steps/aoti_from_torch.py)
PACKAGE_FILE = "model.pt2"
CALL_FILE = "aoti.json"
#: what proves a package loads (Python reading ``path``, for a fresh process's check): loading it,
#: and reading its input and output specs, which the package holds serialized and reads only at
#: the first call (an output class registered in torch's pytree by the model's package fails there)
AOTI_LOAD = ("import torch._inductor, torch.utils._pytree as pytree\n"
             "for spec in torch._inductor.aoti_load_package(path).loader.get_call_spec(): pytree.treespec_loads(spec)")


class AotiRunner(ExportedCallRunner):
    """The compiled model of an AOTInductor package, called as it was exported: by input name, or
    positionally in forward's order; inputs go to the package's device (``aoti.json``). The
    modules ``imports.json`` beside it names are imported first (as for an exported program)."""

    def __init__(self, path: Path, input_names: Sequence[str], threads: int) -> None:
        import torch

        call = json.loads((Path(path).parent / CALL_FILE).read_text())
        import_load_modules(Path(path).parent)  # output classes the package's output spec names
        compiled = torch._inductor.aoti_load_package(str(path))
        super().__init__(compiled, Path(path), call, input_names, threads, device=call["device"])


def make(model_path: Path | None, factory: Any, input_names: Sequence[str], options: Any,
         source: Path | None = None) -> AotiRunner:
    """Runner registry entry: the AOTInductor package at ``model_path`` (``model.pt2`` or a folder holding it)."""
    if getattr(options, "mode", ""):
        raise ValueError(f"the torch-aoti runner has no runtime mode '{options.mode}' (only '')")
    return AotiRunner(serialized_model_path(model_path, PACKAGE_FILE), input_names, options.intra_op_threads)


__all__ = ["AotiRunner", "PACKAGE_FILE", "CALL_FILE", "AOTI_LOAD", "make"]
