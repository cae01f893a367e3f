"""Choosing the best Triton configuration: load points under constraints, scored by the recipe's objective."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from navbuild.triton.analyzer import Constraints

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Choice:
    label: str
    row: Row  # the configuration's best load point
    score: float


def score_rows(rows: Sequence[Row], objective: str, weights: Mapping[str, float]) -> list[float]:
    """A score per load point (higher is better) for ``objective``: throughput, latency (p99) or weighted.

    Weighted scores are relative to the best throughput and the best p99 among ``rows``, so
    the two weights trade comparable numbers.
    """
    if objective == "throughput":
        return [float(r["throughput"]) for r in rows]
    if objective == "latency":
        return [-float(r["p99_ms"]) for r in rows]
    if objective == "weighted":
        top = max((float(r["throughput"]) for r in rows), default=1.0) or 1.0
        low = min((float(r["p99_ms"]) for r in rows), default=1.0) or 1.0
        wt, wl = float(weights.get("throughput", 0.0)), float(weights.get("latency", 0.0))
        return [wt * float(r["throughput"]) / top + wl * low / max(float(r["p99_ms"]), 1e-9) for r in rows]
    raise ValueError(f"unknown objective '{objective}'")


def rank(results: Mapping[str, Sequence[Row]], constraints: Constraints, objective: str,
         weights: Mapping[str, float]) -> list[Choice]:
    """Configurations that meet the constraints at some load point, best first, each at its best point.

    A configuration is judged at its best load point under the constraints (Model Analyzer's
    view too: the concurrency is the client's choice, the configuration is the server's).
    Ties in score go to the configuration listed first.
    """
    candidates = [(label, r) for label, rows in results.items() for r in rows if constraints.met_by(r)]
    if not candidates:
        return []
    scores = score_rows([r for _, r in candidates], objective, weights)
    best: dict[str, Choice] = {}
    for (label, r), s in zip(candidates, scores):
        if label not in best or s > best[label].score:
            best[label] = Choice(label, r, s)
    order = list(results)
    return sorted(best.values(), key=lambda c: (-c.score, order.index(c.label)))


def violation(row: Row, constraints: Constraints) -> float:
    """How far a load point is from meeting the constraints (0: it meets them), as relative excess."""
    excess = 0.0
    if constraints.p99_latency_ms is not None:
        excess += max(0.0, float(row["p99_ms"]) / constraints.p99_latency_ms - 1.0)
    if constraints.min_throughput is not None:
        excess += max(0.0, 1.0 - float(row["throughput"]) / constraints.min_throughput)
    for bound, memory in ((constraints.max_memory_mb, row.get("memory_mb")),
                          (constraints.max_gpu_memory_mb, row.get("gpu_memory_mb"))):
        if bound is not None and memory is not None:
            excess += max(0.0, float(memory) / bound - 1.0)
    return excess


def closest(results: Mapping[str, Sequence[Row]], constraints: Constraints, count: int = 3) -> list[dict[str, Any]]:
    """The load points nearest to meeting the constraints, one per configuration, nearest first."""
    nearest: dict[str, dict[str, Any]] = {}
    for label, rows in results.items():
        for r in rows:
            v = violation(r, constraints)
            if label not in nearest or v < nearest[label]["violation"]:
                nearest[label] = {"label": label, "violation": v, **dict(r)}
    return sorted(nearest.values(), key=lambda d: d["violation"])[:count]


__all__ = ["Choice", "rank", "score_rows", "violation", "closest"]
