"""SearchTritonConfig: rank the measured configurations under the constraints; write the winning repositories."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from dataclasses import dataclass
from typing import Any, ClassVar

from navbuild.key_fields import added
from navbuild.steps.base import Step, StepContext
from navbuild.steps.triton_measure import MEASUREMENTS_FILE, local_runner
from navbuild.steps.triton_model import INPUT_DATA, IO_FILE, LOCAL, NATIVE, local_runtime_options
from navbuild.triton.analyzer import Constraints, LoadSpec, deployment_config
from navbuild.triton.io import tensors_from_json
from navbuild.triton.model_config import ModelConfig
from navbuild.triton.plot import plot_search
from navbuild.triton.ranking import closest, rank
from navbuild.triton.repository import write_local, write_native

SEARCH_FILE, TABLE_FILE, PLOT_FILE = "search.json", "measurements.csv", "search.png"
NATIVE_REPO, LOCAL_REPO, ANALYZER_FILE = "model_repository", "local_repository", "model_analyzer.yaml"


@dataclass(frozen=True)
class SearchSpace:
    """The recipe's search space, kept to write a Model Analyzer config that repeats the search."""

    max_batch_sizes: tuple[int, ...]
    instance_counts: tuple[int, ...]
    instance_kind: str
    dynamic_batching: tuple[bool, ...]
    max_queue_delays_us: tuple[int, ...]
    backend_options: tuple[tuple[str, tuple[str, ...]], ...]
    #: KIND_GPU: the GPUs of every configuration, and the GPU accelerators tried ("" = none) with
    #: their parameters (added after CPU searches' keys were issued: left out of a key while empty)
    gpus: tuple[int, ...] = added(())
    accelerators: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = added(())


@dataclass(frozen=True)
class SearchParams:
    name: str
    variant: str
    backend: str
    mode: str
    configs: tuple[ModelConfig, ...]  # every measured configuration; inputs "measure-<i>" in this order
    default_index: int  # which of them is Triton's default
    constraints: Constraints
    objective: str
    weights: tuple[tuple[str, float], ...]
    load: LoadSpec
    space: SearchSpace


class SearchTritonConfig(Step):
    """Pick the configuration whose best load point under the constraints scores best.

    Writes the native model repository with that configuration (what a user deploys), its
    python-backend twin, every measurement as a table, the plot, and a Model Analyzer config
    that repeats the search on a deployment machine. When nothing meets the constraints the
    result says so and lists the closest configurations; the build then exits non-zero.
    """

    name: ClassVar[str] = "SearchTritonConfig"
    # 2: the python-backend twin's default thread count is "every core" (0), counted where it is
    #    served (as WriteTritonModel 3): it was this machine's os.cpu_count()
    version: ClassVar[int] = 2
    Params: ClassVar[type] = SearchParams
    requires: ClassVar[tuple[str, ...]] = ("numpy", "tritonclient", "matplotlib")
    tools: ClassVar[tuple[str, ...]] = ("tritonclient", "matplotlib")

    def run(self, params: SearchParams, ctx: StepContext) -> dict:

        labels = [c.label() for c in params.configs]
        results = {}
        for i, label in enumerate(labels):
            measured = json.loads((ctx.inputs[f"measure-{i}"] / MEASUREMENTS_FILE).read_text())
            results[label] = measured["rows"]
        weights = dict(params.weights)
        ranking = rank(results, params.constraints, params.objective, weights)
        default_label = labels[params.default_index]
        default_best = next((c for c in rank({default_label: results[default_label]}, params.constraints,
                                             "throughput", weights)), None)
        table = [{"config": label, **r, "meets_constraints": params.constraints.met_by(r)}
                 for label, rows in results.items() for r in rows]
        _write_table(ctx.out / TABLE_FILE, table)
        winner = ranking[0] if ranking else None
        plot_search(results, params.constraints, ctx.out / PLOT_FILE, title=f"{params.name}: Triton configurations",
                    winner=winner.label if winner else None, default=default_label)
        summary: dict[str, Any] = {
            "variant": params.variant, "model": params.name, "backend": params.backend,
            "objective": params.objective, "constraints": dataclasses.asdict(params.constraints),
            "met": winner is not None, "table": table, "default": default_label,
            "default_best": _point(default_best), "ranking": [_point(c) for c in ranking],
        }
        if winner is None:
            summary["closest"] = closest(results, params.constraints)
            print("no configuration meets the constraints; closest:", flush=True)
            for c in summary["closest"]:
                print(f"  {c['label']} at concurrency {c['concurrency']}: {c['throughput']:.1f}/s, "
                      f"p99 {c['p99_ms']:.2f} ms", flush=True)
        else:
            best_config = params.configs[labels.index(winner.label)]
            summary["best"] = {**_point(winner), "config": dataclasses.asdict(best_config)}
            summary["margin_over_default"] = (winner.row["throughput"] / default_best.row["throughput"]
                                              if default_best else None)
            io = json.loads((ctx.inputs["repo"] / IO_FILE).read_text())
            inputs, outputs = tensors_from_json(io["inputs"]), tensors_from_json(io["outputs"])
            native_files = _files(ctx.inputs["repo"] / NATIVE / params.name / "1")
            write_native(ctx.out / NATIVE_REPO, params.name, params.backend, native_files, inputs, outputs, best_config)
            local_files = {k: v for k, v in _files(ctx.inputs["repo"] / LOCAL / params.name / "1").items()
                           if k != "model.py"}
            write_local(ctx.out / LOCAL_REPO, params.name, local_runner(ctx.inputs["repo"], params.name), local_files, inputs, outputs,
                        best_config, local_runtime_options(params.backend, params.mode, best_config.backend_parameters))
            shutil.copyfile(ctx.inputs["repo"] / INPUT_DATA, ctx.out / "input_data.json")
            margin = summary["margin_over_default"]
            print(f"best: {winner.label} at concurrency {winner.row['concurrency']}: "
                  f"{winner.row['throughput']:.1f}/s, p99 {winner.row['p99_ms']:.2f} ms"
                  + (f"; {margin:.2f}x Triton's default config" if margin else
                     "; Triton's default config meets no load point under the constraints"), flush=True)
        space = dataclasses.asdict(params.space)
        space["backend_options"] = {k: list(v) for k, v in params.space.backend_options}
        import yaml

        (ctx.out / ANALYZER_FILE).write_text(yaml.safe_dump(deployment_config(
            params.name, space, params.load, params.constraints, params.objective, weights), sort_keys=False))
        (ctx.out / SEARCH_FILE).write_text(json.dumps(summary, indent=2))
        return summary


def _point(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    return {"label": choice.label, "score": choice.score, **dict(choice.row)}


def _files(folder: Any) -> dict[str, Any]:
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file()}


def _write_table(path: Any, table: list[dict[str, Any]]) -> None:
    columns = ["config", "concurrency", "batch_size", "throughput", "p90_ms", "p95_ms", "p99_ms", "avg_ms",
               "memory_mb", "server_queue_ms", "server_compute_ms", "meets_constraints"]
    # a GPU deployment's metrics, as parse_checkpoint names them (a CPU search's table keeps its columns)
    columns += [c for c in ("gpu_memory_mb", "gpu_utilization") if any(c in row for row in table)]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(table)


__all__ = ["SearchTritonConfig", "SearchParams", "SearchSpace", "SEARCH_FILE", "NATIVE_REPO", "LOCAL_REPO"]
