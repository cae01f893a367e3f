"""Plans for inputs navbuild takes instead of failing: TorchScript sources, fixed-dimension and
IR < 4 ONNX files (tiny real files; the planner reads only their headers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from navbuild.planning.planner import expand
from navbuild.planning.status import plan_statuses
from navbuild.recipe.schema import InputConfig, Recipe, SourceConfig


class _Memo:
    def digest(self, path: Path) -> str:
        return "d-" + Path(path).name


class _EmptyStore:
    memo = _Memo()

    def peek(self, key):
        return None


def _recipe(source: SourceConfig, **changes) -> Recipe:
    r = Recipe(name="t", source=source, inputs=[InputConfig(name="x", shape=["batch", 8])], outputs=["y"])
    for k, v in changes.items():
        setattr(r, k, v)
    return r


def _statuses(recipe: Recipe, cwd: Path) -> dict[str, str]:
    return {t.id: t.label for t in plan_statuses(expand(recipe, cwd), _EmptyStore(), None).targets}


# TorchScript sources ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["torch-compile", "torch-compile-bf16", "torch-int8-dynamic"])
def test_a_torchscript_source_makes_runtime_modes_it_cannot_run_unavailable_saying_why(tmp_path: Path,
                                                                                          name: str) -> None:
    (tmp_path / "m.pt").write_bytes(b"a TorchScript archive")
    recipe = _recipe(SourceConfig(torchscript="m.pt"), variants=["torch", name])
    plan = _statuses(recipe, tmp_path)
    assert plan["profile/torch"] == "missing"
    why = {"torch-compile": "torch.compile cannot compile a TorchScript module",
           "torch-compile-bf16": "torch.compile cannot compile a TorchScript module",
           "torch-int8-dynamic": "dynamic int8 quantizes nn.Linear modules, which a TorchScript module does not expose"}
    for tid in (f"correctness/{name}", f"profile/{name}"):
        assert plan[tid] == f"unavailable: {why[name]} (the source is m.pt)"


def test_a_torchscript_source_cannot_be_torch_exported_and_its_checks_say_so(tmp_path: Path) -> None:
    (tmp_path / "m.pt").write_bytes(b"a TorchScript archive")
    plan = _statuses(_recipe(SourceConfig(torchscript="m.pt"), formats=["torch-export", "onnx"]), tmp_path)
    for tid in ("torch-export", "correctness/torch-export", "profile/torch-export"):
        assert plan[tid] == "unavailable: torch.export cannot export a TorchScript module (the source is m.pt)"
    assert plan["onnx"] == "missing" and plan["correctness/onnx"] == "missing"


def test_an_exported_program_source_only_loses_dynamic_int8(tmp_path: Path) -> None:
    (tmp_path / "m.pt2").write_bytes(b"an exported program")
    plan = _statuses(_recipe(SourceConfig(torchscript="m.pt2"), variants=["torch-compile", "torch-int8-dynamic"]),
                     tmp_path)
    assert plan["profile/torch-compile"] == "missing"
    assert plan["profile/torch-int8-dynamic"].startswith(
        "unavailable: dynamic int8 quantizes nn.Linear modules, which an exported program does not have")


def test_a_torch_factory_source_keeps_every_variant(tmp_path: Path) -> None:
    recipe = _recipe(SourceConfig(torch="navbuild.examples.models:mlp"), variants=["torch-compile", "torch-export"])
    assert "unavailable" not in " ".join(_statuses(recipe, tmp_path).values())
