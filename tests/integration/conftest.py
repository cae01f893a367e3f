"""A tiny user project in a temp folder: a model module, a recipe, and a private cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

MODELS = textwrap.dedent('''
    """Tiny models of a user's project (imported by navbuild's child processes)."""
    import torch


    class Tiny(torch.nn.Module):
        def __init__(self, width: int = 16, seed: int = 0):
            super().__init__()
            torch.manual_seed(seed)
            self.fc1 = torch.nn.Linear(8, width)
            self.fc2 = torch.nn.Linear(width, 4)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x)))


    class NotExportable(Tiny):
        def forward(self, x):
            # both ONNX exporters: the TorchScript one, and torch.export under the dynamo one
            if torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting():
                raise RuntimeError("this model cannot be exported (deliberately)")
            return super().forward(x)


    class FirstRowsOnly(Tiny):
        def forward(self, x):
            rows = int(x.shape[0])  # a trace-time constant: the export keeps the example's 2 rows
            return super().forward(x)[:rows]


    class TwoOutputs(Tiny):
        def forward(self, x):
            y = super().forward(x)
            return y, y * 2


    def tiny(width: int = 16, seed: int = 0):
        return Tiny(width, seed)


    def not_exportable(**_):
        return NotExportable()


    def first_rows_only(**_):
        return FirstRowsOnly()


    def two_outputs(**_):
        return TwoOutputs()
''')

RECIPE = textwrap.dedent('''
    description: a tiny MLP for tests
    source:
      torch: tinymodels:tiny
      kwargs: {width: 16, seed: 0}
    inputs:
      - {name: x, dtype: float32, shape: [batch, 8], range: [-1.0, 1.0]}
    outputs: [y]
    samples: {count: 4, seed: 0}
    formats: [torch, onnx, onnx-opt]
    runtime: {intra_op_threads: 1}
    profile:
      batch_sizes: [1, 4]
      warmup_iters: 1
      window_s: 0.01
      min_window_iters: 2
      stable_windows: 2
      stability: 0.5
      max_windows: 4
      pin_cores: false
      finalist_rounds: 3
      finalist_iters: 2
      # what else the machine runs must not decide the caching tests: only the tests of
      # measurement conditions (test_measurements.py) set the threshold they test
      max_background_load: 1000.0
''')


class Project:
    """A user's working directory with `recipes/tiny.yaml`; runs navbuild for real."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache = root / "cache"
        (root / "recipes").mkdir(parents=True)
        (root / "tinymodels.py").write_text(MODELS)
        (root / "recipes" / "tiny.yaml").write_text(RECIPE)

    def env(self) -> dict:
        env = dict(os.environ)
        env["NAVBUILD_CACHE_DIR"] = str(self.cache)
        env["PYTHONPATH"] = str(self.root)
        return env

    def run(self, *args: str, timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "navbuild", *args], cwd=self.root, env=self.env(),
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"navbuild {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "navbuild", *args], cwd=self.root, env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                stdin=subprocess.DEVNULL, start_new_session=True)

    def ctrl_c_when(self, ready, *args: str, settle_s: float = 0.3, timeout: float = 120,
                    group: bool = False) -> tuple[int, str]:
        """Start ``navbuild *args``, wait until ``ready()``, then SIGINT the process only (or, with
        ``group``, its process group, as a terminal's Ctrl-C does); return its exit code and
        output. Always reaps the process."""
        import signal

        def interrupt(proc: subprocess.Popen) -> None:
            (os.killpg if group else os.kill)(proc.pid, signal.SIGINT)

        return self.act_when(ready, interrupt, *args, settle_s=settle_s, timeout=timeout)

    def act_when(self, ready, act, *args: str, settle_s: float = 0.0, timeout: float = 120,
                 finish_s: float = 120) -> tuple[int, str]:
        """Start ``navbuild *args``, wait until ``ready()``, then ``act(process)``; return its exit
        code and output once it exits (within ``finish_s``). Always reaps the process."""
        import signal
        import time

        proc = self.popen(*args)
        try:
            deadline = time.monotonic() + timeout
            while not ready():
                assert proc.poll() is None, proc.communicate()[0]
                assert time.monotonic() < deadline, "the awaited moment never came"
                time.sleep(0.05)
            time.sleep(settle_s)
            act(proc)
            out, _ = proc.communicate(timeout=finish_s)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode, out

    def summary(self, build_dir: str = "build/tiny") -> dict:
        return json.loads((self.root / build_dir / "summary.json").read_text())

    def statuses(self, build_dir: str = "build/tiny") -> dict[str, str]:
        return {t["id"]: t["status"] for t in self.summary(build_dir)["targets"]}

    def objects(self) -> list[Path]:
        root = self.cache / "objects"
        return sorted(p for p in root.glob("*/*") if p.is_dir()) if root.exists() else []


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    proj = Project(tmp_path / "proj")
    monkeypatch.setenv("NAVBUILD_CACHE_DIR", str(proj.cache))
    monkeypatch.chdir(proj.root)
    monkeypatch.syspath_prepend(str(proj.root))
    return proj
