"""The variants' table (verdict, figures, evidence per variant) and the ranking chosen from it, once per build."""

from __future__ import annotations

from typing import Any, Mapping

from navbuild import formats
from navbuild.evidence import for_variant, gather, trace_risk, variant_lineage
from navbuild.planning.accuracy_search import searches
from navbuild.planning.graph import Graph
from navbuild.select import Choice, choose


def variant_models(graph: Graph) -> dict[str, str | None]:
    """Each variant of the graph (simplest first) and the target that builds its model (None: the source)."""
    return {v: graph.variant_models.get(v) for v in graph.variants()}


def rank(graph: Graph, outcomes: Mapping[str, Any], recipe: Any) -> Choice:
    """The correct variants ranked by the recipe's objective (``select``): the one ``choose`` of a build."""
    sel = recipe.select
    table = variant_table(outcomes, variant_models(graph), variant_lineage(graph),
                          recipe.correctness.accept_trace_risk, searches(graph))
    return choose(table, sel.objective, sel.batch_size, sel.percentile, sel.noise)


def variant_table(outcomes: dict[str, Any], variants: dict[str, str | None],
                  lineage: dict[str, dict] | None = None, accept_trace_risk: bool = False,
                  searches: dict[str, dict] | None = None) -> dict[str, dict]:
    """Per variant: verdict (and why), correctness figures, profile figures, artifact folder, and for an
    accuracy-aware variant its search (``searches``: navbuild.planning.accuracy_search.searches): the
    layers kept in fp32 and the trials; a search that met no budget fails the variant with its message.

    ``variants`` maps each variant (simplest first) to the target that builds its model;
    ``lineage`` (navbuild.evidence.variant_lineage) says how each was derived, so that what any
    conversion learnt about the model is shown on every variant derived the same way, and a
    variant built from an untrusted trace is ``blocked`` from being chosen unless accepted.
    """
    evidence = gather(outcomes)
    table: dict[str, dict] = {}
    for v, model in variants.items():
        check = outcomes.get(f"correctness/{v}")
        prof = outcomes.get(f"profile/{v}")
        conv = outcomes.get(model) if model else None
        row: dict[str, Any] = {"verdict": "reference" if v == "torch" else "unchecked", "reason": ""}
        spec = formats.variant(v)
        if spec is not None:
            row.update(precision=spec.precision, runner=spec.runner, mode=spec.mode)
            if spec.graph_level:
                row["graph_level"] = spec.graph_level
            if spec.note:
                row["note"] = spec.note
        if conv is not None and conv.status not in ("built", "cached"):
            row["verdict"] = conv.status
            row["reason"] = f"{v}: {conv.reason}"
        if (search := (searches or {}).get(v)) is not None:
            row["search"] = search
            if conv is None and search["done"]:
                row["verdict"], row["reason"] = "failed", search["message"]
        if check is not None:
            if check.status in ("built", "cached"):
                row["verdict"] = check.result.get("verdict", "unchecked")
                row["reason"] = check.result.get("reason", "")
                row["correctness"] = {k: check.result.get(k) for k in ("atol", "rtol", "worst", "metric",
                                                                         "tolerance_verdict", "batches",
                                                                         "range_rtol", "cosine_min", "probes",
                                                                         "probes_skipped")}
            elif row["verdict"] == "unchecked":
                row["verdict"] = check.status
                row["reason"] = f"correctness/{v}: {check.reason}"
        failing = conv if conv is not None and conv.status == "failed" else check
        if row["verdict"] not in ("pass", "reference") and getattr(failing, "log_path", None):
            row["log"] = str(failing.log_path)  # where the whole story of the failure is
        if prof is not None and prof.status in ("built", "cached"):
            row["profile"] = prof.result.get("batches", {})
            row["profile_conditions"] = prof.result.get("conditions")
            # the peak device memory of a GPU variant's profile; None where the runner reports none (CPU)
            row["peak_memory_mb"] = prof.result.get("peak_memory_mb")
            row["provisional"] = (prof.result.get("provisional") or {}).get("reason")
        elif prof is not None:
            row["profile_status"] = f"{prof.status}: {prof.reason}"
        drift = outcomes.get(f"drift/{v}")
        if drift is not None:
            row["drift"] = drift_row(drift)
        if conv is not None and conv.path is not None and conv.status in ("built", "cached"):
            row["artifact"] = str(conv.path)
        if (seen := for_variant(evidence, (lineage or {}).get(v))):
            row["evidence"] = seen
            risk = trace_risk(seen)
            if risk and row["verdict"] == "pass":
                if accept_trace_risk:
                    row["risk_accepted"] = risk
                else:
                    row["blocked"] = risk
        table[v] = row
    return table


def drift_row(outcome: Any) -> dict[str, Any]:
    """A variant's drift in the summary: its whole ranking (drift.json but the along-graph list) and
    its plot, or why there is none."""
    if outcome.status not in ("built", "cached"):
        return {"status": outcome.status, "reason": outcome.reason}
    plot = outcome.path / "drift.png" if outcome.path is not None else None
    return {"status": outcome.status, **outcome.result, "plot": str(plot) if plot is not None else None}
