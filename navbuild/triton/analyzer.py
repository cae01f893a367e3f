"""Triton Model Analyzer: its config from a recipe's load, constraints and objective; a run; its results.

navbuild measures one model configuration per Model Analyzer run (the configuration is the
model's own ``config.pbtxt``, which Model Analyzer profiles as its "default"), so that every
measurement is a cached target of its own. Model Analyzer's checkpoint knows nothing of the
model's content: each run gets a fresh checkpoint folder that is thrown away afterwards.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from navbuild import supervise
from navbuild.errors import NavbuildError
from navbuild.key_fields import added
from navbuild.triton.server import relevant_lines as pick
from navbuild.triton.stack import python_backend_shm

#: recipe constraint -> (Model Analyzer metric, bound)
CONSTRAINT_METRICS = {"p99_latency_ms": ("perf_latency_p99", "max"),
                      "min_throughput": ("perf_throughput", "min"),
                      "max_memory_mb": ("cpu_used_ram", "max"),
                      "max_gpu_memory_mb": ("gpu_used_memory", "max")}
#: Model Analyzer's GPU metrics (per GPU in a measurement's ``_gpu_data``) -> navbuild's row field, and
#: how the GPUs of one measurement combine (as Model Analyzer combines them: memory summed,
#: utilization averaged)
GPU_METRICS = {"gpu_used_memory": ("gpu_memory_mb", "sum"), "gpu_utilization": ("gpu_utilization", "mean")}
#: how long Model Analyzer gets to stop its server and perf_analyzer itself (on SIGINT) before
#: its whole tree is killed; shorter than a step's own grace (execute.isolation.STEP_STOP_GRACE_S)
ANALYZER_STOP_GRACE_S = 5.0


class AnalyzerError(NavbuildError):
    """Model Analyzer failed or measured nothing; the message holds its log's relevant lines."""


@dataclass(frozen=True)
class LoadSpec:
    """The load perf_analyzer applies: client concurrencies, request batch size, stability rules."""

    concurrency: tuple[int, ...]
    batch_size: int = 1
    measurement_interval_ms: int = 1000
    stability_percentage: int = 10
    max_trials: int = 10


@dataclass(frozen=True)
class Constraints:
    p99_latency_ms: float | None = None
    min_throughput: float | None = None
    max_memory_mb: float | None = None
    #: GPU memory in use while serving (added after CPU searches' keys were issued: out of a key while unset)
    max_gpu_memory_mb: float | None = added(None)

    def met_by(self, row: Mapping[str, Any]) -> bool:
        """Whether a measurement row (``p99_ms``, ``throughput``, ``memory_mb``, ``gpu_memory_mb``) meets
        every bound. A bound on memory that was not measured is not held against the row."""
        if self.p99_latency_ms is not None and row["p99_ms"] > self.p99_latency_ms:
            return False
        if self.min_throughput is not None and row["throughput"] < self.min_throughput:
            return False
        for bound, measured in ((self.max_memory_mb, row.get("memory_mb")),
                                (self.max_gpu_memory_mb, row.get("gpu_memory_mb"))):
            if bound is not None and measured is not None and measured > bound:
                return False
        return True


def constraints_section(constraints: Constraints) -> dict[str, dict[str, float]]:
    """The recipe's constraints as Model Analyzer's ``constraints:`` (metric -> {min|max: value})."""
    section: dict[str, dict[str, float]] = {}
    for key, (metric, bound) in CONSTRAINT_METRICS.items():
        value = getattr(constraints, key)
        if value is not None:
            section[metric] = {bound: float(value)}
    return section


def objectives_section(objective: str, weights: Mapping[str, float]) -> dict[str, float]:
    """The recipe's objective as Model Analyzer's ``objectives:`` (metric -> relative weight)."""
    if objective == "throughput":
        return {"perf_throughput": 10}
    if objective == "latency":
        return {"perf_latency_p99": 10}
    if objective == "weighted":
        section = {"perf_throughput": weights.get("throughput", 0), "perf_latency_p99": weights.get("latency", 0)}
        return {k: v for k, v in section.items() if v > 0}
    raise ValueError(f"unknown objective '{objective}' (throughput, latency, weighted)")


def analyzer_config(*, stack: Any, repository: Path, model_name: str, work: Path, ports: Sequence[int],
                    load: LoadSpec, input_data: Path | None = None, constraints: Constraints | None = None,
                    objective: str | None = None, weights: Mapping[str, float] | None = None,
                    collect_memory: bool = False, gpus: Sequence[int] | None = None) -> dict[str, Any]:
    """A Model Analyzer ``profile`` config that measures ``model_name``'s own config.pbtxt at ``load``.

    Everything it writes stays under ``work``; the server it starts listens on 127.0.0.1 at
    ``ports`` (http, grpc, metrics). ``triton_server_environment`` replaces the server's
    environment (perf_analyzer inherits it too), so it lists every library and Python folder.
    ``gpus``: a KIND_GPU configuration's GPUs (empty: every GPU), which Model Analyzer then
    monitors (gpu_used_memory, gpu_utilization); None: a CPU configuration, as before.
    """
    http, grpc, metrics = ports
    env = stack.env({})
    config: dict[str, Any] = {
        "model_repository": str(repository),
        "output_model_repository_path": str(work / "output_repository"),
        "override_output_model_repository": True,
        "checkpoint_directory": str(work / "checkpoints"),
        "export_path": str(work / "export"),
        "triton_output_path": str(work / "server.log"),
        "perf_output": True,
        "perf_output_path": str(work / "perf_analyzer.log"),
        "triton_launch_mode": "local",
        "triton_http_endpoint": f"127.0.0.1:{http}",
        "triton_grpc_endpoint": f"127.0.0.1:{grpc}",
        "triton_metrics_url": f"http://127.0.0.1:{metrics}/metrics",
        "perf_analyzer_path": str(stack.perf_analyzer),
        "client_protocol": "grpc",
        "run_config_search_disable": True,
        "skip_summary_reports": True,
        "skip_detailed_reports": True,
        "collect_cpu_metrics": bool(collect_memory),
        "perf_analyzer_flags": {
            # No "percentile": perf_analyzer would then judge stability on p99, which for a
            # sub-millisecond model never settles; it reports p99 (what is ranked) either way.
            # time windows: in count windows (Model Analyzer's default) a fast model makes it
            # re-run perf_analyzer with 50 more requests each time, up to 10 times per load point
            "measurement-mode": "time_windows",
            "measurement-interval": int(load.measurement_interval_ms),
            "stability-percentage": int(load.stability_percentage),
            "max-trials": int(load.max_trials),
        },
        "profile_models": {model_name: {"parameters": {"concurrency": list(load.concurrency),
                                                       "batch_sizes": [int(load.batch_size)]}}},
        "triton_server_path": str(stack.server),
        "triton_server_flags": {"backend_directory": str(stack.backend_dir), "http_address": "127.0.0.1",
                                "grpc_address": "127.0.0.1", "metrics_address": "127.0.0.1"},
        "triton_server_environment": {k: env[k] for k in ("LD_LIBRARY_PATH", "PYTHONPATH", "PATH") if k in env},
    }
    if input_data is not None:
        config["perf_analyzer_flags"]["input-data"] = str(input_data)
    if gpus is not None:
        # no cpu_only: Model Analyzer measures on the GPUs and reads their metrics (its --gpus takes
        # indices or UUIDs; "all" is its default)
        config["gpus"] = [str(g) for g in gpus] or ["all"]
    if constraints is not None and (section := constraints_section(constraints)):
        config["constraints"] = section
    if objective is not None:
        config["objectives"] = objectives_section(objective, weights or {})
    return config


def deployment_config(model_name: str, space: Mapping[str, Any], load: LoadSpec, constraints: Constraints,
                      objective: str, weights: Mapping[str, float]) -> dict[str, Any]:
    """A Model Analyzer config to repeat the whole search on a deployment machine (an NGC Triton).

    It profiles the native model in ``./model_repository`` over ``space`` (keys
    ``max_batch_sizes``, ``instance_counts``, ``instance_kind``, ``dynamic_batching``,
    ``max_queue_delays_us``, ``backend_options`` as in the recipe) with the same load,
    constraints and objective that navbuild used here.
    """
    group: dict[str, Any] = {"kind": space["instance_kind"], "count": list(space["instance_counts"])}
    if space.get("gpus"):
        group["gpus"] = list(space["gpus"])
    params: dict[str, Any] = {"max_batch_size": list(space["max_batch_sizes"]), "instance_group": [group]}
    if any(space["dynamic_batching"]):
        params["dynamic_batching"] = {"max_queue_delay_microseconds": list(space["max_queue_delays_us"]) or [0]}
    if space.get("backend_options"):
        params["parameters"] = {k: {"string_value": [str(v) for v in values]}
                                for k, values in space["backend_options"].items()}
    if space.get("accelerators"):
        # each accelerator tried, as alternatives Model Analyzer merges into the model's own
        # optimization block (its graph level stays); none: an empty accelerator list
        params["optimization"] = [
            {"execution_accelerators": {"gpu_execution_accelerator":
                                        [{"name": name, "parameters": dict(parameters)}] if name else []}}
            for name, parameters in space["accelerators"]]
    config: dict[str, Any] = {
        "model_repository": "./model_repository",
        "run_config_search_mode": "brute",
        "perf_analyzer_flags": {"percentile": 99, "input-data": "./input_data.json"},
        "objectives": objectives_section(objective, weights),
        "profile_models": {model_name: {"parameters": {"concurrency": list(load.concurrency),
                                                       "batch_sizes": [int(load.batch_size)]},
                                        "model_config_parameters": params}},
    }
    if (section := constraints_section(constraints)):
        config["constraints"] = section
    return config


def run_analyzer(config: Mapping[str, Any], work: Path, stack: Any, timeout_s: float = 1800) -> Path:
    """Run ``model-analyzer profile`` on ``config``; return its checkpoint file.

    Model Analyzer runs under navbuild's process guard, which stops it and everything it
    started (its server and perf_analyzer, each in a session of its own) on any exit from here
    (failure, timeout, Ctrl-C) and when the calling process dies, however it dies.
    """
    import yaml

    work.mkdir(parents=True, exist_ok=True)
    shm_config, shm_leftovers = python_backend_shm()
    config = {**config, "triton_server_flags": {**config.get("triton_server_flags", {}), "backend_config": shm_config}}
    config_path = work / "model_analyzer.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=True))
    log_path = work / "model_analyzer.log"
    cmd = [str(stack.require_model_analyzer()), "profile", "-f", str(config_path)]
    with open(log_path, "w") as log:
        # SIGINT is Model Analyzer's own clean stop: it stops its server and perf_analyzer
        proc = supervise.start(cmd, grace_s=ANALYZER_STOP_GRACE_S, stop_signal=signal.SIGINT,
                               leftovers=(shm_leftovers,), stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=work, env=stack.env())
        try:
            rc = _wait(proc, work / "server.log", log_path, timeout_s)
        finally:
            proc.stop()
    checkpoint = work / "checkpoints" / "0.ckpt"
    if rc != 0 or not checkpoint.is_file():
        raise AnalyzerError(f"Model Analyzer failed (exit {rc}):\n{relevant_lines(log_path, work / 'server.log')}\n"
                            f"full log: {log_path}")
    return checkpoint


#: server log lines after which the server never becomes ready (it waits forever instead of exiting)
_FATAL = ("Failed to run python backend stub",)


def _wait(proc: supervise.Supervised, server_log: Path, log_path: Path, timeout_s: float) -> int:
    """Wait for Model Analyzer; fail early when its server hit a fatal error that would hang it."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        if server_log.is_file() and any(f in server_log.read_text(errors="replace") for f in _FATAL):
            raise AnalyzerError(f"the Triton server Model Analyzer started cannot run the model:\n"
                                f"{relevant_lines(server_log)}\nserver log: {server_log}")
        if time.monotonic() > deadline:
            raise AnalyzerError(f"Model Analyzer took longer than {timeout_s:.0f} s; its log: {log_path}")


def relevant_lines(*logs: Path, limit: int = 15) -> str:
    """The error lines of Model Analyzer's and the server's logs (what a person needs to see first)."""

    picked = [f"  {log.name}: {line}" for log in logs if log.is_file()
              for line in pick(log.read_text(errors="replace"), limit)]
    return "\n".join(picked[-limit:]) or "  (the logs are empty)"


def parse_checkpoint(path: Path, model_name: str) -> list[dict[str, Any]]:
    """Every measurement of ``model_name`` in a Model Analyzer checkpoint, one row per load point.

    A row: ``concurrency``, ``batch_size``, ``throughput`` (inferences/s), ``p90_ms``,
    ``p95_ms``, ``p99_ms``, ``avg_ms`` (when recorded), ``memory_mb`` (when collected),
    ``server_queue_ms``, ``server_compute_ms``, ``variant`` (Model Analyzer's config name);
    where Model Analyzer monitored GPUs (a KIND_GPU configuration) also ``gpu_memory_mb`` (summed
    over the GPUs) and ``gpu_utilization`` (%, averaged over them): see GPU_METRICS.
    """
    data = json.loads(path.read_text())
    results = data.get("ResultManager.results", {}).get("_results", {}).get(model_name, {})
    rows = []
    for variant, entry in results.items():
        measurements = entry[1] if isinstance(entry, list) and len(entry) > 1 else {}
        for measurement in measurements.values():
            gpu = _gpu_metrics(measurement.get("_gpu_data") or {})
            for mcm in measurement.get("_model_config_measurements", []):
                pa = mcm.get("_model_specific_pa_params", {})
                metrics = {name: value["_value"] for name, value in mcm.get("_non_gpu_data", [])}
                if "perf_throughput" not in metrics:
                    continue
                rows.append({
                    "variant": variant,
                    "concurrency": int(pa.get("concurrency-range") or 0),
                    "batch_size": int(pa.get("batch-size") or 1),
                    "throughput": float(metrics["perf_throughput"]),
                    "p90_ms": _get(metrics, "perf_latency_p90"),
                    "p95_ms": _get(metrics, "perf_latency_p95"),
                    "p99_ms": _get(metrics, "perf_latency_p99"),
                    "avg_ms": _get(metrics, "perf_latency_avg"),
                    "memory_mb": _get(metrics, "cpu_used_ram"),
                    "server_queue_ms": _get(metrics, "perf_server_queue"),
                    "server_compute_ms": _get(metrics, "perf_server_compute_infer"),
                    **gpu,
                })
    # Model Analyzer may measure a load point twice (a retry after adjusting perf_analyzer's
    # window): the later measurement stands
    latest = {(r["variant"], r["concurrency"], r["batch_size"]): r for r in rows}
    return sorted(latest.values(), key=lambda r: (r["variant"], r["concurrency"]))


def _gpu_metrics(gpu_data: Mapping[str, Any]) -> dict[str, float]:
    """A measurement's ``_gpu_data`` (GPU UUID -> [[tag, record], ...]) as row fields (GPU_METRICS);
    none where no GPU was monitored."""
    per_metric: dict[str, list[float]] = {}
    for records in gpu_data.values():
        for tag, record in records:
            if tag in GPU_METRICS:
                per_metric.setdefault(tag, []).append(float(record["_value"]))
    fields = {}
    for tag, values in per_metric.items():
        field, combine = GPU_METRICS[tag]
        fields[field] = sum(values) if combine == "sum" else sum(values) / len(values)
    return fields


def _get(metrics: Mapping[str, float], name: str) -> float | None:
    value = metrics.get(name)
    return None if value is None else float(value)


__all__ = ["LoadSpec", "Constraints", "AnalyzerError", "analyzer_config", "deployment_config", "constraints_section",
           "objectives_section", "run_analyzer", "parse_checkpoint", "relevant_lines", "CONSTRAINT_METRICS",
           "GPU_METRICS"]
