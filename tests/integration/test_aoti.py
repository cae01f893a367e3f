"""The torch-aoti variant end to end through the CLI on a tiny MLP: torch.export with a dynamic batch,
AOTInductor's package, its correctness at every probe size, and a profile timed through bind().

The MLP is an ``nn.Sequential``, whose forward takes ``input``, not the recipe's ``x``: the package
is called positionally, as it was exported (the by-name call: test_torch_variant_steps.py's pytree model)."""

from __future__ import annotations

import json

import numpy as np

from navbuild.runners import make_runner
from navbuild.runtime import RuntimeOptions, TorchFactory

AOTI = ["recipe=tiny", "formats=[torch,torch-aoti]", "source.torch=seqmodels:sequential"]
SEQUENTIAL = '''
import torch


def sequential(width: int = 16, seed: int = 0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.ReLU(), torch.nn.Linear(width, 4)).eval()
'''


def test_torch_aoti_builds_checks_and_profiles_from_the_command_line(project):
    (project.root / "seqmodels.py").write_text(SEQUENTIAL)
    project.run(*AOTI, check=True)
    assert project.statuses() == {t: "built" for t in project.statuses()}
    assert {"torch-aoti", "correctness/torch-aoti", "profile/torch-aoti"} <= set(project.statuses())
    row = project.summary()["variants"]["torch-aoti"]
    assert row["verdict"] == "pass" and row["runner"] == "torch-aoti"
    # the correctness probes ran the package at a batch the export never saw: the axis is dynamic
    assert all(p["y"]["within_tolerance"] for p in row["correctness"]["probes"].values())
    assert {p["y"]["shape"][0] for p in row["correctness"]["probes"].values()} - {2}
    for b in ("1", "4"):
        fig = row["profile"][b]
        assert fig["timing"] == "device" and fig["settle_windows"] >= 1 and fig["latency_ms"]["p50"] > 0
    assert row["peak_memory_mb"] is None  # a CPU variant: no device memory to report
    assert project.summary()["variants"]["torch"]["peak_memory_mb"] is None
    assert "timing" not in project.summary()["variants"]["torch"]["profile"]["1"]  # CPU profiles as before
    # the finalists time torch-aoti as its profile did (bind), torch by the host clock around run
    assert set(project.summary()["finalists"]["variants"]) == {"torch", "torch-aoti"}

    built = project.root / "build/tiny/torch-aoti"
    assert json.loads((built / "aoti.json").read_text()) == {"device": "cpu", "inputs": ["x"], "by_name": False}
    # the package alone, in this process, at batch 7, against eager torch
    feeds = {"x": np.random.default_rng(3).uniform(-1, 1, (7, 8)).astype(np.float32)}
    options = RuntimeOptions(intra_op_threads=1)
    runner = make_runner("torch-aoti", built / "model.pt2", None, ["x"], options)
    (got,) = runner.run(feeds)
    (want,) = make_runner("torch", None, TorchFactory("seqmodels:sequential", {}), ["x"], options).run(feeds)
    np.testing.assert_allclose(got, want, atol=1e-5)
    bound = runner.bind(feeds)  # what the profile timed: the inputs bound once, the model's own time
    assert bound() > 0
    np.testing.assert_array_equal(bound.outputs()[0], got)
    assert runner.peak_memory_mb() is None

    plan = project.run("plan", *AOTI, check=True)
    assert "torch-aoti" in plan.stdout and "never built" not in plan.stdout
