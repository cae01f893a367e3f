"""Tests of TorchScriptFromTorch and ExportedProgramFromTorch with their runners: dynamic batch, failures that say why, stable bytes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from navbuild.model_io import TensorSpec
from navbuild.runners import make_runner
from navbuild.samples import generate_samples
from navbuild.steps.base import StepContext, params_from_dict, params_to_dict
from navbuild.runtime import RuntimeOptions, TorchFactory
from navbuild.steps.aoti_from_torch import AotiFromTorch
from navbuild.steps.exported_program_from_torch import ExportedProgramFromTorch
from navbuild.steps.torchscript_from_torch import TorchScriptFromTorch
from tests.models import PYTREE_OUTPUT_MODULE

ROOT = Path(__file__).resolve().parents[3]
X = (TensorSpec("x", "float32", ("batch", 8), low=-1.0, high=1.0),)
TWO = (TensorSpec("x", "float32", ("batch", "seq", 8)),
       TensorSpec("mask", "int64", ("batch", "seq"), low=0, high=2))


def scriptable_rows(in_features: int = 8, out_features: int = 4) -> Any:
    """batch_one_only with a typed forward: ``torch.jit.script`` compiles it (tests/models.py's use ``Any``)."""
    import torch
    from torch import nn

    class ScriptableRows(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(4)
            self.lin = nn.Linear(in_features, out_features)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            rows = int(x.shape[0])  # a constant to the tracer, a runtime value to the scripter
            return torch.nn.functional.gelu(self.lin(x))[:rows]

    return ScriptableRows().eval()


def _factory(name: str) -> TorchFactory:
    # this module's own factories are found under the name pytest imported it as
    module = __name__ if name == "scriptable_rows" else "tests.models"
    return TorchFactory(f"{module}:{name}", {})


def _torchscript(tmp_path: Path, model: str, method: str = "trace", specs: tuple = X,
                 axes: dict | None = None, freeze: bool = True) -> tuple[Path, dict]:
    out = tmp_path / f"ts-{model}-{method}"
    out.mkdir()
    params = TorchScriptFromTorch.Params(factory=_factory(model), inputs=specs, axes=axes or {}, seed=0,
                                         method=method, freeze=freeze)
    return out, TorchScriptFromTorch().run(params, StepContext(inputs={}, out=out))


def _exported(tmp_path: Path, model: str, specs: tuple = X, axes: dict | None = None) -> tuple[Path, dict]:
    out = tmp_path / f"ep-{model}"
    out.mkdir()
    params = ExportedProgramFromTorch.Params(factory=_factory(model), inputs=specs, axes=axes or {}, seed=0)
    return out, ExportedProgramFromTorch().run(params, StepContext(inputs={}, out=out))


def _aoti(tmp_path: Path, model: str, specs: tuple = X, factory: TorchFactory | None = None,
          packages: tuple[str, ...] = ()) -> tuple[Path, dict]:
    out = tmp_path / f"aoti-{model}"
    out.mkdir()
    params = AotiFromTorch.Params(factory=factory or _factory(model), inputs=specs, axes={}, seed=0, device="cpu",
                                  packages=packages)
    return out, AotiFromTorch().run(params, StepContext(inputs={}, out=out))


def _check_runner(fmt: str, model_dir: Path, model: str, specs: tuple = X, axes: dict | None = None) -> Any:
    """The variant's runner matches eager torch at batch 1 and 4 (other sizes than the example's 2)."""
    names = [s.name for s in specs]
    # model.onnx: what correctness and profile pass for every format (model_file's default name)
    runner = make_runner(fmt, model_dir / "model.onnx", None, names, RuntimeOptions(intra_op_threads=1))
    eager = make_runner("torch", None, _factory(model), names, RuntimeOptions(intra_op_threads=1))
    for batch in (1, 4):
        feeds = generate_samples(specs, batch, seed=7, axes=axes or {})
        got, want = runner.run(feeds), eager.run(feeds)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, atol=1e-5)
    return runner


@pytest.mark.parametrize("freeze", [True, False])
def test_trace_reproduces_eager_at_other_batches(tmp_path: Path, freeze: bool) -> None:
    out, result = _torchscript(tmp_path, "tiny_mlp", freeze=freeze)
    path = out / "model.pt"
    assert result == {"method": "trace", "freeze": freeze, "size_bytes": path.stat().st_size, "evidence": []}
    # no debug records: they hold source paths and line numbers
    assert not [n for n in zipfile.ZipFile(path).namelist() if n.endswith(".debug_pkl")]
    _check_runner("torchscript", out, "tiny_mlp")


def test_trace_binds_inputs_by_name_and_keeps_seq_dynamic(tmp_path: Path) -> None:
    out, _ = _torchscript(tmp_path, "two_inputs", specs=TWO, axes={"seq": 5})
    _check_runner("torchscript", out, "two_inputs", TWO, axes={"seq": 3})


def test_trace_keeps_dict_output_names(tmp_path: Path) -> None:
    out, _ = _torchscript(tmp_path, "dict_outputs")
    assert _check_runner("torchscript", out, "dict_outputs").output_names == ["logits", "norm"]


def test_script_keeps_batch_dependent_logic(tmp_path: Path) -> None:
    out, result = _torchscript(tmp_path, "scriptable_rows", method="script")
    assert result["method"] == "script" and result["freeze"] is True
    _check_runner("torchscript", out, "scriptable_rows")


@pytest.mark.parametrize("model", ["batch_one_only", "scriptable_rows"])
def test_trace_that_bakes_the_batch_fails_here(tmp_path: Path, model: str) -> None:
    with pytest.raises(RuntimeError, match=r"TorchScript \(trace\) does not reproduce the model at batch 3: "
                                           r"output 0 has shape \(2, 4\) instead of \(3, 4\)"):
        _torchscript(tmp_path, model)


def test_script_failure_says_what_and_what_to_do(tmp_path: Path) -> None:
    # tests/models.py annotates forward's arguments as Any, which TorchScript cannot compile
    with pytest.raises(RuntimeError, match=r"torch.jit.script cannot compile this model \(.*'Any'.*use method 'trace'"):
        _torchscript(tmp_path, "batch_one_only", method="script")


def test_unknown_method(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="method 'jit' is not one of"):
        _torchscript(tmp_path, "tiny_mlp", method="jit")


def test_exported_program_reproduces_eager_with_dynamic_batch(tmp_path: Path) -> None:
    out, result = _exported(tmp_path, "tiny_mlp")
    assert result["size_bytes"] == (out / "model.pt2").stat().st_size and result["nodes"] > 3
    assert result["dims"] == "named"
    _check_runner("torch-export", out, "tiny_mlp")


def test_exported_program_shares_axes_by_name(tmp_path: Path) -> None:
    out, _ = _exported(tmp_path, "two_inputs", TWO, axes={"seq": 5})
    _check_runner("torch-export", out, "two_inputs", TWO, axes={"seq": 3})


def test_exported_program_refuses_a_static_batch(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"torch.export made axes static: x.0 \(batch\) = 2"):
        _exported(tmp_path, "batch_one_only")


def test_aoti_refuses_a_static_batch_before_compiling(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"torch.export made axes static: x.0 \(batch\) = 2"):
        _aoti(tmp_path, "batch_one_only")
    assert not (tmp_path / "aoti-batch_one_only" / "model.pt2").exists()


@pytest.mark.parametrize("cls, extra", [(TorchScriptFromTorch, {"method": "trace", "freeze": True}),
                                        (ExportedProgramFromTorch, {}), (AotiFromTorch, {"device": "cuda"})])
def test_params_round_trip_through_json(cls: Any, extra: dict) -> None:
    params = cls.Params(factory=TorchFactory("tests.models:tiny_mlp", {"hidden": 4}), inputs=TWO,
                        axes={"seq": 4}, seed=3, **extra)
    data = json.loads(json.dumps(params_to_dict(params), sort_keys=True))
    assert params_from_dict(cls.Params, data) == params


_SAVE_BOTH = """
import hashlib, sys
from pathlib import Path
from navbuild.model_io import TensorSpec
from navbuild.steps.base import StepContext
from navbuild.runtime import TorchFactory
from navbuild.steps.aoti_from_torch import AotiFromTorch
from navbuild.steps.exported_program_from_torch import ExportedProgramFromTorch
from navbuild.steps.torchscript_from_torch import TorchScriptFromTorch
out = Path(sys.argv[1])
x = (TensorSpec("x", "float32", ("batch", 8), low=-1.0, high=1.0),)
f = TorchFactory("tests.models:tiny_mlp", {})
(out / "ts").mkdir(parents=True)
(out / "ep").mkdir()
TorchScriptFromTorch().run(TorchScriptFromTorch.Params(f, x, {}, 0, "trace", True), StepContext({}, out / "ts"))
ExportedProgramFromTorch().run(ExportedProgramFromTorch.Params(f, x, {}, 0), StepContext({}, out / "ep"))
"""


def test_rebuilds_are_byte_identical(tmp_path: Path) -> None:
    """Each step runs in a fresh interpreter (as under navbuild), so two runs must give the same bytes."""
    for run in ("a", "b"):
        subprocess.run([sys.executable, "-c", _SAVE_BOTH, str(tmp_path / run)], cwd=ROOT, check=True,
                       capture_output=True)
    for name in ("ts/model.pt", "ep/model.pt2"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


# Models whose forward does not take the recipe's names, and programs that load only where
# the model's package is imported ------------------------------------------------------------


def test_a_sequential_is_traced_and_exported_with_its_input_positionally(tmp_path: Path) -> None:
    ts, _ = _torchscript(tmp_path, "sequential")
    _check_runner("torchscript", ts, "sequential")
    ep, result = _exported(tmp_path, "sequential")
    assert result["dims"] == "named" and result["load_imports"] == []
    _check_runner("torch-export", ep, "sequential")


def _user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, register_on_import: bool) -> None:
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / f"{name}.py").write_text(PYTREE_OUTPUT_MODULE + ("_register()\n" if register_on_import else ""))
    monkeypatch.syspath_prepend(str(folder))


def _export_user_model(tmp_path: Path, factory: str) -> tuple[Path, dict]:
    out = tmp_path / "ep"
    out.mkdir()
    params = ExportedProgramFromTorch.Params(factory=TorchFactory(factory, {}), inputs=X, axes={}, seed=0,
                                             packages=("numpy",))
    return out, ExportedProgramFromTorch().run(params, StepContext(inputs={}, out=out))


def test_a_program_that_loads_only_where_its_package_is_imported_names_that_import(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from navbuild.steps.exported_program_from_torch import _load_in_fresh_process

    _user_module(tmp_path, monkeypatch, "pytree_user_a", register_on_import=True)
    out, result = _export_user_model(tmp_path, "pytree_user_a:registered")
    # a bare interpreter cannot load it: the output class is unknown to its pytree
    assert re.search(r"Deserializing pytree_user_a\.Out in pytree is not registered",
                     _load_in_fresh_process(out / "model.pt2", []))
    assert result["load_imports"] == ["numpy", "pytree_user_a"]
    assert json.loads((out / "imports.json").read_text()) == ["numpy", "pytree_user_a"]
    # the runner imports them before loading, in a process of its own (as a check's child does)
    code = ("import sys, numpy as np; from navbuild.runners import make_runner; "
            "from navbuild.runtime import RuntimeOptions; "
            "r = make_runner('torch-export', sys.argv[1], None, ['x'], RuntimeOptions(intra_op_threads=1)); "
            "print(r.run({'x': np.ones((3, 8), np.float32)})[0].shape)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "user"), str(ROOT)])}
    proc = subprocess.run([sys.executable, "-c", code, str(out / "model.pt2")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("(3, 4)")


def test_a_program_that_no_import_makes_loadable_fails_naming_the_loaders_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _user_module(tmp_path, monkeypatch, "pytree_user_b", register_on_import=False)
    with pytest.raises(RuntimeError, match=r"model.pt2 does not load in a fresh process, even after importing "
                                           r"numpy, pytree_user_b: NotImplementedError: Deserializing "
                                           r"pytree_user_b\.Out in pytree is not registered"):
        _export_user_model(tmp_path, "pytree_user_b:unregistered")


def test_an_aoti_package_that_loads_only_where_its_package_is_imported_names_that_import(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from navbuild.runners.aoti_runner import AOTI_LOAD
    from navbuild.steps.exported_program_from_torch import _load_in_fresh_process

    _user_module(tmp_path, monkeypatch, "pytree_user_c", register_on_import=True)
    out, result = _aoti(tmp_path, "user", factory=TorchFactory("pytree_user_c:registered", {}), packages=("numpy",))
    assert re.search(r"Deserializing pytree_user_c\.Out in pytree is not registered",
                     _load_in_fresh_process(out / "model.pt2", [], AOTI_LOAD))
    assert result["load_imports"] == ["numpy", "pytree_user_c"]
    assert json.loads((out / "imports.json").read_text()) == ["numpy", "pytree_user_c"]


def test_an_aoti_package_for_cuda_without_a_gpu_says_where_to_build_it(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU (tests/unit/runners/test_gpu_runners.py builds one)")
    params = AotiFromTorch.Params(factory=_factory("tiny_mlp"), inputs=X, axes={}, seed=0, device="cuda")
    with pytest.raises(RuntimeError, match="compiled on a CUDA GPU, and torch sees none .*build it on the GPU machine"):
        AotiFromTorch().run(params, StepContext(inputs={}, out=tmp_path))
    assert not any(tmp_path.iterdir())
