"""Inputs navbuild takes instead of failing, built end to end with tiny real models: fixed-size
and IR 3 ONNX files, a model the default exporter rejects, an nn.Sequential, a program whose
output class is registered in torch's pytree, and a TorchScript source."""

from __future__ import annotations

import json
import re

import pytest

import navbuild
from tests.models import PYTREE_OUTPUT_MODULE, onnx_mlp

ONNX = ["source.torch=null", "source.onnx=m.onnx", "formats=[onnx]"]

#: a model of tests/models.py as the source (the children import it as the tests do); the tiny
#: recipe's kwargs (width, seed) go to it too
def _source(name: str) -> list[str]:
    return [f"source.torch=tests.models:{name}"]


def _verdicts(result) -> dict[str, str]:
    return {name: v.get("verdict") for name, v in result.summary["variants"].items()}


def test_an_onnx_file_with_a_fixed_batch_builds_checks_calibrates_and_profiles_at_that_batch(project):
    onnx_mlp(project.root / "m.onnx", batch=2)
    args = [*ONNX, "variants=[onnx,onnx-opt,onnx-int8-static,openvino-int8]", "profile.batch_sizes=[1,4]"]
    note = ("source.onnx: m.onnx fixes the batch at 2: checks, calibration and profiles run at batch 2 only "
            "(profile.batch_sizes asked for 1, 4)")
    assert navbuild.plan("tiny", args).notes == [note]
    shown = project.run("plan", "recipe=tiny", *args, check=True)
    assert f"note: {note}" in " ".join(shown.stdout.split())

    result = navbuild.build("tiny", args)
    assert result.exit_code == 0, result.summary["targets"]
    assert _verdicts(result) == {"onnx": "pass", "onnx-opt": "pass", "onnx-int8-static": "pass",
                                 "openvino-int8": "pass"}
    for v in result.summary["variants"].values():
        assert set(v["profile"]) == {"2"}
    assert result.summary["notes"] == [note]


def test_an_ir3_onnx_file_with_weights_as_inputs_is_normalised_before_ort_and_quantization(project):
    import onnx

    onnx_mlp(project.root / "m.onnx", ir_version=3, opset=8, weights_as_inputs=True)
    result = navbuild.build("tiny", [*ONNX, "variants=[onnx,onnx-opt,onnx-int8-dynamic]"])
    assert result.exit_code == 0, result.summary["targets"]
    assert result.outcomes["onnx-sanitized"].status == "built"
    assert _verdicts(result) == {"onnx": "pass", "onnx-opt": "pass", "onnx-int8-dynamic": "pass"}
    optimized = onnx.load(str(project.root / "build/tiny/onnx-opt/model.onnx"))
    assert [i.name for i in optimized.graph.input] == ["x"]  # no weights (nor *__SHAPE) as inputs
    assert re.search(r"lists 3 weight\(s\) as graph inputs \(IR version 3\)", result.summary["notes"][0])


def test_a_model_the_default_exporter_rejects_is_exported_by_dynamo_and_passes(project):
    result = navbuild.build("tiny", [*_source("with_diff"), "formats=[torch,onnx]"])
    assert result.exit_code == 0, result.summary["targets"]
    assert result.outcomes["onnx"].result["exporter"] == "dynamo"
    assert re.match(r"UnsupportedOperatorError: Exporting the operator 'aten::diff'",
                    result.outcomes["onnx"].result["fallback_from"]["error"])
    assert _verdicts(result)["onnx"] == "pass"


def test_a_sequential_gets_its_input_positionally_in_every_format(project):
    result = navbuild.build("tiny", [*_source("sequential"), "formats=[torch,onnx,torchscript,torch-export]"])
    assert result.exit_code == 0, result.summary["targets"]
    verdicts = _verdicts(result)
    assert {k: verdicts[k] for k in ("onnx", "torchscript", "torch-export")} == \
        {"onnx": "pass", "torchscript": "pass", "torch-export": "pass"}
    # the source itself ran positionally too: it is the reference every check compared with
    assert result.outcomes["reference"].status == "built" and result.outcomes["profile/torch"].status == "built"


def test_a_program_with_a_pytree_registered_output_loads_where_the_users_module_is_imported(project):
    # a user's module whose output class is registered in torch's pytree when it is imported
    (project.root / "pytreemodels.py").write_text(PYTREE_OUTPUT_MODULE + "_register()\n")
    result = navbuild.build("tiny", ["source.torch=pytreemodels:registered", "formats=[torch,torch-export]"])
    assert result.exit_code == 0, result.summary["targets"]
    assert result.outcomes["torch-export"].result["load_imports"] == ["pytreemodels"]
    assert json.loads((project.root / "build/tiny/torch-export/imports.json").read_text()) == ["pytreemodels"]
    assert _verdicts(result)["torch-export"] == "pass"


def test_a_torchscript_source_makes_what_cannot_run_on_it_unavailable_not_failed(project):
    import torch

    import tinymodels

    torch.jit.save(torch.jit.trace(tinymodels.tiny(), torch.zeros(2, 8)), str(project.root / "m.pt"))
    result = navbuild.build("tiny", ["source.torch=null", "source.torchscript=m.pt",
                                     "variants=[torch,torch-compile,torch-int8-dynamic,torch-export,torch-aoti]"])
    st = {o.id: (o.status, o.reason) for o in result.outcomes.values()}
    assert st["profile/torch"][0] == "built"
    assert st["profile/torch-compile"] == ("unavailable",
                                           "torch.compile cannot compile a TorchScript module (the source is m.pt)")
    assert re.fullmatch(r"dynamic int8 quantizes nn.Linear modules, which a TorchScript module does not expose "
                        r"\(the source is m.pt\)", st["correctness/torch-int8-dynamic"][1])
    assert st["torch-export"] == ("unavailable", "torch.export cannot export a TorchScript module (the source is m.pt)")
    assert st["torch-aoti"] == st["torch-export"]  # AOTInductor compiles a torch.export program
    assert "failed" not in {s for s, _ in st.values()}
    assert result.exit_code == 0


def test_inputs_an_onnx_file_rejects_exit_2_naming_its_inputs_the_runtimes_error_and_the_log(project):
    onnx_mlp(project.root / "m.onnx")  # x: [batch, 8]
    proc = project.run("recipe=tiny", *ONNX, "inputs=[{name: x, dtype: float32, shape: [batch, 6]}]")
    assert proc.returncode == 2, proc.stderr
    text = " ".join(proc.stderr.split())
    assert re.search(r"reference: source: the model raised on the recipe's inputs \(x float32 \(1, 6\)\) at batch 1: "
                     r"\w+: .*INVALID_ARGUMENT.*; check inputs' names, dtypes and shapes against the ONNX file's "
                     r"inputs \(log: \S+/build/tiny/reference/log.txt\)", text), text
    assert "Traceback" not in proc.stderr and "forward" not in text
