"""navbuild to Triton for real: the embedded server, perf_analyzer and Model Analyzer on a tiny model."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import navbuild
from procs import left_after, left_after_killing, live_commands

pytest.importorskip("pytriton", reason="the Triton stack (nvidia-pytriton) is not installed")
pytest.importorskip("model_analyzer", reason="triton-model-analyzer is not installed")

# A small search: Triton's default config and one tuned point, two load points, short windows.
TRITON = ("triton.enabled=true", "formats=[onnx]", "profile.finalists=0",
          "triton.search.max_batch_sizes=[4]", "triton.search.instance_counts=[1]",
          "triton.search.dynamic_batching=[true]", "triton.load.concurrency=[1,2]",
          "triton.load.measurement_interval_ms=500", "triton.load.stability_percentage=50",
          "triton.constraints.p99_latency_ms=2000")


def _triton_processes(root: Path) -> list[str]:
    """Command lines of live tritonserver / perf_analyzer / model-analyzer processes that belong to ``root``."""
    tools = ("tritonserver", "perf_analyzer", "model-analyzer")
    return [cmd for cmd in live_commands().values() if str(root) in cmd and any(t in cmd for t in tools)]


def test_search_validate_cache_and_widen(project):
    from navbuild.triton.model_config import parse_config

    fresh = project.run("plan", "recipe=tiny", *TRITON, check=True).stdout
    assert "triton/*" in fresh and "pending: waits for ranking; then searches the top 1" in fresh, fresh
    first = project.run("recipe=tiny", *TRITON, timeout=900, check=True)
    summary = project.summary()
    statuses = project.statuses()
    triton = summary["triton"]
    assert triton["ok"] and triton["winner"] == "onnx", first.stdout
    entry = triton["variants"]["onnx"]
    # every measured configuration at every load point, with the constraint verdict
    configs = {row["config"] for row in entry["table"]}
    assert configs == {"mbs4-i2cpu", "mbs4-i1cpu-db0us"}
    assert {row["concurrency"] for row in entry["table"]} == {1, 2}
    assert all(row["throughput"] > 0 and row["p99_ms"] > 0 for row in entry["table"])
    assert entry["default"] == "mbs4-i2cpu" and entry["margin_over_default"] > 0
    # served end to end through HTTP and gRPC and checked against the source model
    assert entry["validation"] == {"verdict": "pass", "reason": "", "batch_sizes": [1, 4],
                                   "protocols": ["grpc", "http"]}
    # the deliverables: native repository (valid config.pbtxt), local twin, plot, Model Analyzer config
    native = project.root / "build/tiny/triton/model_repository/tiny_onnx"
    config = parse_config((native / "config.pbtxt").read_text())
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 4
    assert (native / "1" / "model.onnx").is_file()
    assert parse_config((project.root / "build/tiny/triton/local_repository/tiny_onnx/config.pbtxt")
                        .read_text()).backend == "python"
    assert (project.root / "build/tiny/triton/search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "model_config_parameters" in (project.root / "build/tiny/triton/model_analyzer.yaml").read_text()
    out = first.stdout + first.stderr
    assert "Triton:" in out and "end-to-end (grpc, http): pass" in out
    assert all(statuses[t] == "built" for t in statuses if t.startswith("triton/"))
    assert not _triton_processes(project.root)

    # nothing changed: nothing is measured again
    again = project.run("recipe=tiny", *TRITON, timeout=300, check=True)
    assert all(s == "cached" for s in project.statuses().values()), again.stderr
    # the plan of a built cache shows the Triton targets themselves, cached, and nothing pending
    plan = navbuild.plan("tiny", TRITON)
    assert set(plan.by_id()) == set(project.statuses()) and plan.pending == []
    assert {t.status for t in plan.targets} == {"cached"}

    # an already running server (given by URL) is what the validation checks
    from navbuild.triton.server import TritonServer
    from navbuild.triton.stack import find_stack

    local = project.root / "build/tiny/triton/local_repository"
    with TritonServer(find_stack(project.cache / "triton-stack"), local, project.root / "server.log") as server:
        served = project.run("recipe=tiny", *TRITON, f"triton.server.url={server.http_url}", timeout=300, check=True)
        statuses = project.statuses()
        assert statuses["triton/validate/onnx"] == "built", served.stderr
        assert all(s == "cached" for t, s in statuses.items() if t.startswith("triton/measure/"))
        validation = project.summary()["triton"]["variants"]["onnx"]["validation"]
        assert validation["verdict"] == "pass" and validation["protocols"] == ["http"]

    # a wider search measures only the new configuration
    project.run("recipe=tiny", *TRITON, "triton.search.instance_counts=[1,2]", timeout=900, check=True)
    statuses = project.statuses()
    measured = {t: s for t, s in statuses.items() if t.startswith("triton/measure/")}
    assert measured == {"triton/measure/onnx/mbs4-i2cpu": "cached",
                        "triton/measure/onnx/mbs4-i1cpu-db0us": "cached",
                        "triton/measure/onnx/mbs4-i2cpu-db0us": "built"}

    # constraints nobody meets: the closest configurations, a non-zero exit, and no re-measurement
    failed = project.run("recipe=tiny", *TRITON, "triton.constraints.p99_latency_ms=0.0001", timeout=300)
    assert failed.returncode == 1
    assert "no configuration meets the constraints; closest:" in failed.stdout + failed.stderr
    entry = project.summary()["triton"]["variants"]["onnx"]
    assert entry["met"] is False and len(entry["closest"]) == 2
    assert all(s == "cached" for t, s in project.statuses().items() if t.startswith("triton/measure/"))
    assert not _triton_processes(project.root)


def test_a_changed_model_is_measured_again(project):
    args = (*TRITON, "triton.validate=false")
    project.run("recipe=tiny", *args, timeout=900, check=True)
    before = {t["id"]: t["key"] for t in project.summary()["targets"] if t["id"].startswith("triton/")}
    project.run("recipe=tiny", *args, "source.kwargs.seed=1", timeout=900, check=True)
    after = {t["id"]: (t["key"], t["status"]) for t in project.summary()["targets"] if t["id"].startswith("triton/")}
    assert set(after) == set(before)
    for target, (key, status) in after.items():
        assert key != before[target] and status == "built", target


def test_bad_search_spaces_are_recipe_errors(project):
    base = (project.root / "recipes" / "tiny.yaml").read_text()
    (project.root / "recipes" / "bad.yaml").write_text(base + textwrap.dedent("""
        triton:
          enabled: true
          search:
            max_batch_sizes: [0]
            instance_counts: [-1]
            backend_options: {onnxruntime_onnx: {intra_op_threads: [1]}}
    """))
    proc = project.run("plan", "recipe=bad")
    assert proc.returncode == 2
    for text in ("triton.search.max_batch_sizes[0]: 0 must be >= 1",
                 "triton.search.instance_counts[0]: -1 must be >= 1",
                 "triton.search.backend_options.onnxruntime_onnx: unknown backend option 'intra_op_threads'"):
        assert text in proc.stderr, proc.stderr
    missing = project.run("plan", "recipe=tiny", "triton.enabled=true", "triton.server.path=/nowhere/tritonserver")
    assert missing.returncode == 2 and "triton.server.path: '/nowhere/tritonserver' does not exist" in missing.stderr


def test_torchscript_deploys_to_pytorch_libtorch(project):
    from navbuild.triton.model_config import parse_config

    project.run("recipe=tiny", "triton.enabled=true", "formats=[torch,torchscript]", "profile.finalists=0",
                "triton.variants=[torchscript]", "triton.search.instance_counts=[1]",
                "triton.search.dynamic_batching=[false]", "triton.load.concurrency=[1]",
                "triton.load.measurement_interval_ms=500", "triton.load.stability_percentage=50",
                timeout=900, check=True)
    entry = project.summary()["triton"]["variants"]["torchscript"]
    # libtorch's default is one CPU instance: the search point equals it, so one configuration is measured
    assert {row["config"] for row in entry["table"]} == {"mbs8-i1cpu"}
    assert entry["validation"]["verdict"] == "pass"
    native = project.root / "build/tiny/triton/model_repository/tiny_torchscript"
    assert parse_config((native / "config.pbtxt").read_text()).platform == "pytorch_libtorch"
    assert (native / "1" / "model.pt").is_file()
    assert not _triton_processes(project.root)


def _measuring(commands: list[str]) -> bool:
    """Model Analyzer, its server with the model's stub, and perf_analyzer all run."""
    return all(any(tool in c for c in commands)
               for tool in ("model-analyzer", "tritonserver", "triton_python_backend_stub", "perf_analyzer"))


@pytest.mark.parametrize("group", [False, True], ids=["build", "group"])
def test_ctrl_c_during_a_measurement_leaves_no_server_behind(project, group):
    # Model Analyzer gets its own clean stop; the build waits for it, then everything is gone
    ours = str(project.root)
    code, out = project.ctrl_c_when(lambda: _measuring([c for c in live_commands().values() if ours in c]),
                                    "recipe=tiny", *TRITON, settle_s=1.0, timeout=600, group=group)
    assert code == 130, out
    assert left_after(set(), str(project.root), 0) == []  # gone by the time the build has exited
    assert not list((project.cache / "tmp").iterdir())  # no staging folder left


@pytest.mark.parametrize("group", [False, True], ids=["build", "group"])
def test_a_build_killed_during_a_measurement_leaves_nothing_running(project, group):
    build = project.popen("recipe=tiny", *TRITON)
    assert left_after_killing(build, _measuring, str(project.root), group) == []
