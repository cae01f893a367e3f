"""Start a step's child process: job file, log, reproduce script; collect its result or error."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from navbuild import formats, supervise
from navbuild.device import PINNING_ENV
from navbuild.execute.child import EXIT_INPUT_ERROR
from navbuild.steps.base import Step, load_step, params_from_dict
from navbuild.steps.tensorrt_from_onnx import TIMING_CACHE_ENV

LOG_TAIL_LINES = 25
#: how long a step asked to stop (Ctrl-C, timeout) gets to stop what it started by itself (its
#: Model Analyzer's own stop, ANALYZER_STOP_GRACE_S, fits in it); then its whole tree is killed
STEP_STOP_GRACE_S = 10.0


@dataclass
class ChildOutcome:
    ok: bool
    result: dict
    input_error: bool = False
    message: str = ""
    log_tail: str = ""


def write_job(staging: Path, target_id: str, step: str, params: dict, inputs: dict[str, Path], cwd: Path,
              family_modules: Sequence[str] | None = None) -> Path:
    """Write ``job.json`` and ``reproduce.sh`` into the staging dir (beside ``out/``).

    ``family_modules``: the format families registered outside navbuild (default: this process's).
    """
    modules = list(formats.external_modules() if family_modules is None else family_modules)
    job = {"target": target_id, "step": step, "params": params,
           "inputs": {k: str(v) for k, v in inputs.items()}, "out": "out"}
    if modules:
        # format families registered outside navbuild: the child imports them to find their
        # steps and runners
        job["formats"] = modules
    job_path = staging / "job.json"
    job_path.write_text(json.dumps(job, indent=2, sort_keys=True))
    script = staging / "reproduce.sh"
    # a build pinned to one GPU (device: cuda:N) reproduces on that GPU too
    pinned = "".join(f"{name}={shlex.quote(os.environ[name])} " for name in PINNING_ENV if name in os.environ)
    script.write_text(
        "#!/bin/sh\n"
        f"# Re-runs target '{target_id}' ({step}) by hand, outside navbuild's cache.\n"
        "# Usage: sh reproduce.sh [OUTPUT_DIR]   (default: a new temporary folder)\n"
        f"{_tool_lines(step, params)}"
        "here=$(cd \"$(dirname \"$0\")\" && pwd)\n"
        "out=${1:-$(mktemp -d)}\n"
        f"cd {shlex.quote(str(cwd))}\n"
        f"{pinned}PYTHONPATH={shlex.quote(pythonpath(cwd))} exec {shlex.quote(sys.executable)} "
        "-m navbuild.execute.child \"$here/job.json\" --out \"$out\"\n")
    script.chmod(0o755)
    return job_path


def _tool_lines(step: str, params: dict) -> str:
    """The step's own tool's command lines (Step.reproduce_commands) as comments of the script: what
    a user runs by hand, with that tool alone, in a folder holding the step's input files."""
    cls = load_step(step)
    if cls.reproduce_commands.__func__ is Step.reproduce_commands.__func__:  # the step offers none
        return ""
    lines = cls.reproduce_commands(params_from_dict(cls.Params, params)).splitlines()
    if not lines:
        return ""
    return ("# The same by hand with the tool alone (in a folder holding the step's input files):\n"
            + "".join(f"#   {line}\n" for line in lines))


def run_child(staging: Path, cwd: Path, timeout: float | None = None,
              started: Callable[[supervise.Supervised], None] | None = None) -> ChildOutcome:
    """Run the job in ``staging`` in a fresh interpreter; stdout and stderr go to ``log.txt``.

    ``started`` receives the running child (a caller in another thread stops it to cancel the run).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = pythonpath(cwd)
    env.setdefault("PYTHONHASHSEED", "0")
    # torch.compile's inductor (and triton) caches go inside the store, not $TMPDIR: they are
    # reused across targets and builds, and removing the store removes them. Staging dirs are
    # <store>/tmp/<name>; a user's own setting wins.
    compile_cache = Path(staging).absolute().parent.parent / "compile-cache"
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache / "inductor"))
    env.setdefault("TRITON_CACHE_DIR", str(compile_cache / "triton"))
    # TensorRT's timing caches, one per GPU, shared by every engine build (never part of a key)
    env.setdefault(TIMING_CACHE_ENV, str(compile_cache / "tensorrt-timing"))
    # the Triton server's prepared backend folder and library links, shared by every Triton target
    env.setdefault("NAVBUILD_TRITON_DIR", str(Path(staging).absolute().parent.parent / "triton-stack"))
    log_path = staging / "log.txt"
    with open(log_path, "wb") as log:
        # Under a guard: the step and everything it starts (servers, Model Analyzer and what it
        # starts, workers) die with this process, even when it is SIGKILLed.
        proc = supervise.start([sys.executable, "-m", "navbuild.execute.child", str(staging / "job.json")],
                               grace_s=STEP_STOP_GRACE_S, cwd=cwd, env=env, stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            if started is not None:
                started(proc)
            code = proc.wait(timeout=timeout)
        except BaseException:
            # Ctrl-C or timeout: the child (and anything it started) must not outlive us.
            proc.stop()
            raise
    tail = log_tail(log_path)
    if code == 0 and (staging / "result.json").is_file():
        return ChildOutcome(ok=True, result=json.loads((staging / "result.json").read_text()), log_tail=tail)
    message = f"child process exited with code {code}"
    if code < 0:
        message = f"child process killed by signal {signal.Signals(-code).name}"
    err_file = staging / "error.json"
    if err_file.is_file():
        try:
            message = json.loads(err_file.read_text()).get("message", message)
        except ValueError:
            pass
    return ChildOutcome(ok=False, result={}, input_error=code == EXIT_INPUT_ERROR, message=message, log_tail=tail)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def pythonpath(cwd: Path) -> str:
    """The PYTHONPATH of a child process (or a Ray worker): ``cwd`` first, then this process's path."""
    # The child must import what the parent can: the user's modules in the working
    # directory and anything on the parent's path (tests, editable installs).
    parts = [str(cwd)] + [p for p in sys.path if p and Path(p).is_dir()]
    seen: list[str] = []
    for p in parts:
        if p not in seen:
            seen.append(p)
    return os.pathsep.join(seen)

