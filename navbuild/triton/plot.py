"""The search plot: throughput against p99 latency for every configuration, the constraints, the winner."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from navbuild.triton.analyzer import Constraints


def plot_search(results: Mapping[str, Sequence[Mapping[str, Any]]], constraints: Constraints, path: Path,
                title: str, winner: str | None = None, default: str | None = None) -> Path:
    """Write a PNG: one line per configuration through its load points (concurrency ascending).

    The p99 budget is a vertical dashed line, a minimum throughput a horizontal one; the
    winner's chosen point is a star, Triton's default configuration is drawn dashed.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display here; must be set before pyplot is imported
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    try:
        for label, rows in results.items():
            pts = sorted(rows, key=lambda r: r["concurrency"])
            if not pts:
                continue
            style = "--" if label == default else "-"
            width = 2.5 if label == winner else 1.0
            name = f"{label} (Triton default)" if label == default else label
            ax.plot([r["p99_ms"] for r in pts], [r["throughput"] for r in pts], style, marker="o", markersize=3,
                    linewidth=width, label=name)
            if label == winner:
                best = max((r for r in pts if constraints.met_by(r)), key=lambda r: r["throughput"], default=None)
                if best is not None:
                    ax.plot([best["p99_ms"]], [best["throughput"]], marker="*", markersize=18, color="gold",
                            markeredgecolor="black", linestyle="none", label=f"winner: {label}")
        if constraints.p99_latency_ms is not None:
            ax.axvline(constraints.p99_latency_ms, color="red", linestyle=":",
                       label=f"p99 budget {constraints.p99_latency_ms:g} ms")
        if constraints.min_throughput is not None:
            ax.axhline(constraints.min_throughput, color="purple", linestyle=":",
                       label=f"min throughput {constraints.min_throughput:g}/s")
        ax.set_xlabel("p99 latency (ms)")
        ax.set_ylabel("throughput (inferences/s)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


__all__ = ["plot_search"]
