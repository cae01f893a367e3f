"""onnx-sanitized as a variant of its own, end to end through the CLI on the CPU: Polygraphy's sanitizer
(constant folding through ONNX Runtime, shape inference) built, checked at every probe size and
profiled, on the mlp recipe's torch export and on an IR 3 ONNX file that lists its weights as inputs;
its reproduce.sh names the same work as ``polygraphy surgeon sanitize``, which is run as written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.models import onnx_mlp

#: short profiles, what else the machine runs not deciding them (as the tiny recipe's)
QUICK = ["triton.enabled=false", "profile.batch_sizes=[1,4]", "profile.warmup_iters=1", "profile.window_s=0.01",
         "profile.min_window_iters=2", "profile.stable_windows=2", "profile.stability=0.5", "profile.max_windows=4",
         "profile.pin_cores=false", "profile.max_background_load=1000.0"]


def _target_result(project, build: str, target: str) -> dict:
    return json.loads((project.root / build / target / "result.json").read_text())


def _checked_and_profiled(project, build: str) -> dict:
    variant = project.summary(build)["variants"]["onnx-sanitized"]
    assert variant["verdict"] == "pass", variant
    assert set(variant["profile"]) == {"1", "4"}
    checked = _target_result(project, build, "correctness/onnx-sanitized")
    assert set(checked["batches"]) == {"1", "4"} and checked["probes"], checked
    assert all(o["within_tolerance"] for probe in checked["probes"].values() for o in probe.values())
    return _target_result(project, build, "onnx-sanitized")


def _outputs(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_the_mlp_recipe_builds_checks_and_profiles_onnx_sanitized_and_its_script_reruns_it_with_polygraphy(
        project, tmp_path):
    project.run("recipe=mlp", "formats=[onnx-sanitized]", *QUICK, check=True)
    assert project.statuses("build/mlp") == {
        "reference": "built", "onnx": "built", "onnx-sanitized": "built", "correctness/onnx-sanitized": "built",
        "profile/onnx-sanitized": "built"}
    sanitized = _checked_and_profiled(project, "build/mlp")
    # the torch export's shape arithmetic is folded away: fewer nodes, every intermediate shape known
    assert sanitized["nodes"] < sanitized["nodes_before"] and sanitized["inferred_shapes"] > 0
    assert sanitized["weights_removed_from_inputs"] == 0 and sanitized["inputs"] == ["x"]

    # reproduce.sh names Polygraphy's own command line; run as written from a folder holding the input
    # (the onnx target's model.onnx), it makes a model with the same outputs
    script = (project.root / "build/mlp/onnx-sanitized/reproduce.sh").read_text()
    line = "polygraphy surgeon sanitize model.onnx --fold-constants -o sanitized/model.onnx"
    assert f"#   {line}\n" in script
    shutil.copy(project.root / "build/mlp/onnx/model.onnx", tmp_path / "model.onnx")
    subprocess.run([str(Path(sys.executable).parent / "polygraphy"), *line.split()[1:]], cwd=tmp_path, check=True,
                   capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 64)).astype(np.float32)
    np.testing.assert_allclose(_outputs(tmp_path / "sanitized/model.onnx", x),
                               _outputs(project.root / "build/mlp/onnx-sanitized/model.onnx", x), rtol=1e-5, atol=1e-6)


def test_an_ir3_file_with_weights_as_inputs_is_sanitized_checked_and_profiled_as_the_onnx_sanitized_variant(
        project):
    import onnx

    onnx_mlp(project.root / "m.onnx", ir_version=3, opset=8, weights_as_inputs=True)
    project.run("recipe=tiny", "source.torch=null", "source.onnx=m.onnx", "formats=[onnx-sanitized]", *QUICK,
                check=True)
    sanitized = _checked_and_profiled(project, "build/tiny")
    assert sanitized["weights_removed_from_inputs"] == 3 and sanitized["ir_version_before"] == 3
    proto = onnx.load(str(project.root / "build/tiny/onnx-sanitized/model.onnx"))
    assert proto.ir_version >= 4 and [i.name for i in proto.graph.input] == ["x"]
    assert len(proto.graph.value_info) == sanitized["inferred_shapes"] > 0
