"""The format-family extension point, proved from outside navbuild: a toy family declared in this file
alone (a conversion step, a runner, a variant) builds end to end (convert, check, profile, finalists).

The toy runtime is numpy: its conversion saves the torch source's Linear weights as an ``.npz``,
its runner evaluates Linear-ReLU-...-Linear with numpy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import navbuild
from navbuild import formats
from navbuild.errors import RecipeError
from navbuild.formats.common import torch_factory
from navbuild.steps.base import Step, StepContext
from navbuild.steps.common import load_callable
from navbuild.runtime import TorchFactory

WEIGHTS = "weights.npz"


@dataclass(frozen=True)
class ToyParams:
    factory: TorchFactory


class NumpyWeightsFromTorch(Step):
    """Save the torch source's Linear layers (weight, bias), in order, as ``weights.npz``."""

    name: ClassVar[str] = "NumpyWeightsFromTorch"
    version: ClassVar[int] = 1
    Params: ClassVar[type] = ToyParams
    requires: ClassVar[tuple[str, ...]] = ("torch", "numpy")
    tools: ClassVar[tuple[str, ...]] = ("torch",)

    def run(self, params: ToyParams, ctx: StepContext) -> dict:
        import torch

        model = load_callable(params.factory.factory, "source.torch")(**params.factory.kwargs)
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        arrays = {}
        for i, layer in enumerate(linears):
            arrays[f"w{i}"] = layer.weight.detach().numpy()
            arrays[f"b{i}"] = layer.bias.detach().numpy()
        np.savez(ctx.out / WEIGHTS, **arrays)
        print(f"saved {len(linears)} linear layers", flush=True)
        return {"layers": len(linears)}


class NumpyMlp:
    """Linear layers with ReLU between them, in numpy."""

    def __init__(self, path: Path, input_names: list[str]) -> None:
        data = np.load(path)
        self.layers = [(data[f"w{i}"], data[f"b{i}"]) for i in range(len(data.files) // 2)]
        self.input_names = list(input_names)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = feeds[self.input_names[0]].astype(np.float32)
        for i, (w, b) in enumerate(self.layers):
            x = x @ w.T + b
            if i < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        return [x]


def make_numpy_runner(model_path: Path | None, factory: Any, input_names: Any, options: Any,
                      source: Path | None = None) -> NumpyMlp:
    if options.mode:
        raise ValueError(f"the numpy runner has no runtime mode '{options.mode}'")
    return NumpyMlp(Path(model_path) / WEIGHTS, list(input_names))


def _plan_weights(ctx: formats.PlanContext) -> formats.Planned:
    return formats.Planned("NumpyWeightsFromTorch", {"source": formats.SOURCE},
                           {"factory": torch_factory(ctx.recipe)})


TOY = formats.FormatFamily(
    name="toy",
    formats=("toy",),
    torch_source=True,
    variants=(formats.Variant("toy-numpy", "toy", "fp32", 100, "numpy", model="toy-numpy"),),
    runners=(formats.Runner("numpy", f"{__name__}:make_numpy_runner", ("numpy",)),),
    conversions=(formats.Conversion("toy-numpy", 100, {"NumpyWeightsFromTorch": f"{__name__}:NumpyWeightsFromTorch"},
                                    _plan_weights),),
)

# A user's family module registers itself on import. Here that happens only where NAVBUILD_FORMATS
# names this module (the build's child processes, which inherit it), so that other tests in the
# session never see the toy format; the fixture registers it in the test's own process.
if __name__ in os.environ.get(formats.ENV_VAR, "").split(","):
    formats.register(TOY)


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(formats.ENV_VAR, __name__)
    family = formats.register(TOY)
    yield family
    formats.unregister(TOY.name)


def test_the_registered_toy_joins_every_derived_table(project, toy):
    assert "toy" in formats.recipe_formats()
    assert formats.variant_names()[-1] == "toy-numpy"
    assert formats.runtime_requirements("numpy") == ("numpy",)
    assert formats.triton_serving("numpy") is None
    assert formats.steps()["NumpyWeightsFromTorch"] == f"{__name__}:NumpyWeightsFromTorch"
    assert formats.external_modules() == (__name__,)
    with pytest.raises(RecipeError, match=r"formats\[1\]: unknown value 'tyo' \(did you mean 'toy'\?\)"):
        navbuild.plan("tiny", ["formats=[torch,tyo]"])


def test_the_toy_is_gone_once_unregistered():
    assert "toy" not in formats.recipe_formats() and formats.variant("toy-numpy") is None


def test_a_toy_family_builds_end_to_end(project, toy):
    plan = navbuild.plan("tiny", ["formats=[torch,toy]"]).by_id()
    assert plan["toy-numpy"].status == "missing"

    result = navbuild.build("tiny", ["formats=[torch,toy]"])
    st = {o.id: o.status for o in result.outcomes.values()}
    assert {t: st[t] for t in ("toy-numpy", "correctness/toy-numpy", "profile/toy-numpy", "finalists")} == {
        t: "built" for t in ("toy-numpy", "correctness/toy-numpy", "profile/toy-numpy", "finalists")}
    assert result.exit_code == 0
    assert result.outcomes["toy-numpy"].result == {"layers": 2}
    row = result.summary["variants"]["toy-numpy"]
    assert row["verdict"] == "pass" and row["runner"] == "numpy"
    assert set(row["profile"]) == {"1", "4"}
    assert all(f["latency_ms"]["p50"] > 0 and f["throughput"] > 0 for f in row["profile"].values())
    print({t["id"]: round(t["seconds"], 1) for t in result.summary["targets"]})
    finalists = result.outcomes["finalists"].result["variants"]
    assert set(finalists) == {"torch", "toy-numpy"} and finalists["toy-numpy"]["latency_ms"] > 0
    assert result.summary["best"]["variant"] in ("torch", "toy-numpy")
    assert (project.root / "build" / "tiny" / "toy-numpy" / WEIGHTS).is_file()

    again = navbuild.build("tiny", ["formats=[torch,toy]"])
    assert {o.status for o in again.outcomes.values()} == {"cached"}
