"""Drift targets: where a reduced-precision variant's error comes from, layer by layer, against its fp32 model.

A drift step runs the variant's model and the fp32 model it was made from on the same batch of
the recipe's samples with every intermediate tensor as an output, measures each tensor's error
(relative L2 against the fp32 tensor of the same name) and ranks the layers by how much the
error grows across them. The runtime-specific part (which tensors exist, how a graph is run
with all of them marked) is each family's drift step (navbuild/steps/drift_onnx.py,
drift_openvino.py, drift_torch.py); the ranking, the files it writes and the recipe's ``drift`` section are here.

The output (``out/drift.json``) is a contract read by the accuracy-aware variants::

    {"variant", "compared_with", "metric", "samples", "batch",
     "layers": [{"name", "op_type", "error_before", "error_after", "growth", "position"}, ...],
     "along_graph": [{"name", "op_type", "error", "position"}, ...], "output_error"}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping, Sequence

from navbuild.lazy import lazy_import
from navbuild.runtime import TorchFactory
from navbuild.samples import read_npz, take_batch
from navbuild.settings import setting
from navbuild.steps.base import Step, StepContext
from navbuild.steps.reference import SAMPLES_FILE

np = lazy_import("numpy")

#: the error measure of every tensor: ||variant - fp32|| / max(||fp32||, _TINY)
METRIC = "relative_l2"
#: which tensors are compared: every float tensor a node outputs in both graphs
TENSORS = "all"
DRIFT_FILE = "drift.json"
PLOT_FILE = "drift.png"
#: floor of the denominator, so an all-zero fp32 tensor does not divide by zero
_TINY = 1e-12
#: fp32 values at least this large are masks (attention's -3.4e38), not values: not compared
_MASK = 1e30
#: ops whose output is a shape (ONNX, OpenVINO): it carries no error of their input's values
_SHAPE_OPS = frozenset({"Shape", "Size", "ShapeOf"})


@dataclass
class DriftConfig:
    """The recipe's ``drift``: a ``drift/<variant>`` target for every reduced-precision variant whose
    family declares one, ranking the layers where its error grows the most."""

    enabled: bool = setting(True, doc="compare every intermediate tensor of int8/fp16/bf16 variants with "
                                      "their fp32 model (drift/<variant> targets)")
    top: int = setting(5, minimum=1, doc="how many of the layers where the error grows most the report shows "
                                         "(and the plot names); drift.json ranks them all")


@dataclass(frozen=True)
class DriftParams:
    """What defines a drift target: the variant, the fp32 model it is compared with, the batch, the measure."""

    variant: str          # the variant whose model (and runtime mode) is compared
    compared_with: str    # the fp32 model it was made from (a target id or "source")
    batch: int            # rows of the samples both models run on (the largest profiled batch size)
    top: int = 5          # layers the plot names
    mode: str = ""        # the variant's runtime mode (OpenVINO's bf16 hint, torch's casts), "" for none
    factory: TorchFactory | None = None  # how a torch variant's source model is made (its runtime modes)
    metric: str = METRIC
    tensors: str = TENSORS


# ----------------------------------------------------------------------------- the ranking (pure)

@dataclass(frozen=True)
class Node:
    """One node of a graph as the ranking sees it: its name, op type and tensor names in and out."""

    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def relative_l2(actual: Any, expected: Any) -> float:
    """||actual - expected|| / max(||expected||, tiny), in float64, over the elements whose fp32 value is
    a value rather than a mask (finite, magnitude below _MASK); a non-finite difference there is infinite.

    An attention mask adds -3.4e38 to the scores it hides: counted, it would make every error in
    the scores beside it vanish against its norm (and the Softmax after it look like the culprit)."""
    a = np.asarray(actual, dtype=np.float64).ravel()
    e = np.asarray(expected, dtype=np.float64).ravel()
    values = np.isfinite(e) & (np.abs(np.nan_to_num(e)) < _MASK)
    a, e = a[values], e[values]
    diff = np.where(a == e, 0.0, a - e)
    if not np.isfinite(diff).all():
        return float("inf")
    return float(np.linalg.norm(diff) / max(float(np.linalg.norm(e)), _TINY))


def owners(nodes: Sequence[Node], helpers: Iterable[str]) -> dict[str, Node]:
    """Tensor -> the node that really computes it: its producer, or, where that is a helper
    (quantize/dequantize, cast), the first non-helper node found walking back through helpers'
    first inputs (``y = DequantizeLinear(QuantizeLinear(Gemm(...)))`` is owned by the Gemm)."""
    helpers = frozenset(helpers)
    producer = {t: n for n in nodes for t in n.outputs}
    found: dict[str, Node] = {}
    for tensor, node in producer.items():
        seen = set()
        while node.op_type in helpers and node.inputs and node.inputs[0] in producer and node.name not in seen:
            seen.add(node.name)
            node = producer[node.inputs[0]]
        if node.op_type not in helpers:
            found[tensor] = node
    return found


def rank_layers(variant_nodes: Sequence[Node], fp32_nodes: Sequence[Node], errors: Mapping[str, float],
                helpers: Iterable[str]) -> tuple[list[dict], list[dict]]:
    """(layers ranked by error growth, largest first; the same layers in graph order) of a variant.

    ``errors``: tensor -> its error in the variant, for the tensors compared (float, in both graphs).
    A layer is a non-helper node of the variant's graph that owns a compared tensor (its first
    one). It is named by the variant's node where the fp32 graph has a node of that name (what a
    quantizer's ``nodes_to_exclude`` takes), else by the fp32 node that produced the tensor (a
    quantizer that rewrote the node under new names still excludes it by the old one).
    ``error_after``: the tensor's error; ``error_before``: the largest error among the inputs of
    the fp32 node that produced it, an input that was not compared standing for the inputs of
    its own producer (a fusion hides intermediate tensors), graph inputs and weights 0.
    ``position``: the layer's index in graph order.
    """
    helpers = frozenset(helpers)
    owner = owners(variant_nodes, helpers)
    fp32_producer = {t: n for n in fp32_nodes for t in n.outputs}
    fp32_names = {n.name for n in fp32_nodes}
    order = {n.name: i for i, n in enumerate(variant_nodes)}
    # the error each fp32 tensor carries into its consumers: its own where it was compared, else
    # the largest its producer's inputs carry (one pass in graph order; a shape carries none)
    carried: dict[str, float] = {}
    for n in fp32_nodes:
        inherited = 0.0 if n.op_type in _SHAPE_OPS else max((carried.get(i, 0.0) for i in n.inputs if i), default=0.0)
        for t in n.outputs:
            carried[t] = errors.get(t, inherited)

    def before(tensor: str) -> float:
        return errors.get(tensor, carried.get(tensor, 0.0))

    found: dict[str, dict] = {}
    for tensor, error in errors.items():
        node = owner.get(tensor)
        if node is None or node.op_type in helpers:
            continue
        origin = fp32_producer.get(tensor)
        if node.name in fp32_names or origin is None:
            name, op_type = node.name, node.op_type
        else:
            name, op_type = origin.name, origin.op_type
        inputs = origin.inputs if origin is not None else node.inputs
        error_before = max((before(i) for i in inputs if i), default=0.0)
        rank_key = (order.get(node.name, len(order)), _output_index(node, tensor))
        if name in found and found[name]["_key"] <= rank_key:
            continue  # a layer is measured at its first compared output
        found[name] = {"name": name, "op_type": op_type, "error_before": float(error_before),
                       "error_after": float(error), "growth": _growth(error, error_before),
                       "_key": rank_key}
    along = sorted(found.values(), key=lambda r: r["_key"])
    for position, row in enumerate(along):
        row["position"] = position
        del row["_key"]
    layers = sorted(along, key=lambda r: (-_finite(r["growth"]), r["position"]))
    return layers, [{"name": r["name"], "op_type": r["op_type"], "error": r["error_after"],
                     "position": r["position"]} for r in along]


def _output_index(node: Node, tensor: str) -> int:
    return node.outputs.index(tensor) if tensor in node.outputs else len(node.outputs)


def _growth(after: float, before: float) -> float:
    """after - before; 0 where both are the same (an infinite error that stays infinite adds nothing)."""
    return 0.0 if after == before else float(after - before)


def _finite(value: float) -> float:
    """Infinite growth ranks first, NaN last."""
    return value if value == value else float("-inf")


def tensor_errors(variant: Mapping[str, Any], fp32: Mapping[str, Any],
                  stand_ins: Mapping[str, str] | None = None) -> dict[str, float]:
    """Tensor -> relative L2 error of every float tensor of the same name and shape in both runs.

    ``stand_ins`` maps a tensor to the variant tensor whose value its consumers see instead
    (see drift_onnx: an activation a quantizer fused into its Q/DQ pair)."""
    stand_ins = stand_ins or {}
    errors: dict[str, float] = {}
    for name, expected in fp32.items():
        actual = variant.get(stand_ins.get(name, name))
        if actual is None or not _is_float(actual) or not _is_float(expected):
            continue
        if tuple(np.shape(actual)) != tuple(np.shape(expected)):
            continue
        errors[name] = relative_l2(actual, expected)
    return errors


def _is_float(array: Any) -> bool:
    return np.issubdtype(np.asarray(array).dtype, np.floating)


def output_error(variant: Mapping[str, Any], fp32: Mapping[str, Any], outputs: Sequence[str]) -> float | None:
    """The largest relative L2 error among the model's outputs (None when none could be compared)."""
    errors = tensor_errors({o: variant[o] for o in outputs if o in variant},
                           {o: fp32[o] for o in outputs if o in fp32})
    return max(errors.values()) if errors else None


# ----------------------------------------------------------------------------- the step

@dataclass(frozen=True)
class GraphRun:
    """One model run with every tensor marked: its nodes in topological order, its tensors by name
    and its outputs' names."""

    nodes: tuple[Node, ...]
    tensors: Mapping[str, Any]
    outputs: tuple[str, ...]


class NotMeasurable(Exception):
    """This machine cannot run the variant as it is meant to run (a bf16 hint on a CPU without bf16):
    the drift target ends with the reason, not as a failure (its check says the same)."""


class DriftStep(Step):
    """Compare every intermediate tensor of a variant with its fp32 model's and rank the layers.

    Subclasses say how a family's graphs are run with every tensor marked (``run_graphs``) and
    which op types are helpers of quantization rather than layers (``helpers``).
    """

    Params: ClassVar[type] = DriftParams
    helpers: ClassVar[frozenset[str]] = frozenset()

    def run_graphs(self, params: DriftParams, variant: Path, fp32: Path,
                   feeds: Mapping[str, Any]) -> tuple[GraphRun, GraphRun, dict[str, str]]:
        """(the variant's run, the fp32 model's run, stand-ins for tensor_errors) on ``feeds``."""
        raise NotImplementedError

    def local_errors(self, variant_model: Path, variant: GraphRun, fp32: GraphRun) -> dict[str, float]:
        """Layer name -> the error the layer's own quantization makes: the layer run on the fp32
        model's inputs, quantized as the variant quantizes them, against the fp32 layer. In a
        fully quantized graph every layer reads inputs that are already wrong, so the growth
        across a layer says little about its own share; this does. Empty where a family cannot
        tell (the default)."""
        return {}

    def run(self, params: DriftParams, ctx: StepContext) -> dict:
        samples = read_npz(Path(ctx.inputs["reference"]) / SAMPLES_FILE)
        count = min((int(a.shape[0]) for a in samples.values()), default=0)
        batch = max(1, min(params.batch, count))  # no tiling: every row a distinct sample
        feeds = take_batch(samples, batch)
        print(f"drift of {params.variant} against {params.compared_with}: every tensor on {batch} of "
              f"{count} samples", flush=True)
        try:
            variant, fp32, stand_ins = self.run_graphs(params, Path(ctx.inputs["model"]), Path(ctx.inputs["fp32"]),
                                                       feeds)
        except NotMeasurable as e:
            print(f"not measured: {e}", flush=True)
            return {"variant": params.variant, "compared_with": params.compared_with, "not_measured": str(e),
                    "layers": [], "top": params.top}
        errors = tensor_errors(variant.tensors, fp32.tensors, stand_ins)
        layers, along = rank_layers(variant.nodes, fp32.nodes, errors, self.helpers)
        local = self.local_errors(Path(ctx.inputs["model"]), variant, fp32)
        for row in layers:
            if row["name"] in local:
                row["local_error"] = _finite(local[row["name"]])
        if not layers:
            raise RuntimeError(f"no tensor of {params.variant} matches one of {params.compared_with} by name "
                               f"(the variant's graph has {len(variant.tensors)} tensors, the fp32 graph "
                               f"{len(fp32.tensors)}), so there is no layer to rank")
        report = {"variant": params.variant, "compared_with": params.compared_with, "metric": params.metric,
                  "samples": count, "batch": batch, "layers": layers, "along_graph": along,
                  "output_error": output_error(variant.tensors, fp32.tensors, fp32.outputs)}
        write_report(ctx.out, report)
        plot(ctx.out / PLOT_FILE, report, params.top)
        for row in layers[: params.top]:
            print(f"  {row['name']} ({row['op_type']}): {row['error_before']:.3g} -> {row['error_after']:.3g}",
                  flush=True)
        return {**{k: v for k, v in report.items() if k != "along_graph"}, "top": params.top,
                "compared_tensors": len(errors)}


def write_report(out: Path, report: Mapping[str, Any]) -> Path:
    """``out/drift.json``, the contract (keys in the documented order)."""
    path = out / DRIFT_FILE
    path.write_text(json.dumps(report, indent=1, allow_nan=True) + "\n")
    return path


def read_report(folder: Path) -> dict:
    """The drift.json of a drift target's folder."""
    return json.loads((Path(folder) / DRIFT_FILE).read_text())


def plot(path: Path, report: Mapping[str, Any], top: int) -> Path:
    """Error along the graph (x: position, y: relative L2, log scale), the ``top`` layers of the ranking named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    along = report["along_graph"]
    floor = 1e-12
    xs = [r["position"] for r in along]
    ys = [max(r["error"], floor) if r["error"] == r["error"] else floor for r in along]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    try:
        ax.plot(xs, ys, marker=".", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("position along the graph (topological order)")
        ax.set_ylabel(f"{report['metric']} error vs {report['compared_with']}")
        ax.set_title(f"drift of {report['variant']} against {report['compared_with']} "
                     f"(batch of {report['batch']} samples)")
        for row in report["layers"][:top]:
            y = ys[row["position"]]
            ax.scatter([row["position"]], [y], color="red", zorder=3)
            ax.annotate(f"{row['name']} (+{row['growth']:.2g})", (row["position"], y), fontsize=7,
                        xytext=(4, 6), textcoords="offset points", rotation=20)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


__all__ = ["DriftConfig", "DriftParams", "DriftStep", "NotMeasurable", "GraphRun", "Node", "rank_layers", "owners", "tensor_errors",
           "relative_l2", "output_error", "write_report", "read_report", "plot", "DRIFT_FILE",
           "PLOT_FILE", "METRIC", "TENSORS"]
