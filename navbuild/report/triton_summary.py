"""The Triton part of a build's summary, and its deliverables under ``build/<recipe>/triton/``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from navbuild.planning.triton import TRITON_SEARCH, constraints_of
from navbuild.steps.triton_search import LOCAL_REPO, NATIVE_REPO, PLOT_FILE, TABLE_FILE
from navbuild.triton.ranking import rank


def triton_section(outcomes: dict[str, Any], recipe: Any) -> dict[str, Any] | None:
    """Per deployed variant its search (every measured configuration, the best, the margin over
    Triton's default) and its end-to-end validation; the overall winner; whether all is well."""
    searches = [o for o in outcomes.values() if o.kind == TRITON_SEARCH]
    if not recipe.triton.enabled or not searches:
        return None
    variants: dict[str, Any] = {}
    problems: list[str] = []
    for search in searches:
        entry: dict[str, Any] = {"search_status": search.status, "folder": str(search.path) if search.path else None}
        if search.status in ("built", "cached"):
            entry.update({k: search.result.get(k) for k in ("model", "backend", "met", "best", "default",
                                                           "default_best", "margin_over_default", "closest",
                                                           "table", "objective", "constraints")})
            if not search.result.get("met"):
                problems.append(f"{search.variant}: no Triton configuration meets the constraints")
        else:
            problems.append(f"{search.id} {search.status}: {search.reason}")
        check = outcomes.get(f"triton/validate/{search.variant}")
        if check is not None:
            verdict = check.result.get("verdict") if check.status in ("built", "cached") else check.status
            entry["validation"] = {"verdict": verdict, "reason": check.result.get("reason") or check.reason,
                                   "batch_sizes": check.result.get("batch_sizes"),
                                   "protocols": sorted(check.result.get("protocols", {}))}
            if verdict != "pass":
                problems.append(f"{search.variant}: the served model failed its end-to-end check: "
                                f"{entry['validation']['reason']}")
        variants[search.variant] = entry
    t = recipe.triton
    constraints = constraints_of(recipe)
    candidates = {v: [e["best"]] for v, e in variants.items() if e.get("best")}
    ranking = rank(candidates, constraints, t.objective, dict(t.weights))
    return {"variants": variants, "winner": ranking[0].label if ranking else None, "problems": problems,
            "ok": not problems}


def publish_triton(section: dict[str, Any] | None, build_dir: Path) -> None:
    """Copy the winner's native repository (the deliverable), its local twin and its plot to ``build/<recipe>/triton/``."""

    if not section or not section.get("winner"):
        return
    folder = Path(section["variants"][section["winner"]]["folder"])
    dest = build_dir / "triton"
    dest.mkdir(parents=True, exist_ok=True)
    for name in (NATIVE_REPO, LOCAL_REPO):
        if (dest / name).exists():
            shutil.rmtree(dest / name)
        shutil.copytree(folder / name, dest / name, symlinks=False)
    for name in (PLOT_FILE, TABLE_FILE, "model_analyzer.yaml", "input_data.json"):
        if (folder / name).is_file():
            shutil.copyfile(folder / name, dest / name)
    section["model_repository"] = str(dest / NATIVE_REPO)
    section["local_repository"] = str(dest / LOCAL_REPO)
    section["plot"] = str(dest / PLOT_FILE)


def render_triton_text(section: dict[str, Any]) -> list[str]:
    """Plain-text lines: each variant's measured configurations, its best and the margin over the default."""
    lines = ["", "Triton:"]
    for variant, e in section["variants"].items():
        lines.append(f"  {variant} ({e.get('backend')}, model {e.get('model')}): search {e['search_status']}")
        for row in e.get("table") or []:
            mark = "ok " if row.get("meets_constraints") else "-- "
            gpu = (f"  GPU {row['gpu_memory_mb']:.0f} MB {row.get('gpu_utilization') or 0:.0f}%"
                   if row.get("gpu_memory_mb") is not None else "")
            lines.append(f"    {mark}{row['config']:<44} c={row['concurrency']:<3} {row['throughput']:>9.1f}/s  "
                         f"p99 {row['p99_ms']:>8.2f} ms{gpu}")
        if e.get("best"):
            margin = e.get("margin_over_default")
            lines.append(f"    best: {e['best']['label']} at concurrency {e['best']['concurrency']}: "
                         f"{e['best']['throughput']:.1f}/s, p99 {e['best']['p99_ms']:.2f} ms; "
                         + (f"{margin:.2f}x Triton's default config ({e['default']})" if margin
                            else "Triton's default config meets no load point under the constraints"))
        elif e.get("closest"):
            lines.append("    no configuration meets the constraints; closest:")
            for c in e["closest"]:
                lines.append(f"      {c['label']} at concurrency {c['concurrency']}: {c['throughput']:.1f}/s, "
                             f"p99 {c['p99_ms']:.2f} ms")
        if e.get("validation"):
            v = e["validation"]
            lines.append(f"    end-to-end ({', '.join(v['protocols'] or [])}): {v['verdict']}"
                         + (f" — {v['reason']}" if v.get("reason") else ""))
    if section.get("winner"):
        lines.append(f"  deploy: {section['winner']} — {section.get('model_repository', '')}")
    for p in section["problems"]:
        lines.append(f"  problem: {p}")
    return lines


__all__ = ["triton_section", "publish_triton", "render_triton_text"]
