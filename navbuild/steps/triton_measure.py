"""MeasureTritonConfig: one Triton model configuration measured by Model Analyzer at every load point."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from navbuild.measure_conditions import Probe, describe
from navbuild.steps.base import Step, StepContext
from navbuild.steps.triton_model import INPUT_DATA, IO_FILE, LOCAL, local_runtime_options
from navbuild.triton.analyzer import (AnalyzerError, LoadSpec, analyzer_config, parse_checkpoint, relevant_lines,
                                      run_analyzer)
from navbuild.triton.io import tensors_from_json
from navbuild.triton.model_config import ModelConfig, parse_config
from navbuild.triton.repository import write_local
from navbuild.triton.server import free_port
from navbuild.triton.stack import find_stack

MEASUREMENTS_FILE = "measurements.json"
#: Model Analyzer's run time is bounded; a hung perf_analyzer must not hang the build
ANALYZER_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class MeasureParams:
    name: str  # the Triton model name
    backend: str  # the native backend whose behaviour the local twin reproduces
    mode: str
    config: ModelConfig
    load: LoadSpec
    collect_memory: bool  # Model Analyzer's CPU metrics (needed for a memory cap)


class MeasureTritonConfig(Step):
    """Serve the variant with one configuration and let Model Analyzer run perf_analyzer at each concurrency.

    The configuration is written into the model's own config.pbtxt, which Model Analyzer
    measures as it is (search disabled). Its checkpoint and output repository live in a
    temporary folder that is removed afterwards: only the measurements are kept, so nothing
    of one model can be reused for another.
    """

    name: ClassVar[str] = "MeasureTritonConfig"
    version: ClassVar[int] = 4
    Params: ClassVar[type] = MeasureParams
    requires: ClassVar[tuple[str, ...]] = ("numpy", "tritonclient", "model_analyzer", "pytriton")
    tools: ClassVar[tuple[str, ...]] = ("nvidia-pytriton", "tritonclient", "triton-model-analyzer",
                                        "onnxruntime", "openvino", "torch", "numpy")
    hardware_dependent: ClassVar[bool] = True
    timed: ClassVar[bool] = True

    def run(self, params: MeasureParams, ctx: StepContext) -> dict:

        repo_in = ctx.inputs["repo"]
        io = json.loads((repo_in / IO_FILE).read_text())
        inputs, outputs = tensors_from_json(io["inputs"]), tensors_from_json(io["outputs"])
        stack = triton_stack(ctx)
        work = Path(tempfile.mkdtemp(prefix="measure-", dir=ctx.out.parent))
        try:
            version_dir = repo_in / LOCAL / params.name / "1"
            files = {p.name: p for p in version_dir.iterdir() if p.is_file() and p.name != "model.py"}
            write_local(work / "repository", params.name, local_runner(repo_in, params.name), files, inputs, outputs,
                        params.config, local_runtime_options(params.backend, params.mode,
                                                             params.config.backend_parameters))
            config = analyzer_config(stack=stack, repository=work / "repository", model_name=params.name,
                                     work=work, ports=(free_port(), free_port(), free_port()), load=params.load,
                                     input_data=repo_in / INPUT_DATA, collect_memory=params.collect_memory,
                                     gpus=params.config.gpus if params.config.instance_kind == "KIND_GPU" else None)
            print(f"{params.name} {params.config.label()}: Model Analyzer at concurrency "
                  f"{list(params.load.concurrency)}", flush=True)
            # Model Analyzer, the server and perf_analyzer are this process's descendants: their CPU is ours
            with Probe() as probe:
                checkpoint = run_analyzer(config, work, stack, timeout_s=ANALYZER_TIMEOUT_S)
            print(f"measured under: {describe(probe.conditions)}", flush=True)
            rows = parse_checkpoint(checkpoint, params.name)
            measured = {r["concurrency"] for r in rows}
            missing = [c for c in params.load.concurrency if c not in measured]
            if not rows:

                raise AnalyzerError("Model Analyzer measured nothing:\n"
                                    + relevant_lines(work / "model_analyzer.log", work / "server.log"))
            for name in ("model_analyzer.yaml", "model_analyzer.log", "perf_analyzer.log", "server.log"):
                if (work / name).is_file():
                    shutil.copyfile(work / name, ctx.out / name)
            shutil.copyfile(work / "repository" / params.name / "config.pbtxt", ctx.out / "config.pbtxt")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for r in rows:
            print(f"  concurrency {r['concurrency']}: {r['throughput']:.1f} infer/s, p99 {r['p99_ms']:.2f} ms",
                  flush=True)
        if missing:
            print(f"  not measured (perf_analyzer found no stable window): concurrency {missing}", flush=True)
        result = {"label": params.config.label(), "rows": rows, "missing": missing,
                  "server_version": stack.version, "conditions": probe.conditions}
        if missing:
            # perf_analyzer's own stability target was missed at these load points
            result["noise"] = f"perf_analyzer found no stable window at concurrency {missing}"
        (ctx.out / MEASUREMENTS_FILE).write_text(json.dumps(result, indent=2))
        return result


def local_runner(repo: Path, name: str) -> str:
    """The runner the local twin uses (read back from its config.pbtxt parameters)."""

    config = parse_config((repo / LOCAL / name / "config.pbtxt").read_text())
    return config.parameters["navbuild_runner"].string_value


def triton_stack(ctx: StepContext) -> Any:
    """The Triton tools; a server binary given by the recipe arrives as the ``server`` input."""

    server = ctx.inputs.get("server")
    return find_stack(triton_work_dir(ctx), server=str(server) if server else None)


def triton_work_dir(ctx: StepContext) -> Path:
    """Where the prepared backend folder and library links live: inside the store, shared by targets."""
    configured = os.environ.get("NAVBUILD_TRITON_DIR")
    return Path(configured) if configured else ctx.out.parent.parent.parent / "triton-stack"


__all__ = ["MeasureTritonConfig", "MeasureParams", "MEASUREMENTS_FILE", "triton_work_dir", "triton_stack", "local_runner"]
