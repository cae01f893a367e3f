"""What an ONNX source file accepts, read from its header at plan time: fixed input sizes, and weights listed as inputs."""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from navbuild.model_io import BATCH_AXIS


@dataclass(frozen=True)
class OnnxSourceFacts:
    """The parts of an ONNX file's graph the plan depends on."""

    ir_version: int
    #: graph inputs that are not weights: each dim's fixed size, or None where it is symbolic
    shapes: dict[str, tuple[int | None, ...]]
    #: initializers the graph also lists as inputs (how IR < 4 files store weights)
    weights_as_inputs: int
    #: the files beside it that hold its weights (external data), as the graph names them
    external_data: tuple[str, ...] = ()

    @property
    def needs_sanitizing(self) -> bool:
        """Whether ONNX Runtime's optimizer and quantizers need the file normalised first: with
        weights as graph inputs they keep them as overridable inputs and do not fold shapes."""
        return self.weights_as_inputs > 0


def read_onnx_source(path: Path) -> OnnxSourceFacts | None:
    """The facts of the ONNX file at ``path``; None where onnx is not installed or the file does
    not parse (the reference step then reports what is wrong with it)."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return _read(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read(path: str, size: int, mtime_ns: int) -> OnnxSourceFacts | None:
    # size and mtime are in the cache key so that a rewritten file is read again
    try:
        import onnx
    except ImportError:
        return None
    try:
        # the weights stay on disk: only the graph's structure is read
        proto = onnx.load(path, load_external_data=False)
    except Exception:  # noqa: BLE001 - not an ONNX file: the reference step says so, with its error
        return None
    weights = {i.name for i in proto.graph.initializer}
    shapes = {}
    for value in proto.graph.input:
        if value.name in weights:
            continue
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                                   for d in dims)
    return OnnxSourceFacts(ir_version=int(proto.ir_version), shapes=shapes,
                           weights_as_inputs=sum(1 for i in proto.graph.input if i.name in weights),
                           external_data=_external_locations(proto.graph))


def external_data_files(path: Path, facts: OnnxSourceFacts | None) -> tuple[Path, ...]:
    """The external data files of the ONNX file at ``path``: they define the model as much as
    the file itself does (a retrained model may change only its weights file)."""
    if facts is None:
        return ()
    return tuple(Path(path).parent / location for location in facts.external_data)


def _external_locations(graph: Any) -> tuple[str, ...]:
    """Every external data ``location`` of the graph's tensors (initializers, sparse initializers,
    tensor attributes, subgraphs), each once, in the order first met."""
    found: dict[str, None] = {}

    def tensor(t: Any) -> None:
        if t.data_location == 1:  # TensorProto.EXTERNAL
            for entry in t.external_data:
                if entry.key == "location":
                    found.setdefault(entry.value)

    def walk(g: Any) -> None:
        for t in g.initializer:
            tensor(t)
        for s in g.sparse_initializer:
            tensor(s.values)
            tensor(s.indices)
        for node in g.node:
            for a in node.attribute:
                if a.HasField("t"):
                    tensor(a.t)
                for t in a.tensors:
                    tensor(t)
                if a.HasField("g"):
                    walk(a.g)
                for sub in a.graphs:
                    walk(sub)

    walk(graph)
    return tuple(found)


def fixed_axes(recipe: Any, facts: OnnxSourceFacts) -> dict[str, int]:
    """Recipe axis name -> the size the ONNX file fixes it at (e.g. ``{"batch": 2}``).

    Only axes the recipe names are considered; an input or dim the file does not have, or two
    inputs fixing one axis at different sizes, is left for the reference step to report.
    """
    sizes: dict[str, set[int]] = {}
    for spec in recipe.inputs:
        dims = facts.shapes.get(spec.name)
        if dims is None or len(dims) != len(spec.shape):
            continue
        for axis, dim in zip(spec.shape, dims):
            if isinstance(axis, str) and dim is not None:
                sizes.setdefault(axis, set()).add(dim)
    return {axis: next(iter(s)) for axis, s in sizes.items() if len(s) == 1}


def accepted_recipe(recipe: Any, facts: OnnxSourceFacts | None, file_name: str) -> tuple[Any, list[str]]:
    """``recipe`` with its sizes restricted to what the ONNX file accepts, and notes saying so.

    A file that fixes the batch at N is checked, calibrated and profiled at batch N only; a
    fixed non-batch axis gets its fixed size in the samples. The recipe itself is not changed.
    """
    if facts is None:
        return recipe, []
    fixed = fixed_axes(recipe, facts)
    if not fixed:
        return recipe, []
    out = copy.deepcopy(recipe)
    notes = []
    batch = fixed.pop(BATCH_AXIS, None)
    if batch is not None:
        asked = sorted(recipe.profile.batch_sizes)
        out.profile.batch_sizes = [batch]
        out.samples.count = max(recipe.samples.count, batch)
        sta = out.quantization.static
        sta.batch_size = batch
        # every calibration batch must be full: the model takes exactly `batch` rows
        sta.max_samples = max(batch, min(out.samples.count, sta.max_samples) // batch * batch)
        if out.select.batch_size is not None:
            out.select.batch_size = batch
        notes.append(f"source.onnx: {file_name} fixes the batch at {batch}: checks, calibration and profiles "
                     f"run at batch {batch} only (profile.batch_sizes asked for {', '.join(map(str, asked))})")
    for axis, size in sorted(fixed.items()):
        asked_size = recipe.samples.axes.get(axis)
        out.samples.axes[axis] = size
        if asked_size != size:
            notes.append(f"source.onnx: {file_name} fixes axis '{axis}' at {size}: the samples use {size}"
                         + (f" (samples.axes asked for {asked_size})" if asked_size is not None else ""))
    return out, notes


__all__ = ["OnnxSourceFacts", "read_onnx_source", "fixed_axes", "accepted_recipe"]
