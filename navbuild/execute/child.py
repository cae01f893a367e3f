"""Runs one step in a child process: ``python -m navbuild.execute.child JOB [--out DIR]``.

The parent keeps going if a conversion crashes the interpreter; the job file beside the
output, with ``reproduce.sh``, re-runs exactly this step by hand.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback
from pathlib import Path

from navbuild.errors import InputError
from navbuild.formats import load_modules
from navbuild.steps.base import StepContext, load_step, params_from_dict
from navbuild.steps.common import describe_error

#: exit code of a child whose step rejected the user's inputs (InputError).
EXIT_INPUT_ERROR = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m navbuild.execute.child")
    parser.add_argument("job", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="write artifacts here instead of the job's out/")
    args = parser.parse_args(argv)
    # The parent's process guard stops a child with SIGTERM, and kills whatever is left of its
    # tree a grace period later: turned into SystemExit, SIGTERM lets a step's ``finally`` stop
    # what the step started (a Triton server, Model Analyzer) cleanly first.
    signal.signal(signal.SIGTERM, _exit_on_term)
    job_dir = args.job.resolve().parent
    job = json.loads(args.job.read_text())
    out = args.out or (job_dir / job["out"])
    out.mkdir(parents=True, exist_ok=True)
    result_path = out.parent / "result.json" if args.out is None else out / "result.json"
    error_path = result_path.with_name("error.json")


    start = time.perf_counter()
    print(f"[navbuild] target {job['target']}: step {job['step']}", flush=True)
    try:
        load_modules(job.get("formats", ()))
        step_cls = load_step(job["step"])
        params = params_from_dict(step_cls.Params, job["params"])
        ctx = StepContext(inputs={k: Path(v) for k, v in job["inputs"].items()}, out=out)
        result = step_cls().run(params, ctx)
    except InputError as exc:
        _write(error_path, {"type": "InputError", "message": str(exc)})
        print(f"[navbuild] input error: {exc}", file=sys.stderr, flush=True)
        return EXIT_INPUT_ERROR
    except BaseException as exc:  # noqa: BLE001 - report anything, the parent decides
        tb = traceback.format_exc()
        print(tb, file=sys.stderr, flush=True)
        # the root cause (ONNX Runtime's "index: 0 Got: 4 Expected: 1", torch's inner error), not
        # only the wrapper's first line

        message = describe_error(exc)
        _write(error_path, {"type": type(exc).__name__, "message": message, "traceback": tb})
        return 1
    _write(result_path, result if isinstance(result, dict) else {})
    print(f"[navbuild] done in {time.perf_counter() - start:.2f}s", flush=True)
    return 0


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _write(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))


if __name__ == "__main__":
    sys.exit(main())
