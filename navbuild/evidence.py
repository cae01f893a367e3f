"""Evidence about a model that one conversion learns and every variant derived the same way must carry.

A trace records one path through the model: a TracerWarning during any trace, a trace that
diverged from eager torch, or a branch on values that ``torch.export`` refused, says that every
variant built from a trace of this model may be wrong on inputs the checks did not try.
Conversions record what they saw in their result (``evidence``: a list of {kind, concerns,
message, target}) or fail with one of the exception types below; the summary gathers it per
variant from the graph (:func:`variant_lineage`) and select keeps such variants from being
chosen unless ``correctness.accept_trace_risk`` is set. Pure: no torch import at module level.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from typing import Any, Iterator, Mapping

#: how a variant's model came from the torch source
TRACE, EXPORT, SCRIPT, EAGER, FILE = "trace", "export", "script", "eager", "file"
#: evidence kinds that make a traced variant a risk
TRACE_RISKS = ("trace-warning", "trace-divergence", "data-dependent", "baked-shape")
FIX = ("fix: use torchscript.method=script, or onnx.exporter=dynamo (torch.export refuses what a trace "
       "would bake), or make the branch a tensor op (torch.where); or set correctness.accept_trace_risk=true "
       "when the warned code cannot change the result")


class TraceDivergence(RuntimeError):
    """A traced model does not reproduce eager torch on inputs other than the trace's."""


class DataDependentBranch(RuntimeError):
    """``torch.export`` refused the model: it branches on tensor values (a trace would bake one side)."""


class BakedShape(RuntimeError):
    """A conversion made a declared dynamic axis a constant (the model computes with it as a Python int)."""


#: exception type name (as it opens a failed target's reason) -> evidence kind
_FAILURE_KINDS = {TraceDivergence.__name__: "trace-divergence", DataDependentBranch.__name__: "data-dependent",
                  BakedShape.__name__: "baked-shape"}
_DATA_DEPENDENT = re.compile(r"data-dependent|GuardOnDataDependent|[Dd]ynamic control flow|torch\.cond")


def is_data_dependent(error: BaseException) -> bool:
    """Whether a ``torch.export`` error says the model branches on tensor values."""
    return bool(_DATA_DEPENDENT.search(f"{type(error).__name__}: {error}"))


@contextlib.contextmanager
def trace_warnings(evidence: list[dict]) -> Iterator[None]:
    """Record every TracerWarning raised in the block into ``evidence`` (once per code location).

    The warnings are the tracer saying it baked a Python value (a shape as an int, a branch on a
    tensor's value) into the graph; other warnings pass through as usual.
    """
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        yield
    seen = {e["message"] for e in evidence}
    for w in caught:
        if not issubclass(w.category, torch.jit.TracerWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
            continue
        text = str(w.message).split(". ")[0].strip().rstrip(".")
        message = f"TracerWarning at {w.filename}:{w.lineno}: {text}"
        if message not in seen:
            seen.add(message)
            evidence.append({"kind": "trace-warning", "concerns": TRACE, "message": message})
            print(f"evidence: {message}", flush=True)


def derivation(step: str, params: Any) -> str | None:
    """How a conversion target makes its model from the torch source: trace, export, script; None
    for a conversion of another model (its upstream decides)."""
    if step == "OnnxFromTorch":
        return EXPORT if getattr(params, "exporter", "") == "dynamo" else TRACE
    if step == "TorchScriptFromTorch":
        return SCRIPT if getattr(params, "method", "") == "script" else TRACE
    if step == "ExportedProgramFromTorch":
        return EXPORT
    if step == "OpenVinoFromTorch":
        return TRACE  # OpenVINO's PyTorch frontend traces the module with its example input
    return None


def variant_lineage(graph: Any) -> dict[str, dict]:
    """Per variant: the conversion targets its model comes through (nearest first) and how the
    first one made it from the source (``trace``/``export``/``script``; ``eager`` for variants that
    run the source, ``file`` for a model given as a file)."""
    out: dict[str, dict] = {}
    for variant, model in graph.variant_models.items():
        chain: list[str] = []
        node = model
        while node in graph.targets and graph.targets[node].kind == "convert":
            chain.append(node)
            ups = [u for u in graph.targets[node].inputs.values() if u in graph.targets
                   and graph.targets[u].kind == "convert"]
            node = ups[0] if ups else None
        how = EAGER if model is None else FILE
        for tid in reversed(chain):
            target = graph.targets[tid]
            how = derivation(target.step, target.params) or how
            if how != FILE:
                break
        out[variant] = {"conversions": chain, "derivation": how}
    return out


def gather(outcomes: Mapping[str, Any]) -> list[dict]:
    """Every piece of evidence in a build: recorded by conversions, or the reason they failed."""
    found: list[dict] = []
    for o in outcomes.values():
        if o.kind != "convert":
            continue
        for e in (o.result or {}).get("evidence", []) if o.status in ("built", "cached") else []:
            found.append({**e, "target": o.id})
        if o.status == "failed":
            kind = _FAILURE_KINDS.get(str(o.reason).split(":", 1)[0].strip())
            if kind:
                found.append({"kind": kind, "concerns": TRACE, "message": o.reason, "target": o.id})
    return found


def for_variant(evidence: list[dict], lineage: Mapping[str, Any] | None) -> list[dict]:
    """The evidence that concerns a variant: about the way its model was derived from the source."""
    if not lineage:
        return []
    return [e for e in evidence if e.get("concerns") == lineage.get("derivation")]


def trace_risk(evidence: list[dict]) -> str:
    """Why a variant's trace is not trusted ("" when nothing says so)."""
    risky = [e for e in evidence if e.get("kind") in TRACE_RISKS]
    if not risky:
        return ""
    first = risky[0]
    more = f" (and {len(risky) - 1} more)" if len(risky) > 1 else ""
    return f"built from a trace that {first['target']} found unreliable: {first['message']}{more}; {FIX}"


__all__ = ["TraceDivergence", "DataDependentBranch", "BakedShape", "trace_warnings", "derivation",
           "variant_lineage", "gather", "for_variant", "trace_risk", "is_data_dependent", "TRACE_RISKS"]
