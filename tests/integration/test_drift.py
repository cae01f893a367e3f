"""Drift targets on a tiny real model with one quantization-hostile layer: ONNX Runtime with Polygraphy, OpenVINO, torch."""

from __future__ import annotations

import json
import textwrap

import navbuild

#: fc2 reads activations two of whose channels are scaled by 1000 (and fc2 scales them back): per-tensor
#: int8 of that input rounds the other 30 channels, which carry fc2's output, to almost nothing, so the
#: error is born in fc2
HOSTILE = textwrap.dedent('''
    import torch


    class Hostile(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.fc1 = torch.nn.Linear(8, 32)
            self.fc2 = torch.nn.Linear(32, 32)
            self.fc3 = torch.nn.Linear(32, 4)
            scale = torch.ones(32)
            scale[:2] = 1000.0
            self.register_buffer("scale", scale)
            with torch.no_grad():
                self.fc2.weight[:, :2] /= 1000.0

        def forward(self, x):
            h = torch.relu(self.fc1(x)) * self.scale
            return self.fc3(torch.relu(self.fc2(h)))


    def hostile(**_):
        return Hostile()
''')

#: the project's tiny recipe with the hostile model, formats [torch, onnx, openvino] x precisions [fp32, int8]
HOSTILE_RECIPE = ["source.torch=hostilemodels:hostile", "formats=[torch,onnx,openvino]", "precisions=[fp32,int8]",
                  "samples.count=16", "profile.batch_sizes=[8]", "profile.finalists=1",
                  "correctness.probe.enabled=false", "quantization.static.max_samples=16",
                  "openvino.quantization.subset_size=16", "drift.top=3"]


def test_drift_names_the_hostile_layer_first_and_is_cached(project):
    (project.root / "hostilemodels.py").write_text(HOSTILE)
    result = navbuild.build("tiny", HOSTILE_RECIPE)
    out = {o.id: o for o in result.outcomes.values()}
    # ONNX names fc2 by its Gemm node, OpenVINO by the MatMul its ONNX frontend split the Gemm into,
    # torch by the module
    for variant, first in (("onnx-int8-static", "/fc2/Gemm"), ("openvino-int8", "/fc2/Gemm/WithoutBiases"),
                           ("torch-int8-dynamic", "fc2")):
        drift = out[f"drift/{variant}"]
        assert drift.status == "built", (variant, drift.reason, drift.log_tail)
        report = json.loads((drift.path / "drift.json").read_text())
        assert report["variant"] == variant and report["metric"] == "relative_l2"
        assert report["batch"] == 8 and report["samples"] == 16
        top = report["layers"][0]
        assert top["name"] == first, (variant, report["layers"][:3])
        assert top["growth"] == max(r["growth"] for r in report["layers"])
        assert top["error_after"] > top["error_before"]
        assert [r["position"] for r in report["along_graph"]] == list(range(len(report["along_graph"])))
        assert (drift.path / "drift.png").stat().st_size > 0
        # the summary has the whole table; the report names the top layers
        row = result.summary["variants"][variant]["drift"]
        assert [r["name"] for r in row["layers"]] == [r["name"] for r in report["layers"]]
    static = json.loads((out["drift/onnx-int8-static"].path / "drift.json").read_text())
    assert static["compared_with"] == "onnx"
    # a name the quantizer's nodes_to_exclude takes: a node of the graph the quantizer read
    assert static["layers"][0]["op_type"] == "Gemm"
    assert "drift: /fc2/Gemm (Gemm)" in (project.root / "build" / "tiny" / "summary.txt").read_text()
    # the dynamic variant is compared too, and helpers (DynamicQuantizeLinear, Cast) are never layers
    dynamic = json.loads((out["drift/onnx-int8-dynamic"].path / "drift.json").read_text())
    assert not {r["op_type"] for r in dynamic["layers"]} & {"DynamicQuantizeLinear", "Cast", "QuantizeLinear"}

    again = navbuild.build("tiny", HOSTILE_RECIPE)
    # int8 fails its budget here, so its profiles are skipped; everything else comes from the cache
    assert {o.id: o.status for o in again.outcomes.values() if o.status not in ("cached", "skipped")} == {}
    assert {o.id for o in again.outcomes.values() if o.status == "skipped"} <= {
        f"profile/{v}" for v in ("torch-int8-dynamic", "onnx-int8-dynamic", "onnx-int8-static", "openvino-int8",
                                 "openvino-int8-wo")}
