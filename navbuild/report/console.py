"""The rich console reporter: progress while building, then the variant table and the choice."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from navbuild.report.events import Reporter
from navbuild.report.summary import drift_text, search_line
from navbuild.report.triton_summary import render_triton_text

_STYLE = {"built": "green", "cached": "cyan", "failed": "bold red", "skipped": "yellow",
          "unavailable": "magenta", "missing": "yellow", "stale": "yellow"}


class ConsoleReporter(Reporter):
    """Prints to a rich console (stderr by default so stdout stays clean for pipes)."""

    def __init__(self, console: Console | None = None, heartbeat_s: float = 60.0) -> None:
        if console is None:
            console = Console(stderr=True, highlight=False)
            if not console.is_terminal:  # logs and CI: do not squeeze tables into 80 columns
                console = Console(stderr=True, highlight=False, width=140)
        self.console = console
        #: where no live line can be drawn (a log file, CI), a long step prints a line this often.
        self.heartbeat_s = heartbeat_s
        self._status: Any = None
        self._ticker: _Ticker | None = None
        self._total = 0
        self._done = 0
        self._final = True  # until told that later phases may add targets
        self._phased = False  # whether a counter has shown the '+' of targets still to join

    def warning(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}")

    def note(self, message: str) -> None:
        self.console.print(f"[dim]{message}[/]")

    def planned(self, plan: Any) -> None:
        self._total = len(plan.targets)
        todo = [t for t in plan.targets if t.status != "cached"]
        later = "" if self._final else "; more may join once the profiles have ranked the variants (\\[n/total+])"
        self.console.print(f"[bold]navbuild[/]: {self._total} targets, "
                           f"{self._total - len(todo)} cached, {len(todo)} to check or build{later}",
                           highlight=False)
        for note in getattr(plan, "notes", ()):
            self.console.print(f"note: {note}")

    def targets_total(self, total: int, final: bool) -> None:
        if self._final and total <= self._total:
            return  # every target is counted already (the plan expanded the later phases from the cache)
        self._total, self._final = max(total, self._done), final
        self._phased = self._phased or not final

    def counter(self, position: int | None = None) -> str:
        """``[3/9]``; ``[3/9+]`` while a later phase (finalists, Triton) may still add targets."""
        position = self._done if position is None else position
        total = max(self._total, position)
        return f"[{position}/{total}{'' if self._final else '+'}]"

    def target_started(self, target_id: str, kind: str) -> None:
        self._stop_status()
        self._start_status(f"{self.counter(self._done + 1)} building {target_id}")

    def target_running(self, target_id: str, log_path: Any) -> None:
        """Keep the live line (or, off a terminal, a periodic line) on elapsed time and the log's last line."""
        label = f"{self.counter(self._done + 1)} building {target_id}"
        self._stop_ticker()
        self._ticker = _Ticker(self, label, Path(log_path))
        self._ticker.start()

    def waiting(self, target_id: str, holder: dict) -> None:
        who = f"process {holder['pid']}" if holder.get("pid") else "another process"
        if holder.get("command"):
            who += f" ({holder['command']})"
        since = holder.get("since")
        held = f" for {_elapsed(time.time() - since)}" if isinstance(since, (int, float)) else ""
        what = holder.get("what") or target_id
        self.console.print(f"  [yellow]waiting[/] for {escape(target_id)}: {escape(who)} has been building "
                           f"{escape(what)}{held} in the same cache; it is used here once done "
                           f"(lock {escape(str(holder.get('lock')))})", highlight=False)
        self._stop_status()
        self._start_status(f"{self.counter(self._done + 1)} waiting for {target_id} ({who.split(' (')[0]})")
        self._stop_ticker()
        self._ticker = _Ticker(self, f"{self.counter(self._done + 1)} waiting for {target_id}", None)
        self._ticker.start()

    def target_finished(self, outcome: Any) -> None:
        self._stop_status()
        self._done += 1
        style = _STYLE.get(outcome.status, "white")
        verdict = ""
        if outcome.kind == "correctness" and outcome.result:
            v = outcome.result.get("verdict")
            verdict = f"  [{'green' if v == 'pass' else 'red'}]{v}[/]"
        reason = f"  [dim]{outcome.reason}[/]" if outcome.reason and outcome.status != "failed" else ""
        if outcome.status in ("built", "cached") and outcome.result.get("provisional"):
            reason += f"  [yellow]provisional: {outcome.result['provisional'].get('reason')}[/]"
        self._total = max(self._total, self._done)
        width = len(f"[{self._total}/{self._total}{'+' if self._phased else ''}]")  # aligned when '+' goes
        self.console.print(f"  {self.counter():<{width}} [{style}]{outcome.status:<11}[/] "
                           f"{outcome.id:<26} {outcome.seconds:7.2f}s{verdict}{reason}")
        if outcome.status == "failed":
            self.console.print(f"      [red]{outcome.reason}[/]")
            for line in (outcome.log_tail or "").splitlines()[-12:]:
                self.console.print(f"      [dim]│ {line}[/]", markup=True)
            if outcome.log_path is not None:
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
        if best.get("provisional"):
            self.console.print(f"[yellow]  decided on provisional measurements (measured again next build): "
                               f"{best['provisional']}[/]")
        if summary.get("triton"):

            for line in render_triton_text(summary["triton"]):
                self.console.print(line, markup=False, highlight=False)
        self.console.print(f"[dim]{summary['build_dir']}/summary.json  "
                           f"({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))}; {summary['seconds']:.1f}s)[/]")

    def close(self) -> None:
        """Stop the live line (a build that ended in an error never reaches ``build_finished``)."""
        self._stop_status()

    def _start_status(self, text: str) -> None:
        self._status = self.console.status(f"{escape(text)} …")
        self._status.start()

    def _stop_status(self) -> None:
        self._stop_ticker()
        if self._status is not None:
            self._status.stop()
            self._status = None

    def _stop_ticker(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None


class _Ticker(threading.Thread):
    """Refreshes the live line of a running step: elapsed time and the last line of its logs.

    On a terminal it updates the spinner every second; elsewhere it prints a line every
    ``heartbeat_s``, so a log of a build shows that a minutes-long step is alive and where.
    """

    def __init__(self, reporter: ConsoleReporter, label: str, log_path: Path | None) -> None:
        super().__init__(daemon=True, name="navbuild-live-line")
        self.reporter, self.label, self.log_path = reporter, label, log_path
        self.started = time.monotonic()
        self._stopped = threading.Event()

    def line(self) -> str:
        """``<label> · 2m05s · <last log line>``."""
        text = f"{self.label} · {_elapsed(time.monotonic() - self.started)}"
        last = last_log_line(self.log_path) if self.log_path is not None else ""
        return f"{text} · {last}" if last else text

    def run(self) -> None:
        live = self.reporter.console.is_terminal
        every = 1.0 if live else self.reporter.heartbeat_s
        while not self._stopped.wait(every):
            if live:
                status = self.reporter._status
                if status is not None:
                    status.update(f"{escape(self.line())} …")
            else:
                self.reporter.console.print(f"  … {self.line()}", markup=False, highlight=False)

    def stop(self) -> None:
        self._stopped.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)


def last_log_line(log_path: Path, width: int = 100) -> str:
    """The last non-empty line of the step's newest log: its own, or one a tool it runs writes
    beside it (Model Analyzer's ``Profiling …: concurrency=4`` says which load point is measured)."""
    candidates = [log_path, *log_path.parent.glob("*/*.log")] if log_path.parent.is_dir() else [log_path]
    newest: tuple[float, Path] | None = None
    for path in candidates:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        if newest is None or mtime > newest[0]:
            newest = (mtime, path)
    if newest is None:
        return ""
    try:
        with open(newest[1], "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    if not lines:
        return ""
    last = lines[-1]
    return last if len(last) <= width else last[: width - 1] + "…"


def _elapsed(seconds: float) -> str:
    """``45s``, ``2m05s``, ``1h02m``."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


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
    # GPU variants report their peak device memory; a CPU-only table has no such column
    peak_memory = any(row.get("peak_memory_mb") is not None for row in summary["variants"].values())
    if peak_memory:
        columns.append(("peak MiB", "right"))
    columns.append(("load", "right"))
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
            table.add_row(*head, "-", "-", "-", row.get("profile_status", "-").split(":")[0],
                          *(["-"] if peak_memory else []), "")
        for i, (b, fig) in enumerate(sorted(prof.items(), key=lambda kv: int(kv[0]))):
            mark = "" if fig.get("stable", True) else "~"
            cells = head if i == 0 else [""] * len(head)
            peak = [_num(row.get("peak_memory_mb"), ".1f") if i == 0 else ""] if peak_memory else []
            table.add_row(*cells, str(b), f"{fig['latency_ms']['p50']:.3f}{mark}",
                          f"{fig['latency_ms']['p99']:.3f}", f"{fig['throughput']:.1f}", *peak,
                          _load(fig.get("conditions"), bool(row.get("provisional")) and i == 0))
    notes = [f"{name}: {row['reason']}" + (f" (log: {row['log']})" if row.get("log") else "")
             for name, row in summary["variants"].items()
             if row.get("reason") and row["verdict"] not in ("pass", "reference")]
    notes += [f"{name}: {row['note']}" for name, row in summary["variants"].items() if row.get("note")]
    notes += [f"{name}: {escape(search_line(row['search']))}" for name, row in summary["variants"].items()
              if row.get("search") and row["verdict"] == "pass"]
    notes += [f"{name}: {escape(drift_text(row['drift']))}" for name, row in summary["variants"].items() if row.get("drift")]
    notes += [f"{name}: not chosen: {row['blocked']}" for name, row in summary["variants"].items()
              if row.get("blocked")]
    per_batch = summary.get("best_per_batch") or {}
    if per_batch:
        notes.append("best per batch size: " + ", ".join(f"b={b}: {c['variant'] or 'none'}"
                                                         for b, c in per_batch.items()))
    notes += [f"{name}: provisional, measured again next build: {row['provisional']}"
              for name, row in summary["variants"].items() if row.get("provisional")]
    finalists = (summary.get("measurements") or {}).get("finalists") or {}
    if finalists.get("provisional"):
        notes.append(f"finalists ranking provisional, measured again next build: {finalists['provisional']}")
    notes.append("* best variant; ~ profile window cap hit before the figures were stable; "
                 "load: other processes' cores busy while profiling; ! provisional")
    table.caption = "\n".join(notes)
    return table


def _load(cond: Any, provisional: bool) -> str:
    """Background cores busy during a batch's measurement, ``!`` when the profile is provisional."""
    bg = (cond or {}).get("background_cores")
    text = "-" if bg is None else f"{bg:.1f}"
    return f"[yellow]{text}![/]" if provisional else text


def _num(value: Any, fmt: str = ".3g") -> str:
    return "-" if value is None else format(value, fmt)
