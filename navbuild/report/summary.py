"""The build summary: summary.json (machine-readable) and summary.txt (for people)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from navbuild.hardware import fingerprint
from navbuild.planning.ranking import variant_table
from navbuild.report.triton_summary import render_triton_text, triton_section
from navbuild.select import Choice, choose, choose_from_finalists, choose_per_batch
from navbuild.version import __version__


def make_summary(recipe: Any, recipe_file: Path | None, build_dir: Path, cache_dir: Path | str,
                 outcomes: dict[str, Any], variants: dict[str, str | None], seconds: float,
                 lineage: dict[str, dict] | None = None, ranking: Choice | None = None,
                 searches: dict[str, dict] | None = None) -> dict:
    """The summary of a build; ``ranking`` is the build's ranking of the variants (chosen here when
    the build stopped before it ranked them). The finalists' winner, when they ran, is the best.
    ``searches``: the accuracy-aware variants' searches (navbuild.planning.accuracy_search.searches)."""
    table = variant_table(outcomes, variants, lineage, recipe.correctness.accept_trace_risk, searches)
    sel = recipe.select
    finalists = outcomes.get("finalists")
    if finalists is not None and finalists.status in ("built", "cached"):
        best = choose_from_finalists(finalists.result, sel.objective, sel.noise)
    else:
        best = ranking or choose(table, sel.objective, sel.batch_size, sel.percentile, sel.noise)
    counts: dict[str, int] = {}
    for o in outcomes.values():
        counts[o.status] = counts.get(o.status, 0) + 1
    failed = [o.id for o in outcomes.values() if o.status == "failed"]

    triton = triton_section(outcomes, recipe)
    return {
        "navbuild": __version__,
        "recipe": recipe.name,
        "recipe_file": str(recipe_file) if recipe_file else None,
        "build_dir": str(build_dir),
        "cache_dir": str(cache_dir),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(seconds, 3),
        "hardware": fingerprint(),
        "counts": counts,
        "targets": [o.to_json() for o in outcomes.values()],
        "variants": table,
        "best": {**best.to_json(), "provisional": _decided_on_provisional(table, finalists)},
        "best_per_batch": choose_per_batch(table, sel.objective, sel.percentile, sel.noise),
        "finalists": finalists.result if finalists is not None and finalists.status in ("built", "cached") else None,
        "triton": triton,
        "measurements": measurements(outcomes),
        "failed": failed,
        "exit_code": 1 if failed or best.variant is None or (triton is not None and not triton["ok"]) else 0,
    }


def search_line(search: dict) -> str:
    """An accuracy-aware variant's search in one line: the layers kept in fp32 and the trials spent."""
    trials = search.get("trials") or []
    spent = f"{len(trials)} trial(s): " + ", ".join(f"keep {t['keep']} {'pass' if t['passes'] else 'fail'} "
                                                     f"({t['text']})" for t in trials)
    if search.get("kept_fp32") is not None:
        kept = search["kept_fp32"]
        return f"kept in fp32: {', '.join(kept) if kept else 'none'}; {spent}"
    return search.get("message") or f"not finished; {spent}"


def _decided_on_provisional(table: dict[str, dict], finalists: Any) -> str | None:
    """Why the choice of the best variant rests on provisional figures (the finalists' ranking
    when it decided, else the correct variants' profiles), or None."""
    if finalists is not None and finalists.status in ("built", "cached"):
        return (finalists.result.get("provisional") or {}).get("reason")
    why = [f"{v}: {row['provisional']}" for v, row in table.items()
           if row.get("provisional") and row["verdict"] in ("pass", "reference")]
    return "; ".join(why) or None


def measurements(outcomes: dict[str, Any]) -> dict[str, dict]:
    """Per timed target (profiles, finalists, Triton measurements): the conditions it ran under and,
    when it is provisional (busy machine, unstable figures), why; the next build measures it again."""
    return {o.id: {"conditions": o.result["conditions"],
                   "provisional": (o.result.get("provisional") or {}).get("reason")}
            for o in outcomes.values() if o.status in ("built", "cached") and "conditions" in o.result}


def drift_text(drift: dict | None) -> str:
    """``drift: /enc/.../MatMul (MatMul) 0.001→0.042, ...``: the layers where a variant's error grows most."""
    if not drift:
        return ""
    if drift.get("status") not in ("built", "cached"):
        return f"drift: {drift.get('status')} ({drift.get('reason')})"
    if drift.get("not_measured"):
        return f"drift: not measured ({drift['not_measured']})"
    shown = drift.get("layers", [])[: drift.get("top", 5)]
    return "drift: " + ", ".join(f"{r['name']} ({r['op_type']}) {r['error_before']:.2g}→{r['error_after']:.2g}"
                                 for r in shown)


def write_summary(build_dir: Path, summary: dict) -> None:
    build_dir.mkdir(parents=True, exist_ok=True)
    tmp = build_dir / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=False, default=str))
    tmp.replace(build_dir / "summary.json")
    (build_dir / "summary.txt").write_text(render_text(summary))


def render_text(summary: dict) -> str:
    """A plain-text rendering of the summary (the same facts as the console table)."""
    lines = [f"navbuild {summary['navbuild']} — recipe {summary['recipe']} ({summary['seconds']:.1f}s)",
             f"build dir: {summary['build_dir']}   cache: {summary['cache_dir']}", ""]
    lines.append("targets: " + ", ".join(f"{n} {k}" for k, n in sorted(summary["counts"].items())))
    for t in summary["targets"]:
        extra = f"  ({t['reason']})" if t["reason"] else ""
        lines.append(f"  {t['id']:<28} {t['status']:<12} {t['seconds']:>8.2f}s{extra}")
    lines.append("")
    for name, row in summary["variants"].items():
        verdict = row["verdict"] + (f" — {row['reason']}" if row.get("reason") else "")
        lines.append(f"variant {name}: {verdict}" + (f" (log: {row['log']})" if row.get("log") else ""))
        if row.get("blocked"):
            lines.append(f"  not chosen: {row['blocked']}")
        for e in row.get("evidence") or []:
            lines.append(f"  evidence from {e.get('target')}: {e['message']}")
        if row.get("search"):
            lines.append(f"  accuracy-aware search: {search_line(row['search'])}")
        worst = (row.get("correctness") or {}).get("worst")
        if worst and worst.get("error"):
            lines.append(f"  accuracy: error ({worst['error']})")
        elif worst:
            lines.append("  accuracy: " + ", ".join(f"{k} {v:.3g}" for k, v in worst.items() if isinstance(v, (int, float))))
        metric = (row.get("correctness") or {}).get("metric")
        if metric and metric.get("worst") is not None:
            bound = f">= {metric['min']:g}" if metric.get("min") is not None else f"<= {metric['max']:g}"
            lines.append(f"  metric: {metric['name']} {metric['worst']:.6g} (needs {bound})")
        if (drift := drift_text(row.get("drift"))):
            lines.append(f"  {drift}")
        for b, fig in sorted((row.get("profile") or {}).items(), key=lambda kv: int(kv[0])):
            lat = fig["latency_ms"]
            lines.append(f"  batch {b:>4}: p50 {lat['p50']:.3f} ms  p99 {lat['p99']:.3f} ms  "
                         f"throughput {fig['throughput']:.1f}/s{'' if fig.get('stable', True) else '  (not stable: window cap hit)'}")
        if row.get("peak_memory_mb") is not None:
            lines.append(f"  peak device memory: {row['peak_memory_mb']:.1f} MiB")
    if summary.get("finalists"):
        lines.append("")
        lines.append(f"finalists re-measured interleaved at batch {summary['finalists']['batch_size']}:")
        for name, fig in summary["finalists"]["variants"].items():
            lines.append(f"  {name:<22} {fig['latency_ms']:.3f} ms  {fig['throughput']:.1f}/s  "
                         f"spread {100 * fig['spread']:.1f}%")
    per_batch = summary.get("best_per_batch") or {}
    if per_batch:
        lines.append("best per batch size: " + ", ".join(f"b={b}: {c['variant'] or 'none'}" for b, c in per_batch.items()))
    provisional = {t: m["provisional"] for t, m in (summary.get("measurements") or {}).items() if m["provisional"]}
    if provisional:
        lines.append("provisional measurements (used by this build, measured again by the next):")
        lines += [f"  {t}: {why}" for t, why in provisional.items()]
    best = summary["best"]
    lines += ["", f"best: {best['variant'] or 'none'} — {best['why']}"]
    if best.get("provisional"):
        lines.append(f"  (decided on provisional measurements: {best['provisional']})")
    if summary.get("triton"):

        lines += render_triton_text(summary["triton"])
    return "\n".join(lines) + "\n"
