"""Format families: one module per runtime family, and the registry every format table is derived from.

Importing this package registers the built-in families (torch, onnxruntime, openvino, tensorrt), then
every family module a user names: in the ``NAVBUILD_FORMATS`` environment variable (module
names, comma-separated, importable from the working directory) or as an entry point of the
``navbuild.formats`` group of an installed package. See README, "Adding a format".
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os

# each registers its family; their order is the order of the recipe's format choices
from navbuild.formats import torch  # noqa: F401,I001
from navbuild.formats import onnxruntime  # noqa: F401,I001
from navbuild.formats import openvino  # noqa: F401,I001
from navbuild.formats import tensorrt  # noqa: F401,I001
from navbuild.formats.base import (REFERENCE, SOURCE, AccuracySearch, Conversion, FormatFamily, PlanContext, Planned,
                                   Runner, TritonServing, Variant, catalogue, conversion, conversions, drift_step,
                                   external_modules, families, load_attr, native_backends, precisions, recipe_formats, register,
                                   runner, runner_names, runtime_requirements, selected, simplicity, steps,
                                   torch_source_formats, triton_backends, triton_serving, unavailable_on_serialized,
                                   unregister, variant, variant_names)

#: the environment variable naming family modules to load (comma-separated)
ENV_VAR = "NAVBUILD_FORMATS"
#: the entry point group installed packages declare their family modules in
ENTRY_POINT_GROUP = "navbuild.formats"


def load_plugins() -> None:
    """Import the family modules named in ``NAVBUILD_FORMATS`` and the ``navbuild.formats`` entry points."""
    for name in os.environ.get(ENV_VAR, "").split(","):
        if name.strip():
            importlib.import_module(name.strip())
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        entry.load()


def load_modules(modules: list[str] | tuple[str, ...]) -> None:
    """Import family modules by name (what a step's child process does for the families its
    parent registered) and name them in ``NAVBUILD_FORMATS``, so the processes this one starts
    (the finalists' workers) load them too."""
    named = [m for m in os.environ.get(ENV_VAR, "").split(",") if m.strip()]
    for name in modules:
        importlib.import_module(name)
        if name not in named:
            named.append(name)
    if named:
        os.environ[ENV_VAR] = ",".join(named)


load_plugins()

__all__ = ["FormatFamily", "AccuracySearch", "Variant", "Runner", "Conversion", "Planned", "PlanContext", "TritonServing", "SOURCE",
           "REFERENCE", "register", "unregister", "families", "external_modules", "catalogue", "variant",
           "variant_names", "recipe_formats", "precisions", "torch_source_formats", "selected", "simplicity",
           "unavailable_on_serialized", "conversions", "conversion", "steps", "drift_step", "runner", "runner_names",
           "runtime_requirements", "triton_serving", "triton_backends", "native_backends", "load_attr", "load_plugins",
           "load_modules", "ENV_VAR", "ENTRY_POINT_GROUP"]
