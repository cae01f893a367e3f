"""The rich console reporter: progress while building, then the variant table and the choice."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from navbuild.report.events import Reporter

_STYLE = {"built": "green", "cached": "cyan", "failed": "bold red", "skipped": "yellow",
          "unavailable": "magenta", "missing": "yellow", "stale": "yellow"}


class ConsoleReporter(Reporter):
    """Prints to a rich console (stderr by default so stdout stays clean for pipes)."""

    def __init__(self, console: Console | None = None) -> None:
        if console is None:
            console = Console(stderr=True, highlight=False)
            if not console.is_terminal:  # logs and CI: do not squeeze tables into 80 columns
                console = Console(stderr=True, highlight=False, width=140)
        self.console = console
        self._status: Any = None
        self._total = 0
        self._done = 0

    def warning(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}")

    def planned(self, plan: Any) -> None:
        self._total = len(plan.targets)
        todo = [t for t in plan.targets if t.status != "cached"]
        self.console.print(f"[bold]navbuild[/]: {self._total} targets, "
                           f"{self._total - len(todo)} cached, {len(todo)} to check or build")

    def target_started(self, target_id: str, kind: str) -> None:
        self._stop_status()
        self._status = self.console.status(f"[{self._done + 1}/{max(self._total, self._done + 1)}] "
                                           f"building {target_id} …")
        self._status.start()

    def target_finished(self, outcome: Any) -> None:
        self._stop_status()
        self._done += 1
        style = _STYLE.get(outcome.status, "white")
        verdict = ""
        if outcome.kind == "correctness" and outcome.result:
            v = outcome.result.get("verdict")
            verdict = f"  [{'green' if v == 'pass' else 'red'}]{v}[/]"
        reason = f"  [dim]{outcome.reason}[/]" if outcome.reason and outcome.status != "failed" else ""
        self._total = max(self._total, self._done)  # the finalists target joins after the profiles
        self.console.print(f"  [{self._done}/{self._total}] [{style}]{outcome.status:<11}[/] "
                           f"{outcome.id:<26} {outcome.seconds:7.2f}s{verdict}{reason}")
        if outcome.status == "failed":
            self.console.print(f"      [red]{outcome.reason}[/]")
            for line in (outcome.log_tail or "").splitlines()[-12:]:
                self.console.print(f"      [dim]│ {line}[/]", markup=True)
            self.console.print(f"      log: {outcome.log_path}\n      reproduce: sh {outcome.reproduce}")

    def build_finished(self, summary: dict) -> None:
        self._stop_status()
        counts = summary["counts"]
        if not counts.get("built") and not counts.get("failed"):
            self.console.print("[cyan]nothing to do: every target is cached (no conversion, no profile ran)[/]")
        self.console.print(variant_table(summary))
        best = summary["best"]
        colour = "green" if best["variant"] else "red"
        self.console.print(f"[bold {colour}]best: {best['variant'] or 'none'}[/] — {best['why']}")
        if summary.get("triton"):
            from navbuild.report.triton_summary import render_triton_text

            for line in render_triton_text(summary["triton"]):
                self.console.print(line, markup=False, highlight=False)
        self.console.print(f"[dim]{summary['build_dir']}/summary.json  "
                           f"({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))}; {summary['seconds']:.1f}s)[/]")

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def variant_table(summary: dict) -> Table:
    """One row per variant and batch size: verdict, accuracy next to latency and throughput."""
    table = Table(title=f"recipe {summary['recipe']}", show_lines=False)
    metric_name = next((((row.get("correctness") or {}).get("metric") or {}).get("name")
                        for row in summary["variants"].values()
                        if ((row.get("correctness") or {}).get("metric") or {}).get("name")), None)
    columns = [("variant", "left"), ("prec", "left"), ("correct", "left"), ("max abs err", "right"),
               ("cos min", "right")]
    if metric_name:
        columns.append((metric_name, "right"))
    columns += [("batch", "right"), ("p50 ms", "right"), ("p99 ms", "right"), ("samples/s", "right")]
    for col, just in columns:
        table.add_column(col, justify=just, no_wrap=True)
    best = summary["best"]["variant"]
    for name, row in summary["variants"].items():
        verdict = row["verdict"]
        colour = {"pass": "green", "reference": "cyan"}.get(verdict, "red")
        corr = row.get("correctness") or {}
        worst = corr.get("worst") or {}
        if row.get("blocked"):
            verdict, colour = f"{verdict} (risk)", "yellow"
        figures = (["[red]error[/]"] * 2 if worst.get("error")  # it raised: no figures, never "0, 1.000000"
                   else [_num(worst.get("max_abs")), _num(worst.get("cosine_min"), ".6f")])
        head = [f"{name}{' *' if name == best else ''}", row.get("precision", ""), f"[{colour}]{verdict}[/]",
                *figures]
        if metric_name:
            head.append(_num((corr.get("metric") or {}).get("worst"), ".6f"))
        prof = row.get("profile") or {}
        if not prof:  # why is in the caption (failed check) or in the target lines above
            table.add_row(*head, "-", "-", "-", row.get("profile_status", "-").split(":")[0])
        for i, (b, fig) in enumerate(sorted(prof.items(), key=lambda kv: int(kv[0]))):
            mark = "" if fig.get("stable", True) else "~"
            cells = head if i == 0 else [""] * len(head)
            table.add_row(*cells, str(b), f"{fig['latency_ms']['p50']:.3f}{mark}",
                          f"{fig['latency_ms']['p99']:.3f}", f"{fig['throughput']:.1f}")
    notes = [f"{name}: {row['reason']}" + (f" (log: {row['log']})" if row.get("log") else "")
             for name, row in summary["variants"].items()
             if row.get("reason") and row["verdict"] not in ("pass", "reference")]
    notes += [f"{name}: {row['note']}" for name, row in summary["variants"].items() if row.get("note")]
    notes += [f"{name}: not chosen: {row['blocked']}" for name, row in summary["variants"].items()
              if row.get("blocked")]
    per_batch = summary.get("best_per_batch") or {}
    if per_batch:
        notes.append("best per batch size: " + ", ".join(f"b={b}: {c['variant'] or 'none'}"
                                                         for b, c in per_batch.items()))
    notes.append("* best variant; ~ profile window cap hit before the figures were stable")
    table.caption = "\n".join(notes)
    return table


def _num(value: Any, fmt: str = ".3g") -> str:
    return "-" if value is None else format(value, fmt)
