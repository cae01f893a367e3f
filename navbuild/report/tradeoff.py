"""The trade-off plot: every correct variant's latency against its accuracy figure, the budget, the chosen one."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from navbuild.steps.correctness import budget_ratio

TRADEOFF_FILE = "tradeoff.png"
#: the accuracy axis without a recipe metric
RATIO = "worst error ratio (1 = the budget)"


def accuracy_figure(row: Mapping[str, Any]) -> tuple[float, str] | None:
    """A checked variant's accuracy figure and its name: the recipe metric's worst value when the check has
    one, else the worst error ratio over batch sizes and outputs (:func:`budget_ratio` against the variant's
    own precision's budget: <= 1 within it). None for a variant with no figures."""
    corr = row.get("correctness") or {}
    metric = _metric(row)
    if metric.get("worst") is not None:
        return float(metric["worst"]), metric["name"]
    ratios = [budget_ratio(m, float(corr.get("atol") or 0.0), float(corr.get("range_rtol") or 0.0),
                           corr.get("cosine_min"))
              for report in (corr.get("batches") or {}).values() for m in (report or {}).values()
              if isinstance(m, Mapping)]
    return (max(ratios), RATIO) if ratios else None


def _metric(row: Mapping[str, Any]) -> Mapping[str, Any]:
    return (row.get("correctness") or {}).get("metric") or {}


def tradeoff_points(summary: Mapping[str, Any], percentile: str) -> list[dict]:
    """(variant, latency at the ranking's batch size, accuracy figure) of every correct, profiled variant;
    the reference (the source itself) is exact: error ratio 0 (it has no metric value)."""
    batch = str(summary["best"].get("batch_size"))
    metric_axis = any(_metric(row).get("name") for row in summary["variants"].values())
    points = []
    for name, row in summary["variants"].items():
        if row["verdict"] not in ("pass", "reference") or batch not in (row.get("profile") or {}):
            continue
        if row["verdict"] == "reference":
            figure = None if metric_axis else (0.0, RATIO)
        else:
            figure = accuracy_figure(row)
        if figure is not None:
            points.append({"variant": name, "latency_ms": row["profile"][batch]["latency_ms"][percentile],
                           "figure": figure[0], "figure_name": figure[1], "precision": row.get("precision", "")})
    return points


def budget_line(summary: Mapping[str, Any]) -> float | None:
    """Where the budget lies on the accuracy axis: the metric's bound, or 1 for the error ratio."""
    for row in summary["variants"].values():
        metric = _metric(row)
        if metric.get("name"):
            return metric["min"] if metric.get("min") is not None else metric.get("max")
    return 1.0


def write_tradeoff(build_dir: Path, summary: Mapping[str, Any], percentile: str) -> Path | None:
    """``<build dir>/tradeoff.png`` (None when fewer than one variant has both figures). matplotlib draws
    it, imported here: only a build that has something to plot pays for it."""
    points = tradeoff_points(summary, percentile)
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display here; must be set before pyplot is imported
    import matplotlib.pyplot as plt

    chosen = summary["best"].get("variant")
    path = build_dir / TRADEOFF_FILE
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    try:
        for precision in sorted({p["precision"] for p in points}):
            mine = [p for p in points if p["precision"] == precision]
            ax.scatter([p["figure"] for p in mine], [p["latency_ms"] for p in mine], label=precision, zorder=3)
        for p in points:
            ax.annotate(p["variant"], (p["figure"], p["latency_ms"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
            if p["variant"] == chosen:
                ax.plot([p["figure"]], [p["latency_ms"]], marker="*", markersize=18, color="gold",
                        markeredgecolor="black", linestyle="none", label=f"chosen: {chosen}", zorder=4)
        line = budget_line(summary)
        if line is not None:
            ax.axvline(line, color="red", linestyle=":", label=f"budget ({line:g})")
        ax.set_xlabel(points[0]["figure_name"])
        ax.set_ylabel(f"{percentile} latency (ms) at batch {summary['best'].get('batch_size')}")
        ax.set_title(f"recipe {summary['recipe']}: latency against accuracy of the correct variants")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


__all__ = ["write_tradeoff", "tradeoff_points", "accuracy_figure", "budget_line", "TRADEOFF_FILE"]
