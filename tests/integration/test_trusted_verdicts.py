"""A real build of a model that branches on values: the traced fp32 variant fails its stressed probe, and
the int8 variant built from the same trace, which passes its checks, is not chosen, because the export
warned; the recipe can accept that risk. Also: a variant that raised shows `error`, not zero error."""

from __future__ import annotations

import textwrap

BRANCH = textwrap.dedent('''
    """A user's model that branches on the sign of its input's sum."""
    import torch


    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.lin = torch.nn.Linear(8, 4)

        def forward(self, x):
            if x.sum() > 0:
                return self.lin(x)
            return -self.lin(x)


    def branchy():
        return Branchy().eval()
''')

RECIPE = textwrap.dedent('''
    source: {torch: branchmodels:branchy}
    inputs:
      - {name: x, dtype: float32, shape: [batch, 8], range: [0.0, 1.0]}
    outputs: [y]
    samples: {count: 4, seed: 0}
    variants: [torch, onnx, onnx-int8-dynamic]
    runtime: {intra_op_threads: 1}
    profile:
      batch_sizes: [2]
      warmup_iters: 1
      window_s: 0.01
      min_window_iters: 2
      stable_windows: 2
      stability: 0.5
      max_windows: 3
      pin_cores: false
      finalists: 0
''')


def test_a_value_branch_is_caught_and_its_traced_int8_variant_is_not_chosen(project) -> None:
    (project.root / "branchmodels.py").write_text(BRANCH)
    (project.root / "recipes" / "branchy.yaml").write_text(RECIPE)
    proc = project.run("recipe=branchy")
    summary = project.summary("build/branchy")
    rows = summary["variants"]
    # the exact variant meets the stressed values (x -2: the other side of the branch) and fails
    assert rows["onnx"]["verdict"] == "fail", rows["onnx"]
    assert rows["onnx"]["reason"].startswith("probe stressed values (floats x -2, integers redrawn in range), "
                                             "batch 3, output y: max_abs ")
    assert rows["onnx"]["log"].endswith("build/branchy/correctness/onnx/log.txt")
    assert f"(log: {rows['onnx']['log']})" in (project.root / "build/branchy/summary.txt").read_text()
    # its int8 sibling passes its budget, but the export's TracerWarning travels to it
    int8 = rows["onnx-int8-dynamic"]
    assert int8["verdict"] == "pass", int8
    assert int8["evidence"][0]["target"] == "onnx" and int8["evidence"][0]["kind"] == "trace-warning"
    assert "Converting a tensor to a Python boolean" in int8["blocked"]
    assert "fix: use torchscript.method=script, or onnx.exporter=dynamo" in int8["blocked"]
    assert summary["best"]["variant"] == "torch"
    assert "onnx-int8-dynamic (trace risk)" in summary["best"]["why"]
    assert "onnx-int8-dynamic: not chosen: built from a trace that onnx found unreliable" in proc.stderr
    assert "not chosen: built from a trace" in (project.root / "build/branchy/summary.txt").read_text()

    accepted = project.run("recipe=branchy", "correctness.accept_trace_risk=true")
    assert accepted.returncode == summary["exit_code"]
    again = project.summary("build/branchy")["variants"]["onnx-int8-dynamic"]
    assert "blocked" not in again and "Converting a tensor" in again["risk_accepted"]
    assert "onnx-int8-dynamic" in [r["variant"] for r in project.summary("build/branchy")["best"]["ranking"]]


WRAPPED = textwrap.dedent('''
    """A user's model whose forward wraps the error that says what is wrong."""
    import torch


    class Wraps(torch.nn.Module):
        def forward(self, x):
            try:
                raise ValueError(f"expected 5 features, got {x.shape[-1]}")
            except ValueError as e:
                raise RuntimeError("forward failed") from e


    def wraps(**_):
        return Wraps()
''')


def test_an_input_problem_shows_the_root_cause_and_the_log(project) -> None:
    import pytest

    import navbuild
    from navbuild.errors import InputError

    (project.root / "wrapmodels.py").write_text(WRAPPED)
    with pytest.raises(InputError, match=r"reference: source: the model raised .* RuntimeError: forward failed; "
                                         r"root cause: ValueError: expected 5 features, got 8; .*"
                                         r"\(log: .*build/tiny/reference/log.txt\)"):
        navbuild.build("tiny", ["source.torch=wrapmodels:wraps", "formats=[torch]"])
    assert (project.root / "build/tiny/reference/log.txt").is_file()
