"""OnnxFromTorch: export a torch model to ONNX with dynamic axes (TorchScript exporter, falling back to dynamo, or dynamo)."""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

from navbuild.errors import InputError
from navbuild.evidence import trace_warnings
from navbuild.model_io import BATCH_AXIS, TensorSpec
from navbuild.runners.torch_runner import call_model, flatten_outputs, load_torch_model, takes_names
from navbuild.runtime import TorchFactory
from navbuild.samples import generate_samples
from navbuild.settings import params_of, setting
from navbuild.steps.base import Step, StepContext
from navbuild.steps.common import first_line, resolve_output_names, root_cause

EXPORTERS: tuple[str, ...] = ("torchscript", "dynamo")
#: rows of the example input: 2, not 1, so that no exporter can treat the batch dim as a constant 1
EXAMPLE_BATCH = 2


@dataclass
class OnnxConfig:
    """The recipe's ``onnx``: how the torch source is exported to ONNX."""

    opset: int = setting(17, minimum=7, maximum=25, doc="ONNX opset of the export")
    exporter: str = setting("torchscript", choices=EXPORTERS,
                            doc="torch.onnx.export's TorchScript exporter (falling back to dynamo), or dynamo")


@dataclass(frozen=True)
class _ExportSource:
    """What the export reads besides the recipe's ``onnx`` section."""

    factory: TorchFactory
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[str, ...]
    axes: Mapping[str, int]
    seed: int


OnnxFromTorchParams = params_of(OnnxConfig, "OnnxFromTorchParams", __name__, bases=(_ExportSource,))


class OnnxFromTorch(Step):
    """Export the torch source to ``model.onnx`` with every named axis dynamic."""

    name: ClassVar[str] = "OnnxFromTorch"
    version: ClassVar[int] = 2  # 2: TracerWarnings recorded as evidence in the result
    Params: ClassVar[type] = OnnxFromTorchParams
    requires: ClassVar[tuple[str, ...]] = ("torch", "onnx")
    tools: ClassVar[tuple[str, ...]] = ("torch", "onnx", "onnxscript")

    def run(self, params: OnnxFromTorchParams, ctx: StepContext) -> dict:
        import onnx
        import torch


        if params.exporter not in EXPORTERS:
            raise ValueError(f"exporter '{params.exporter}' is not one of {EXPORTERS}")
        model = load_torch_model(params.factory, ctx.inputs.get("source"))
        examples = generate_samples(params.inputs, EXAMPLE_BATCH, params.seed, params.axes)
        # bind inputs by name: the ONNX graph inputs follow forward's signature order; a forward
        # that does not take the recipe's names gets them positionally, in the recipe's order
        input_names = _signature_order(model, [s.name for s in params.inputs])
        kwargs = {n: torch.from_numpy(examples[n]) for n in input_names}
        # a TorchScript module (a serialized source) binds only positional inputs
        positional = isinstance(model, torch.jit.ScriptModule) or not takes_names(model, input_names)

        with torch.no_grad():
            try:
                result = call_model(model, kwargs, not positional)
            except Exception as e:
                raise InputError(f"source: the model raised on example inputs at batch "
                                 f"{EXAMPLE_BATCH}: {type(e).__name__}: {first_line(e)}") from e
        model_names, traced = flatten_outputs(result)
        resolve_output_names(params.outputs, model_names, len(traced), True)  # raises on mismatch
        # the exporters name graph outputs by position in the model's own output order, so
        # named (dict) outputs keep the model's order; consumers match outputs by name
        output_names = model_names if model_names is not None else \
            resolve_output_names(params.outputs, None, len(traced), False)

        path = ctx.out / "model.onnx"
        export = _Export(model, kwargs, positional, input_names, output_names, traced, params, path)
        exporter, fallback = params.exporter, None
        if exporter == "torchscript":
            try:
                export.torchscript()
            except Exception as e:  # noqa: BLE001 - the dynamo exporter handles much of what it cannot
                fallback = root_cause(e)
            if fallback:
                print(f"the TorchScript exporter failed ({fallback}); retrying with the dynamo exporter",
                      flush=True)
                _remove_outputs(ctx.out)
                export.evidence.clear()  # the dynamo exporter does not trace: the tracer's words do not apply
                exporter = "dynamo"
                try:
                    export.dynamo()
                except Exception as second:
                    raise RuntimeError(f"the TorchScript exporter failed: {fallback}; the dynamo exporter "
                                       f"too: {root_cause(second)}") from second
        else:
            try:
                export.dynamo()
            except Exception as e:
                raise RuntimeError(f"the dynamo exporter failed: {root_cause(e)} (onnx.exporter=torchscript "
                                   "tries the TorchScript exporter first)") from e

        onnx.checker.check_model(str(path))
        proto = onnx.load(str(path), load_external_data=False)
        graph_inputs = [i.name for i in proto.graph.input]
        unexpected = [n for n in graph_inputs if n not in input_names]
        if unexpected:
            raise RuntimeError(f"exported graph has inputs {graph_inputs}, expected a subset of {input_names}")
        size = sum(p.stat().st_size for p in ctx.out.iterdir() if p.is_file())
        print(f"model.onnx: {len(proto.graph.node)} nodes, {size} bytes ({exporter} exporter)", flush=True)
        # what the tracer said about this model: every variant derived from this trace carries it
        result = {"exporter": exporter, "opset": params.opset, "nodes": len(proto.graph.node), "size_bytes": size,
                  "evidence": export.evidence}
        if fallback:
            # which exporter ran is a deterministic function of the model and the params, so the
            # key stays honest; the result says why the first one did not
            result["fallback_from"] = {"exporter": "torchscript", "error": fallback}
        return result


class _Export:
    """The two exporters on one prepared model and example inputs, each writing ``path``."""

    def __init__(self, model: Any, kwargs: dict[str, Any], positional: bool, input_names: list[str],
                 output_names: list[str], traced: list[Any], params: OnnxFromTorchParams, path: Path) -> None:
        self.model, self.kwargs, self.positional = model, kwargs, positional
        self.input_names, self.output_names, self.traced = input_names, output_names, traced
        self.params, self.path = params, path
        self.evidence: list[dict] = []  # the tracer's warnings (TracerWarning) during the export

    def torchscript(self) -> None:
        import torch

        params = self.params
        print(f"exporting with the torchscript exporter, opset {params.opset}", flush=True)
        dynamic_axes = _dynamic_axes(params, self.traced, self.output_names)
        print(f"dynamic axes: {dynamic_axes}", flush=True)
        with warnings.catch_warnings(), trace_warnings(self.evidence):
            # the legacy exporter announces its own deprecation on every call
            warnings.simplefilter("ignore", DeprecationWarning)
            args = tuple(self.kwargs.values()) if self.positional else ()
            torch.onnx.export(self.model, args, str(self.path), kwargs=None if self.positional else self.kwargs,
                              dynamo=False, input_names=self.input_names, output_names=self.output_names,
                              dynamic_axes=dynamic_axes, opset_version=params.opset, do_constant_folding=True)

    def dynamo(self) -> None:
        print(f"exporting with the dynamo exporter, opset {self.params.opset}", flush=True)
        _export_dynamo(self.model, self.kwargs, self.params, self.output_names, self.path,
                       self.input_names if self.positional else None)


def _remove_outputs(folder: Path) -> None:
    """Delete what a failed export left in ``folder`` (a partial model.onnx, its data file)."""
    for p in folder.iterdir():
        if p.is_file():
            p.unlink()


def _signature_order(model: Any, names: list[str]) -> list[str]:
    """``names`` ordered as forward's parameters (names forward does not list keep their order last).

    A forward that does not take the names (``nn.Sequential``'s ``input``) gets them
    positionally, so they keep the recipe's order.
    """

    if not takes_names(model, names):
        return list(names)
    schema = getattr(getattr(model, "forward", None), "schema", None)
    try:
        if schema is not None:  # TorchScript: the schema names forward's arguments (self first)
            params = [a.name for a in schema.arguments][1:]
        else:
            params = list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return names
    ordered = [p for p in params if p in names]
    return ordered + [n for n in names if n not in ordered]


def _dynamic_axes(params: OnnxFromTorchParams, traced: list[Any],
                  output_names: list[str]) -> dict[str, dict[int, str]]:
    """dynamic_axes for the TorchScript exporter.

    Inputs: every named dim. Outputs: dim 0 is the batch when it has the example batch size,
    and a later dim is named after a non-batch dynamic axis whose example size it equals
    (e.g. the sequence dim of hidden states); the first matching axis wins.
    """
    axes: dict[str, dict[int, str]] = {s.name: s.dynamic_axes() for s in params.inputs if s.dynamic_axes()}
    sizes = {name: int(size) for name, size in params.axes.items()
             if any(name in s.dynamic_axes().values() for s in params.inputs) and name != BATCH_AXIS}
    for name, t in zip(output_names, traced):
        out: dict[int, str] = {}
        for i, d in enumerate(t.shape):
            if i == 0 and d == EXAMPLE_BATCH:
                out[0] = BATCH_AXIS
            elif i > 0:
                match = next((a for a, s in sizes.items() if s == d), None)
                if match is not None:
                    out[i] = match
        if out:
            axes[name] = out
    return axes


def _export_dynamo(model: Any, kwargs: dict[str, Any], params: OnnxFromTorchParams,
                   output_names: list[str], path: Path, positional_names: list[str] | None = None) -> None:
    """Export with ``torch.export`` + the ONNX translator; one ``Dim`` object per axis name.

    With ``positional_names`` the inputs go positionally (in that order) and the graph inputs
    get those names instead of forward's parameter names.
    """
    import torch

    dims: dict[str, Any] = {}
    dynamic_shapes: dict[str, dict[int, Any]] = {}
    for spec in params.inputs:
        dynamic_shapes[spec.name] = {
            i: dims.setdefault(axis, torch.export.Dim(axis)) for i, axis in spec.dynamic_axes().items()}
    args: tuple[Any, ...] = ()
    named: dict[str, Any] = {}
    if positional_names is not None:
        args = tuple(kwargs[n] for n in positional_names)
        shapes: Any = tuple(dynamic_shapes[n] for n in positional_names)
        kwargs, named = {}, {"input_names": list(positional_names)}
    else:
        shapes = dynamic_shapes
    with warnings.catch_warnings():
        # torch warns when inputs share a Dim ("axis name ... will not be used") — sharing is the
        # intent — and about its own pytree internals; neither is actionable for the user
        warnings.filterwarnings("ignore", message=r"# The axis name")
        warnings.filterwarnings("ignore", message=r".*LeafSpec", category=FutureWarning)
        program = torch.onnx.export(model, args, kwargs=kwargs or None, dynamic_shapes=shapes,
                                    dynamo=True, opset_version=params.opset,
                                    output_names=output_names, **named)
    if program is None:
        raise RuntimeError("torch.onnx.export(dynamo=True) returned no program")
    _strip_stack_traces(program.model)
    # external_data=None lets torch decide: one file below the 2 GB protobuf limit, else
    # weights beside it in model.onnx.data
    program.save(str(path))


#: node metadata the dynamo exporter fills with Python stack traces (absolute source paths, line numbers)
_STACK_TRACE_KEY = "pkg.torch.onnx.stack_trace"


def _strip_stack_traces(model: Any) -> None:
    """Drop stack-trace metadata so the file does not depend on where the code is installed.

    Without this, the same model exported from another checkout, venv or with a comment
    added above ``forward`` gives different bytes, and every downstream target rebuilds.
    """
    from onnx_ir.traversal import RecursiveGraphIterator

    graphs = [model.graph, *model.functions.values()]
    for graph in graphs:
        for node in RecursiveGraphIterator(graph):
            node.metadata_props.pop(_STACK_TRACE_KEY, None)


__all__ = ["OnnxFromTorch", "OnnxFromTorchParams", "OnnxConfig", "EXPORTERS"]
