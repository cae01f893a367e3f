"""Two processes building the same key at once: the per-key lock makes exactly one build."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import navbuild
from navbuild.cache.keys import cache_key
from navbuild.cache.store import Store

REPO = Path(navbuild.__file__).resolve().parent.parent
KEY = cache_key({"concurrent": 1})

BUILDER = """
import os, pathlib, sys, time
from navbuild.cache.store import Store

root, key, counter, go = sys.argv[1:5]
while not os.path.exists(go):  # start both builders at the same moment
    time.sleep(0.005)
store = Store(pathlib.Path(root))
with store.lock(key):
    entry = store.lookup(key)
    if entry is None:
        with open(counter, "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(0.5)
        staging = store.staging(key)
        (staging / "out" / "model.onnx").write_bytes(b"m" * 100_000)
        entry = store.publish(key, staging, payload={}, result={"by": os.getpid()}, info={})
print(entry.digest)
"""


def test_two_builders_build_once(tmp_path: Path) -> None:
    root, counter, go = tmp_path / "cache", tmp_path / "counter", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", BUILDER, str(root), KEY, str(counter), str(go)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]
    time.sleep(0.3)  # both interpreters up and polling
    go.write_text("go")
    outputs = [c.communicate(timeout=30)[0].strip() for c in children]
    assert [c.returncode for c in children] == [0, 0]

    assert len(counter.read_text().splitlines()) == 1
    store = Store(root)
    entry = store.lookup(KEY)
    assert entry is not None and store.warnings == []
    assert (entry.out / "model.onnx").read_bytes() == b"m" * 100_000
    assert outputs == [entry.digest, entry.digest]
