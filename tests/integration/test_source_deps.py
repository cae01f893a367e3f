"""The source's identity is what building it read: a user package's other modules and a checkpoint
that the recipe never lists are discovered, and changing either makes every dependent stale."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from navbuild import api
from navbuild.report.events import CollectingReporter

LAYERS = textwrap.dedent('''
    import torch


    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(8, 8)

        def forward(self, x):
            return torch.relu(self.fc(x))
''')

MODELS = textwrap.dedent('''
    import os

    import torch

    from mypkg.layers import Block


    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Block()
            self.head = torch.nn.Linear(8, 4)

        def forward(self, x):
            return self.head(self.block(x))


    def make(checkpoint: str = "weights/ckpt.pt"):
        torch.manual_seed(0)
        net = Net()
        if os.path.exists(checkpoint):
            net.load_state_dict(torch.load(checkpoint, weights_only=True))
        return net
''')

RECIPE = textwrap.dedent('''
    source:
      torch: mypkg.models:make
    inputs:
      - {name: x, dtype: float32, shape: [batch, 8], range: [-1.0, 1.0]}
    outputs: [y]
    samples: {count: 2, seed: 0}
    formats: [torch, onnx]
    runtime: {intra_op_threads: 1}
    profile:
      batch_sizes: [2]
      warmup_iters: 1
      window_s: 0.01
      min_window_iters: 2
      stable_windows: 2
      stability: 0.9
      max_windows: 3
      pin_cores: false
      finalists: 0
      max_background_load: 1000   # what is cached here must not depend on the machine's load
''')


def _save_weights(path: Path, seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    state = {"block.fc.weight": torch.randn(8, 8), "block.fc.bias": torch.randn(8),
             "head.weight": torch.randn(4, 8), "head.bias": torch.randn(4)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    (root / "mypkg").mkdir(parents=True)
    (root / "mypkg" / "__init__.py").write_text("")
    (root / "mypkg" / "layers.py").write_text(LAYERS)
    (root / "mypkg" / "models.py").write_text(MODELS)
    (root / "recipes").mkdir()
    (root / "recipes" / "deps.yaml").write_text(RECIPE)
    _save_weights(root / "weights" / "ckpt.pt", seed=1)
    monkeypatch.setenv("NAVBUILD_CACHE_DIR", str(root / "cache"))
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    return root


def _stale(plan) -> dict[str, str]:
    return {t.id: t.reason for t in plan.targets if t.status != "cached"}


def test_first_plan_says_dependencies_are_not_discovered_yet(user_package: Path) -> None:
    plan = api.plan("deps")
    assert any("not discovered yet" in n for n in plan.notes), plan.notes


def test_a_changed_module_of_the_user_package_makes_the_source_stale(user_package: Path) -> None:
    reporter = CollectingReporter()
    first = api.build("deps", reporter=reporter)
    assert first.exit_code == 0
    notes = [m for kind, m in reporter.events if kind == "note"]
    assert any("discovering what defines the model (first build" in n for n in notes), notes
    assert _stale(api.plan("deps")) == {}  # a no-op: everything cached, nothing rediscovered

    layers = user_package / "mypkg" / "layers.py"
    layers.write_text(LAYERS.replace("torch.relu", "torch.tanh"))
    stale = _stale(api.plan("deps"))
    assert stale["onnx"] == "source dependency mypkg/layers.py changed"
    assert stale["reference"] == "source dependency mypkg/layers.py changed"

    again = api.build("deps")
    statuses = {t["id"]: t["status"] for t in again.summary["targets"]}
    assert statuses["onnx"] == "built" and statuses["reference"] == "built"
    assert again.exit_code == 0
    assert _stale(api.plan("deps")) == {}


def test_a_checkpoint_not_listed_in_watch_is_discovered(user_package: Path) -> None:
    assert api.build("deps").exit_code == 0
    _save_weights(user_package / "weights" / "ckpt.pt", seed=2)
    stale = _stale(api.plan("deps"))
    assert stale["onnx"] == "weights/ckpt.pt changed", stale
    result = api.build("deps")
    assert {t["id"]: t["status"] for t in result.summary["targets"]}["onnx"] == "built"


def test_discovered_dependencies_are_recorded_in_the_store(user_package: Path) -> None:
    import json

    assert api.build("deps").exit_code == 0
    (record,) = (user_package / "cache" / "sources").glob("*.json")
    data = json.loads(record.read_text())
    files = {Path(f).relative_to(user_package).as_posix() for f in data["files"] if f.startswith(str(user_package))}
    assert {"mypkg/layers.py", "mypkg/models.py", "mypkg/__init__.py", "weights/ckpt.pt"} <= files
    assert "torch" in data["distributions"]
