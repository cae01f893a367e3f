"""The console reporter: a counter that says when more targets may join, and a live line for long
steps (elapsed time, the last line of a log that a real process is writing)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from rich.console import Console

from navbuild.execute.executor import TargetOutcome
from navbuild.planning.status import Plan, TargetPlan
from navbuild.report.console import ConsoleReporter, last_log_line


def reporter(terminal: bool = False, heartbeat_s: float = 60.0) -> tuple[ConsoleReporter, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=200, highlight=False, color_system=None)
    return ConsoleReporter(console, heartbeat_s=heartbeat_s), out


def finish(rep: ConsoleReporter, tid: str, status: str = "built") -> None:
    rep.target_finished(TargetOutcome(id=tid, kind="convert", variant=None, status=status, seconds=0.5))


def test_counter_says_more_may_join_until_the_last_phase():
    rep, out = reporter()
    rep.targets_total(2, final=False)
    rep.planned(Plan([TargetPlan("reference", "missing"), TargetPlan("onnx", "cached")]))
    finish(rep, "reference")
    finish(rep, "onnx", "cached")
    rep.targets_total(3, final=True)  # the finalists joined; nothing joins after them
    finish(rep, "finalists")
    lines = out.getvalue().splitlines()
    assert "2 targets, 1 cached, 1 to check or build; more may join once the profiles have ranked the variants " \
           "([n/total+])" in lines[0]
    assert lines[1].startswith("  [1/2+] built") and lines[2].startswith("  [2/2+] cached")
    assert lines[3].startswith("  [3/3]  built       finalists")


def test_a_plan_that_expanded_every_phase_counts_them_all_from_the_start():
    """Everything cached: the plan already listed the finalists, so the build's own expansion
    (which first sees only the variant targets) does not shrink the count or bring back the +."""
    rep, out = reporter()
    rep.targets_total(3, final=True)  # the plan expanded the ranking from the cache
    rep.planned(Plan([TargetPlan("reference", "cached"), TargetPlan("onnx", "cached"),
                      TargetPlan("finalists", "cached")]))
    finish(rep, "reference", "cached")
    finish(rep, "onnx", "cached")
    rep.targets_total(2, final=False)  # the executor, before the ranking runs
    finish(rep, "finalists", "cached")
    lines = out.getvalue().splitlines()
    assert "3 targets, 3 cached, 0 to check or build" in lines[0] and "more may join" not in lines[0]
    assert [ln.split()[0] for ln in lines[1:4]] == ["[1/3]", "[2/3]", "[3/3]"]


def test_counter_without_later_phases_has_no_plus():
    rep, out = reporter()
    rep.planned(Plan([TargetPlan("reference", "missing")]))
    finish(rep, "reference")
    assert "[1/1] built" in out.getvalue() and "+" not in out.getvalue()


def test_failed_target_without_a_log_prints_no_log_lines():
    rep, out = reporter()
    rep.target_finished(TargetOutcome(id="onnx", kind="convert", variant=None, status="failed",
                                      reason="not in the cache, and cannot be built into it: read-only"))
    assert "read-only" in out.getvalue() and "log: None" not in out.getvalue()


WRITER = """
import sys, time
log = open(sys.argv[1], "a")
for c in (1, 2, 4):
    print(f"Profiling model_config_0: concurrency={c}", file=log, flush=True)
    time.sleep(0.3)
while True:
    time.sleep(0.1)
"""


def run_step_writing(log: Path) -> subprocess.Popen:
    log.write_text("[navbuild] target triton/measure/c1: step SearchTritonConfig\n")
    return subprocess.Popen([sys.executable, "-c", WRITER, str(log)])


def live_line_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "navbuild-live-line" and t.is_alive()]


def wait_for(predicate, what: str) -> None:
    for _ in range(600):  # polls until it happens; the test states no duration
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"never saw {what}")


def test_off_a_terminal_a_long_step_prints_elapsed_time_and_its_load_point(tmp_path: Path):
    staging = tmp_path / "staging"
    (staging / "measure-x").mkdir(parents=True)
    step_log = staging / "log.txt"
    step_log.write_text("[navbuild] target triton/measure/c1: step MeasureTritonConfig\n")
    proc = run_step_writing(staging / "measure-x" / "model_analyzer.log")  # Model Analyzer's own log
    rep, out = reporter(heartbeat_s=0.05)
    try:
        rep.target_started("triton/measure/c1", "triton")
        rep.target_running("triton/measure/c1", step_log)
        wait_for(lambda: "concurrency=4" in out.getvalue(), "the last load point")
    finally:
        proc.kill()
        proc.wait()
    finish(rep, "triton/measure/c1")
    beats = [ln for ln in out.getvalue().splitlines() if ln.startswith("  … ")]
    assert beats[-1].startswith("  … [1/1] building triton/measure/c1 · ")
    assert beats[-1].endswith(" · Profiling model_config_0: concurrency=4")
    assert not live_line_threads()  # the finished step's ticker stopped


def test_on_a_terminal_the_spinner_line_follows_the_log(tmp_path: Path):
    log = tmp_path / "log.txt"
    proc = run_step_writing(log)
    rep, out = reporter(terminal=True)
    try:
        rep.target_started("profile/onnx", "profile")
        rep.target_running("profile/onnx", log)
        wait_for(lambda: "concurrency=4" in out.getvalue(), "the live line")
    finally:
        proc.kill()
        proc.wait()
    finish(rep, "profile/onnx")
    assert re.search(r"\[1/1\] building profile/onnx · \d+s · Profiling model_config_0: concurrency=4 …",
                     out.getvalue()), out.getvalue()


def test_waiting_says_on_which_process():
    rep, out = reporter()
    rep.waiting("onnx", {"pid": 4242, "command": "navbuild recipe=bert", "what": "onnx",
                         "since": time.time() - 75, "lock": "/c/locks/k.lock"})
    finish(rep, "onnx", "cached")
    text = " ".join(out.getvalue().split())
    assert "waiting for onnx: process 4242 (navbuild recipe=bert) has been building onnx for 1m15s in the " \
           "same cache; it is used here once done (lock /c/locks/k.lock)" in text


def test_last_log_line_reads_only_the_tail(tmp_path: Path):
    log = tmp_path / "log.txt"
    log.write_text("x" * 100_000 + "\nfirst\n\n  last line  \n\n")
    assert last_log_line(log) == "last line"
    assert last_log_line(tmp_path / "missing.txt") == ""
    log.write_text("y" * 300)
    assert last_log_line(log, width=10) == "yyyyyyyyy…"


def test_close_stops_the_live_line(tmp_path: Path):
    log = tmp_path / "log.txt"
    log.write_text("step started\n")
    rep, out = reporter(heartbeat_s=0.05)
    rep.target_started("onnx", "convert")
    rep.target_running("onnx", log)
    wait_for(lambda: "step started" in out.getvalue(), "a heartbeat")
    assert live_line_threads()
    rep.close()  # what the CLI does when the build ends in an error
    assert not live_line_threads()


def test_the_drift_of_a_variant_is_shown_beside_its_verdict():
    from navbuild.planning.ranking import variant_table
    from navbuild.report.console import variant_table as console_table
    from navbuild.report.summary import render_text

    layers = [{"name": "/enc/q/MatMul", "op_type": "MatMul", "error_before": 0.001, "error_after": 0.042,
               "growth": 0.041, "position": 3},
              {"name": "/enc/k/MatMul", "op_type": "MatMul", "error_before": 0.0, "error_after": 0.002,
               "growth": 0.002, "position": 1}]
    outcomes = {
        "correctness/onnx-int8-static": TargetOutcome(id="correctness/onnx-int8-static", kind="correctness",
                                                      variant="onnx-int8-static", status="built",
                                                      result={"verdict": "fail", "reason": "cosine"}),
        "drift/onnx-int8-static": TargetOutcome(id="drift/onnx-int8-static", kind="drift", variant="onnx-int8-static",
                                                status="built", path=Path("/b/drift/onnx-int8-static"),
                                                result={"variant": "onnx-int8-static", "layers": layers, "top": 1}),
        "drift/openvino-int8": TargetOutcome(id="drift/openvino-int8", kind="drift", variant="openvino-int8",
                                             status="failed", reason="RuntimeError: no tensor matches"),
    }
    table = variant_table(outcomes, {"onnx-int8-static": "onnx-int8-static", "openvino-int8": "openvino-int8"})
    assert table["onnx-int8-static"]["drift"]["layers"] == layers  # the whole table
    assert table["onnx-int8-static"]["drift"]["plot"] == "/b/drift/onnx-int8-static/drift.png"
    summary = {"navbuild": "x", "recipe": "r", "seconds": 1.0, "build_dir": "/b", "cache_dir": "/c", "counts": {},
               "targets": [], "variants": table, "best": {"variant": None, "why": "none correct"}}
    text = render_text(summary)
    assert "  drift: /enc/q/MatMul (MatMul) 0.001→0.042\n" in text  # the top 1 the recipe asked for
    assert "drift: failed (RuntimeError: no tensor matches)" in text
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(console_table(summary))
    assert "onnx-int8-static: drift: /enc/q/MatMul (MatMul) 0.001→0.042" in out.getvalue()


def test_peak_device_memory_is_a_column_only_when_a_variant_reports_it():
    from navbuild.planning.ranking import variant_table
    from navbuild.report.console import variant_table as console_table
    from navbuild.report.summary import render_text

    figures = {"1": {"latency_ms": {"p50": 0.5, "p99": 0.9}, "throughput": 2000.0, "stable": True}}

    def outcomes(peaks: dict[str, float | None]) -> dict:
        out = {}
        for v, peak in peaks.items():
            result = {"batches": figures, **({"peak_memory_mb": peak} if peak is not None else {})}
            out[f"correctness/{v}"] = TargetOutcome(id=f"correctness/{v}", kind="correctness", variant=v,
                                                    status="built", result={"verdict": "pass"})
            out[f"profile/{v}"] = TargetOutcome(id=f"profile/{v}", kind="profile", variant=v, status="built",
                                                result=result)
        return out

    def render(peaks: dict[str, float | None]) -> tuple[dict, str, str]:
        table = variant_table(outcomes(peaks), {v: None for v in peaks})
        summary = {"navbuild": "x", "recipe": "r", "seconds": 1.0, "build_dir": "/b", "cache_dir": "/c",
                   "counts": {}, "targets": [], "variants": table, "best": {"variant": None, "why": "-"}}
        out = io.StringIO()
        Console(file=out, width=200, color_system=None).print(console_table(summary))
        return table, out.getvalue(), render_text(summary)

    table, console, text = render({"torch-cuda": 412.25, "torch": None})
    assert table["torch-cuda"]["peak_memory_mb"] == 412.25 and table["torch"]["peak_memory_mb"] is None
    assert "peak MiB" in console
    assert re.search(r"torch-cuda .* 2000\.0 │ +412\.2 │", console)
    assert "  peak device memory: 412.2 MiB" in text and text.count("peak device memory") == 1

    _, console, text = render({"torch": None})  # a CPU build's table is as it was
    assert "peak MiB" not in console and "peak device memory" not in text
