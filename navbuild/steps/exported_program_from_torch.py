"""ExportedProgramFromTorch: ``torch.export`` a torch model with dynamic axes to ``model.pt2``, proven to load in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

from navbuild.evidence import BakedShape, DataDependentBranch, is_data_dependent
from navbuild.model_io import TensorSpec
from navbuild.runners.torch_export_runner import IMPORTS_FILE
from navbuild.runners.torch_runner import load_torch_model, takes_names
from navbuild.runtime import TorchFactory
from navbuild.steps.base import Step, StepContext
from navbuild.steps.common import first_line, root_cause
from navbuild.steps.onnx_from_torch import EXAMPLE_BATCH, _signature_order
from navbuild.steps.torchscript_from_torch import CHECK_BATCH, _check_same, example_inputs


@dataclass(frozen=True)
class ExportedProgramFromTorchParams:
    factory: TorchFactory
    inputs: tuple[TensorSpec, ...]
    axes: Mapping[str, int]
    seed: int
    # the recipe's source.packages: modules a fresh process may need imported before the
    # program loads (output classes their package registers in torch's pytree)
    packages: tuple[str, ...] = ()


#: seconds the fresh-process load check may take (importing a large package included)
LOAD_CHECK_TIMEOUT_S = 300


class ExportedProgramFromTorch(Step):
    """Export the torch source with ``torch.export`` (every named axis dynamic) to ``model.pt2``."""

    name: ClassVar[str] = "ExportedProgramFromTorch"
    # 2: the program is proven to load in a fresh process; imports.json names what that needs
    version: ClassVar[int] = 2
    Params: ClassVar[type] = ExportedProgramFromTorchParams
    requires: ClassVar[tuple[str, ...]] = ("torch",)
    tools: ClassVar[tuple[str, ...]] = ("torch",)

    def run(self, params: ExportedProgramFromTorchParams, ctx: StepContext) -> dict:
        import torch


        model = load_torch_model(params.factory, ctx.inputs.get("source"))
        names = _signature_order(model, [s.name for s in params.inputs])
        examples = example_inputs(params, EXAMPLE_BATCH, params.seed, names)

        positional = not takes_names(model, names)
        program, how = export_dynamic(model, examples, params, names, positional)
        _strip_stack_traces(program)
        path = ctx.out / "model.pt2"
        torch.export.save(program, str(path))
        imports = _fresh_load_imports(path, params)
        if imports:
            (ctx.out / IMPORTS_FILE).write_text(json.dumps(imports))
        loaded = torch.export.load(str(path)).module()
        for batch, seed in ((EXAMPLE_BATCH, params.seed), (CHECK_BATCH, params.seed + 1)):
            _check_same(model, loaded, example_inputs(params, batch, seed, names), "export", batch)
        nodes = len(program.graph.nodes)
        size = path.stat().st_size
        print(f"model.pt2: {nodes} nodes, {size} bytes, {how} dims, reproduces eager at batch "
              f"{EXAMPLE_BATCH} and {CHECK_BATCH}", flush=True)
        return {"size_bytes": size, "nodes": nodes, "dims": how, "load_imports": imports}


#: how a fresh process loads a ``torch.export.save``-ed program (Python reading ``path``)
EXPORT_LOAD = "torch.export.load(path)"


def _fresh_load_imports(path: Path, params: Any, load: str = EXPORT_LOAD) -> list[str]:
    """The modules a fresh interpreter must import before ``load`` (Python code reading ``path``)
    works (``params``: the conversion's, with ``factory`` and ``packages``).

    A program whose outputs are classes a package registers in torch's pytree (transformers'
    ModelOutput) loads only where that package is imported. It is loaded in a new process
    as is; if that fails, again after importing ``source.packages`` and the factory's module,
    whose names are then returned (the runner imports them before loading). Raises
    RuntimeError, naming the loader's own error, when neither loads.
    """
    modules = list(dict.fromkeys([p.replace("-", "_") for p in params.packages]
                                 + [params.factory.factory.partition(":")[0]]))
    modules = [m for m in modules if m and m != "navbuild"]  # navbuild:serialized-source
    bare = _load_in_fresh_process(path, [], load)
    if not bare:
        return []
    print(f"model.pt2 does not load in a fresh process ({bare}); retrying after importing "
          f"{', '.join(modules) or 'nothing'}", flush=True)
    problem = _load_in_fresh_process(path, modules, load) if modules else bare
    if problem:
        raise RuntimeError(f"model.pt2 does not load in a fresh process, even after importing "
                           f"{', '.join(modules) or 'nothing'}: {problem} (list the package that "
                           "defines the model's output classes in source.packages)")
    print(f"model.pt2 loads in a fresh process after importing {', '.join(modules)}", flush=True)
    return modules


def _load_in_fresh_process(path: Path, modules: list[str], load: str = EXPORT_LOAD) -> str:
    """"" if a new interpreter that imports ``modules`` runs ``load`` (Python code reading ``path``,
    with torch imported); else its root-cause line."""
    code = ("import importlib, sys, torch\n"
            "path = sys.argv[1]\n"
            "for m in sys.argv[2:]: importlib.import_module(m)\n"
            f"{load}\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, "-c", code, str(path), *modules], env=env, capture_output=True,
                          text=True, timeout=LOAD_CHECK_TIMEOUT_S, stdin=subprocess.DEVNULL)
    if proc.returncode == 0:
        return ""
    return _error_line(proc.stderr) or f"exit code {proc.returncode}"


def _error_line(stderr: str) -> str:
    """The line of a failed load's stderr that says why: torch logs the deserializer's own error
    (``NotImplementedError: Deserializing ... is not registered``) as a warning before raising a
    generic one, so the first ``...Error:`` line of that log wins over the last."""
    lines = [ln.split("] ", 1)[-1].strip() for ln in stderr.splitlines()]
    errors = [ln for ln in lines if ln.partition(":")[0].endswith(("Error", "Exception"))
              and " " not in ln.partition(":")[0]]
    return errors[0] if errors else (lines[-1] if lines else "")


def _export(model: Any, examples: dict[str, Any], params: ExportedProgramFromTorchParams,
            positional: bool = False) -> tuple[Any, str]:
    """``torch.export.export`` with one named ``Dim`` per axis name, else ``Dim.AUTO`` on every named dim.

    Named Dims state the intent (same name, same size) and fail on any relation between axes
    the model imposes (``seq == 2 * batch``, a reshape); ``Dim.AUTO`` lets torch infer those
    relations instead, and ``_specialized_axes`` then says if it fell back to a constant.
    """
    import torch

    def shapes(dim_for: Any) -> Any:
        by_name = {spec.name: {i: dim_for(axis) for i, axis in spec.dynamic_axes().items()}
                   for spec in params.inputs if spec.name in examples}
        # positional inputs (a forward that does not take the names) take a tuple, in their order
        return tuple(by_name.get(n, {}) for n in examples) if positional else by_name

    def export(dynamic_shapes: Any) -> Any:
        if positional:
            return torch.export.export(model, tuple(examples.values()), dynamic_shapes=dynamic_shapes)
        return torch.export.export(model, (), examples, dynamic_shapes=dynamic_shapes)

    dims: dict[str, Any] = {}
    with warnings.catch_warnings():
        # torch warns that shared Dim names "will not be used" — sharing is the intent
        warnings.filterwarnings("ignore", message=r"# The axis name")
        try:
            named = shapes(lambda axis: dims.setdefault(axis, torch.export.Dim(axis)))
            return export(named), "named"
        except Exception as first:  # noqa: BLE001 - retry with inferred relations, report both
            print(f"named Dims failed ({type(first).__name__}: {first_line(first)}); retrying with Dim.AUTO",
                  flush=True)
            try:
                auto = shapes(lambda axis: torch.export.Dim.AUTO)
                return export(auto), "auto"
            except Exception as second:
                # a branch on values is news about the model: every trace of it bakes one side
                error = DataDependentBranch if is_data_dependent(second) or is_data_dependent(first) else RuntimeError
                raise error(f"torch.export failed: {root_cause(first)}; "
                            f"with Dim.AUTO: {root_cause(second)}") from second


def _strip_stack_traces(program: Any) -> None:
    """Drop the nodes' Python stack traces (source paths, line numbers) before saving.

    Without this the same model exported from another checkout, or with a comment added above
    ``forward``, gives different bytes and every target downstream rebuilds.
    """
    for module in program.graph_module.modules():
        graph = getattr(module, "graph", None)
        for node in getattr(graph, "nodes", ()):
            node.meta.pop("stack_trace", None)


def export_dynamic(model: Any, examples: dict[str, Any], params: Any, names: list[str],
                   positional: bool) -> tuple[Any, str]:
    """``_export``, then BakedShape unless every named axis stayed dynamic: the program and how its dims
    were made ("named" or "auto"). ``names``: the inputs in forward's order."""
    program, how = _export(model, examples, params, positional)
    specialized = _specialized_axes(program, params, names if positional else None)
    if specialized:
        raise BakedShape("torch.export made axes static: " + ", ".join(specialized)
                         + " (the model computes with that size as a Python int or branches on it)")
    return program, how


def _specialized_axes(program: Any, params: ExportedProgramFromTorchParams,
                      positional: list[str] | None = None) -> list[str]:
    """``"input.dim (axis) = size"`` for every named input dim the program holds as a constant.

    ``positional``: the recipe names in the order they were passed positionally (the program's
    placeholders then carry forward's parameter names, not the recipe's).
    """
    from torch.fx.experimental.symbolic_shapes import is_concrete_int

    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    user_inputs = list(program.graph_signature.user_inputs)
    if positional is not None:
        placeholders = {name: placeholders.get(user) for name, user in zip(positional, user_inputs)}
        user_inputs = list(positional)
    out = []
    for spec in params.inputs:
        node = placeholders.get(spec.name) if spec.name in user_inputs else None
        value = node.meta.get("val") if node is not None else None
        if value is None:
            continue  # an input the program dropped (unused) has no shape to check
        for i, axis in spec.dynamic_axes().items():
            # a dim torch specialized can still be a SymInt, one whose expression is a constant
            if is_concrete_int(value.shape[i]):
                out.append(f"{spec.name}.{i} ({axis}) = {int(value.shape[i])}")
    return out


__all__ = ["ExportedProgramFromTorch", "ExportedProgramFromTorchParams", "IMPORTS_FILE", "export_dynamic"]
