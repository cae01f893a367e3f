"""A publisher killed with SIGKILL at random moments never leaves a partial cache entry."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import navbuild
from navbuild.cache.store import Store

REPO = Path(navbuild.__file__).resolve().parent.parent
FILES = ("model.onnx", "weights/part0.bin", "weights/part1.bin")
SIZE = 3 << 20  # 3 MiB each: writing, hashing and fsyncing takes a noticeable while

# Content is derived from (key, file name) so the test can tell a whole entry from a
# partial one without trusting anything the publisher wrote.
PUBLISHER = f"""
import hashlib, itertools, pathlib, sys
from navbuild.cache.store import Store
from navbuild.cache.keys import cache_key

def content(key, name):
    block = hashlib.sha256((key + name).encode()).digest()
    return block * ({SIZE} // len(block))

store = Store(pathlib.Path(sys.argv[1]))
for i in itertools.count(int(sys.argv[2])):
    key = cache_key({{"i": i}})
    staging = store.staging(key)
    for name in {FILES!r}:
        p = staging / "out" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content(key, name))
    (staging / "log.txt").write_text("log")
    store.publish(key, staging, payload={{"i": i}}, result={{}}, info={{"target_id": "t"}})
"""


def expected(key: str, name: str) -> bytes:
    block = hashlib.sha256((key + name).encode()).digest()
    return block * (SIZE // len(block))


def test_sigkill_never_leaves_partial_entries(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    rng = random.Random(1234)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for run in range(10):
        child = subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, str(root), str(run * 1000)], cwd=REPO, env=env
        )
        # Let the interpreter start (~0.1 s), then kill somewhere in the write/publish loop.
        time.sleep(0.15 + rng.uniform(0.0, 0.3))
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL, "publisher exited on its own (it crashed?)"

    store = Store(root)
    seen = 0
    for shard in (root / "objects").iterdir() if (root / "objects").exists() else []:
        for entry_dir in shard.iterdir():
            entry = store.lookup(entry_dir.name)
            assert entry is not None, store.warnings  # a committed dir is always complete
            for name in FILES:
                assert (entry.out / name).read_bytes() == expected(entry.key, name)
            seen += 1
    assert store.warnings == []
    # Leftover staging dirs are allowed (gc removes them) but are never trusted.
    assert seen > 0, "no entry was ever published: make the delays longer"
