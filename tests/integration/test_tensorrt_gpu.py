"""TensorRT engines of the tiny recipe built, checked and profiled end to end on a real GPU (fp32 and fp16).

Needs TensorRT and a CUDA GPU: skipped, with the reason, everywhere else (these machines have neither
TensorRT nor, mostly, a GPU: the plan, the loader chains and the Triton configs are tested on the CPU in
tests/unit/planning/test_tensorrt_plan.py, tests/unit/steps/test_tensorrt_loaders.py and
tests/unit/triton_deploy/test_tensorrt_config.py).
"""

from __future__ import annotations

import importlib.util

import pytest

import navbuild

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="tensorrt not installed"),
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU (torch.cuda.is_available() is False)"),
]

ENGINES = ["tensorrt", "tensorrt-fp16"]


def test_tensorrt_fp32_and_fp16_engines_build_pass_their_checks_and_are_profiled(project) -> None:
    result = navbuild.build("tiny", ["device=cuda", f"variants=[torch,{','.join(ENGINES)}]"])
    status = {o.id: o.status for o in result.outcomes.values()}
    for engine in ENGINES:
        assert status[engine] == "built" and status[f"correctness/{engine}"] == "built", status
        assert status[f"profile/{engine}"] == "built", status
        assert result.summary["variants"][engine]["verdict"] == "pass"
        build = project.root / "build" / "tiny" / engine
        assert (build / "model.plan").is_file() and (build / "engine.json").is_file()
        script = (build / "reproduce.sh").read_text()
        assert "#   polygraphy convert model.onnx --convert-to trt" in script
    assert status["onnx-sanitized"] == "built"  # the engines' input
    again = navbuild.build("tiny", ["device=cuda", f"variants=[torch,{','.join(ENGINES)}]"])
    assert {o.id: o.status for o in again.outcomes.values() if o.id in ENGINES} == {e: "cached" for e in ENGINES}
