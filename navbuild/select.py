"""Choose the best variant among the correct ones by the recipe's objective, with a noise margin."""

from __future__ import annotations

from dataclasses import dataclass

from navbuild.planning.variants import simplicity


@dataclass
class Choice:
    """The chosen variant (None if no variant is correct and profiled) and why."""

    variant: str | None
    batch_size: int | None
    value: float | None
    unit: str
    why: str
    ranking: list[tuple[str, float]]

    def to_json(self) -> dict:
        return {"variant": self.variant, "batch_size": self.batch_size, "value": self.value, "unit": self.unit,
                "why": self.why, "ranking": [{"variant": v, "value": x} for v, x in self.ranking]}


def choose(variants: dict[str, dict], objective: str, batch_size: int | None, percentile: str,
           noise: float) -> Choice:
    """Pick the best variant.

    ``variants`` maps a variant to ``{"verdict": pass|fail|reference|..., "profile": {b: figures}}``.
    Only variants whose verdict is ``pass`` or ``reference`` and that have figures at the
    batch size compete. Two variants whose figures differ by less than the larger of
    ``noise`` and their measured window spreads are tied, and the simpler one wins.
    """
    higher_is_better = objective == "throughput"
    unit = "samples/s" if higher_is_better else f"ms ({percentile})"
    sizes = sorted({int(b) for v in variants.values() for b in (v.get("profile") or {})})
    b = batch_size if batch_size is not None else (sizes[-1] if sizes else None)
    scored: list[tuple[str, float, float]] = []
    excluded: list[str] = []
    for name, v in variants.items():
        if v.get("verdict") not in ("pass", "reference"):
            excluded.append(f"{name} ({v.get('verdict') or 'not checked'})")
            continue
        fig = (v.get("profile") or {}).get(str(b)) if b is not None else None
        if not fig:
            excluded.append(f"{name} (not profiled)")
            continue
        value = fig["throughput"] if higher_is_better else fig["latency_ms"][percentile]
        scored.append((name, float(value), float(fig.get("spread") or 0.0)))
    if not scored:
        why = "no variant is both correct and profiled"
        if excluded:
            why += f" (excluded: {', '.join(excluded)})"
        return Choice(None, b, None, unit, why, [])
    scored.sort(key=lambda s: -s[1] if higher_is_better else s[1])
    best_name, best_value, best_spread = scored[0]
    # Walk the ranking: any variant within the noise of the top one ties with it; the simplest tied one wins.
    tied = [s for s in scored
            if abs(s[1] - best_value) <= max(noise, best_spread, s[2]) * max(abs(best_value), 1e-12)]
    winner = min(tied, key=lambda s: simplicity(s[0]))
    ranking = [(n, v) for n, v, _ in scored]
    what = "throughput" if higher_is_better else f"{percentile} latency"
    why = f"highest {what} at batch {b}" if higher_is_better else f"lowest {what} at batch {b}"
    why = f"{winner[0]}: {why} among correct variants ({winner[1]:.4g} {unit})"
    if winner[0] != best_name:
        why += (f"; {best_name} measured {best_value:.4g} but the difference is within noise "
                f"(margin {max(noise, best_spread) * 100:.1f}%), so the simpler variant wins")
    elif len(scored) > 1:
        runner = next(s for s in scored if s[0] != winner[0])
        ratio = winner[1] / runner[1] if higher_is_better else runner[1] / winner[1]
        tie_note = " (within noise: tie, simpler kept)" if runner in tied else ""
        why += f"; {ratio:.2f}x {runner[0]}{tie_note}"
    if excluded:
        why += f"; excluded: {', '.join(excluded)}"
    return Choice(winner[0], b, winner[1], unit, why, ranking)


def choose_per_batch(variants: dict[str, dict], objective: str, percentile: str, noise: float) -> dict[str, dict]:
    """The best correct variant at every profiled batch size."""
    sizes = sorted({int(b) for v in variants.values() for b in (v.get("profile") or {})})
    return {str(b): choose(variants, objective, b, percentile, noise).to_json() for b in sizes}


def choose_from_finalists(finalists: dict, objective: str, noise: float) -> Choice:
    """Rank finalists on their interleaved re-measurement; within the noise, the simpler wins."""
    figures = finalists["variants"]
    b = finalists["batch_size"]
    higher = objective == "throughput"
    key = "throughput" if higher else "latency_ms"
    ranked = sorted(figures.items(), key=lambda kv: -kv[1][key] if higher else kv[1][key])
    best_name, best = ranked[0]
    tied = [(n, f) for n, f in ranked
            if abs(f[key] - best[key]) <= max(noise, best["spread"], f["spread"]) * abs(best[key])]
    winner, fig = min(tied, key=lambda nf: simplicity(nf[0]))
    unit = "samples/s" if higher else "ms"
    parts = [f"{n} {f[key]:.4g} (spread {100 * f['spread']:.1f}%)" for n, f in ranked]
    why = (f"{winner}: best {key} at batch {b} when the finalists were re-measured interleaved "
           f"({finalists['rounds']} rounds): " + ", ".join(parts))
    if winner != best_name:
        why += f"; {best_name} is within noise of it, so the simpler {winner} wins (a tie)"
    elif len(tied) > 1:
        why += f"; tie within noise with {', '.join(n for n, _ in tied if n != winner)} (simpler kept)"
    elif len(ranked) > 1:
        runner = ranked[1]
        ratio = fig[key] / runner[1][key] if higher else runner[1][key] / fig[key]
        why += f"; {ratio:.2f}x {runner[0]}, beyond the noise"
    return Choice(winner, b, fig[key], unit, why, [(n, f[key]) for n, f in ranked])
