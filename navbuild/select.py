"""Choose the best variant among the correct ones by the recipe's objective, with a noise margin."""

from __future__ import annotations

from dataclasses import dataclass

from navbuild.formats import simplicity


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
        if v.get("blocked"):  # correct on every check, but built from a trace evidence says is unreliable
            excluded.append(f"{name} (trace risk)")
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
    """Rank finalists on their interleaved re-measurement, comparing them pairwise round by round.

    In every round each finalist ran back to back, so slow moments of the machine hit them
    alike; the per-round latency ratio of a challenger to the fastest cancels that. The
    challenger ties with the fastest when its ratio is within ``noise`` of 1 in at least a
    quarter of the rounds (its lower quartile); a tie goes to the simpler variant.
    """
    import statistics

    figures = finalists["variants"]
    b = finalists["batch_size"]
    ranked = sorted(figures.items(), key=lambda kv: kv[1]["latency_ms"])  # both objectives: fastest first
    best_name, best = ranked[0]
    pairs = {}
    for name, fig in ranked[1:]:
        ratios = [o / f for o, f in zip(fig["rounds_ms"], best["rounds_ms"]) if f > 0]
        q1 = statistics.quantiles(ratios, n=4)[0] if len(ratios) >= 2 else (ratios or [1.0])[0]
        pairs[name] = (statistics.median(ratios) if ratios else 1.0, q1)
    tied = [best_name] + [n for n, (_, q1) in pairs.items() if q1 < 1.0 + noise]
    winner = min(tied, key=simplicity)
    key = "throughput" if objective == "throughput" else "latency_ms"
    unit = "samples/s" if objective == "throughput" else "ms"
    parts = [f"{best_name} {best['latency_ms']:.2f} ms"] + [
        f"{n} {figures[n]['latency_ms']:.2f} ms ({ratio:.2f}x slower, lower quartile {q1:.2f}x)"
        for n, (ratio, q1) in pairs.items()]
    why = (f"{winner}: fastest at batch {b} when the finalists were re-measured interleaved, compared "
           f"round by round ({finalists['rounds']} rounds): " + ", ".join(parts))
    if winner != best_name:
        why += f"; {winner} ties with {best_name} within the noise ({noise:.0%}), and the simpler one wins"
    elif len(tied) > 1:
        why += f"; within noise of {', '.join(n for n in tied if n != winner)} (a tie, the simpler kept)"
    elif pairs:
        why += "; beyond the noise"
    return Choice(winner, b, figures[winner][key], unit, why, [(n, f[key]) for n, f in ranked])
