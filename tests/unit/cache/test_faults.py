"""The store on misbehaving disks: full (a real tmpfs), read-only (a real ro bind mount), an entry
replaced by a file, a byte flipped behind the memo's back, and a lock held by another process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import navbuild
from navbuild.cache.fs import disk_full, mount_point, ran_out_of_space, writing
from navbuild.cache.gc import collect
from navbuild.cache.keys import cache_key
from navbuild.cache.records import Records
from navbuild.cache.store import Entry, Store
from navbuild.errors import CacheError, DiskFull
from tests.mounts import fill, read_only_view, tmpfs

REPO = Path(navbuild.__file__).resolve().parent.parent
KEY = cache_key({"faults": 1})


def build(store: Store, key: str = KEY, data: bytes = b"m" * 5000, target: str = "onnx") -> Entry:
    staging = store.staging(key)
    (staging / "out" / "model.onnx").write_bytes(data)
    return store.publish(key, staging, payload={"step": "S"}, result={}, info={"target_id": target})


# -- a full disk ---------------------------------------------------------------------------


def test_full_disk_publish_says_no_space_and_keeps_the_cache(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "256k") as disk:
        store = Store(disk / "cache")
        first = build(store, cache_key({"first": 1}))
        staging = store.staging(KEY)
        (staging / "out" / "model.onnx").write_bytes(b"x" * 50_000)
        fill(disk, 0)
        with pytest.raises(DiskFull, match=rf"no space left on {disk}, 0.00 MB free: writing cache entry "
                                           rf"{KEY[:12]} \(target onnx\) to {staging}/meta.json failed"):
            store.publish(KEY, staging, payload={}, result={}, info={"target_id": "onnx"})
        store.discard(staging)  # what the executor does with a failed build
        # what was cached before is intact and still verifies byte for byte
        assert store.verify(first.key) is None
        assert store.lookup(first.key) is not None and store.warnings == []
        assert store.lookup(KEY) is None and list(store.tmp_dir.iterdir()) == []
        (disk / "filler").unlink()
        assert build(store).key == KEY  # with space again, the same key publishes


def test_full_disk_staging_says_no_space(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "64k", inodes=8) as disk:  # a folder takes an inode: ENOSPC
        store = Store(disk / "cache")
        with pytest.raises(DiskFull, match=rf"no space left on {disk}.*writing a staging folder to "
                                           rf"{disk}/cache/tmp/"):
            for i in range(8):
                store.staging(cache_key({"n": i}))


def test_writing_names_the_file_system_and_what(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "64k") as disk:
        fill(disk, 0)
        with pytest.raises(DiskFull, match=rf"no space left on {disk}, 0.00 MB free: writing the job of x to "):
            with writing(disk / "job.json", "the job of x"):
                (disk / "job.json").write_bytes(b"j" * 10_000)
        assert ran_out_of_space(disk)  # an opaque step error on a full disk is taken for what it is
    assert not ran_out_of_space(tmp_path)
    assert ran_out_of_space(tmp_path, "RuntimeError: basic_ios::clear ... [Errno 28] No space left on device")


def test_writing_lets_other_errors_through(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        with writing(tmp_path, "x"):
            (tmp_path / "no" / "such" / "dir.json").write_text("")


def test_disk_full_message_names_the_mount_point(tmp_path: Path) -> None:
    assert mount_point(tmp_path / "not" / "yet") == mount_point(tmp_path)
    err = disk_full(tmp_path / "a.json", "the build record")
    assert err.exit_code == 1 and "writing the build record to" in str(err)


# -- a read-only cache ---------------------------------------------------------------------


def test_read_only_cache_serves_what_it_has_and_reports_what_it_cannot_write(tmp_path: Path) -> None:
    writable = Store(tmp_path / "cache")
    build(writable)
    with read_only_view(tmp_path / "cache", tmp_path / "ro") as ro:
        store = Store(ro)
        assert store.unwritable_reason() == f"the cache {ro} is on a read-only file system ({ro})"
        entry = store.lookup(KEY)  # served: lookup writes nothing it needs
        assert entry is not None and (entry.out / "model.onnx").read_bytes() == b"m" * 5000
        store.memo.digest(entry.out / "model.onnx", trust=False)
        store.memo.dirty = True
        why = store.save_memo()
        assert why is not None and "Read-only file system" in why
        assert not list(ro.glob(".digest-memo.json.tmp-*"))
        with pytest.raises(CacheError, match=r"not usable: cannot create .*/locks \(Read-only file system\)"):
            with store.lock(cache_key({"new": 1})):
                pass
    assert Store(tmp_path / "cache").unwritable_reason() is None


# -- an entry (or its shard) replaced by a file --------------------------------------------


@pytest.mark.parametrize("where", ["entry", "shard"])
def test_file_in_place_of_an_entry_is_set_aside_and_rebuilt(tmp_path: Path, where: str) -> None:
    store = Store(tmp_path)
    entry = build(store)
    blocker = entry.path if where == "entry" else entry.path.parent
    import shutil

    shutil.rmtree(blocker)
    blocker.write_text("not a folder")
    assert store.lookup(KEY) is None
    assert any(f"{blocker} is a file, not a folder); it was set aside" in w for w in store.warnings)
    assert not blocker.exists()
    rebuilt = build(store)  # the next build publishes where the file stood
    assert Store(tmp_path).lookup(KEY) is not None and rebuilt.digest == entry.digest


def test_publish_sets_aside_a_file_that_appeared_meanwhile(tmp_path: Path) -> None:
    store = Store(tmp_path)
    staging = store.staging(KEY)
    (staging / "out" / "model.onnx").write_bytes(b"m")
    store.entry_dir(KEY).parent.mkdir(parents=True)
    store.entry_dir(KEY).write_text("junk")
    entry = store.publish(KEY, staging, payload={}, result={}, info={})
    assert entry.path.is_dir() and store.lookup(KEY) is not None


# -- a byte flipped with the mtime restored -------------------------------------------------


def flip_keeping_stat(path: Path) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    with open(path, "r+b") as f:  # in place: same inode, same size
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_ino == st.st_ino and path.stat().st_mtime_ns == st.st_mtime_ns


def test_memo_serves_a_stat_preserving_flip_and_verify_catches_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    entry = build(store)
    model = entry.out / "model.onnx"
    old = os.stat(model).st_mtime_ns
    os.utime(model, ns=(old - 10**10, old - 10**10))  # older than the racy window: memoized for good
    assert store.lookup(KEY) is not None
    store.save_memo()
    flip_keeping_stat(model)

    fresh = Store(tmp_path / "cache")
    assert fresh.lookup(KEY) is not None  # what the memo trusts (inode, size, mtime) did not change
    assert "sha256" in (fresh.verify(KEY) or "")

    report = collect(fresh, Records(tmp_path / "cache" / "records"), keep_unreferenced=True, verify=True)
    assert report.verified == 1
    assert [(k, r.split(":")[0]) for k, _s, r in report.removed] == [(KEY, "corrupt (out/model.onnx")]
    assert Store(tmp_path / "cache").lookup(KEY) is None


def test_verify_rehashes_remembered_input_files(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    source = tmp_path / "model.py"
    source.write_text("x = 1\n" * 100)
    t = time.time() - 100
    os.utime(source, (t, t))
    before = store.memo.digest(source)
    store.save_memo()
    flip_keeping_stat(source)
    assert Store(tmp_path / "cache").memo.digest(source) == before  # served from the memo

    report = collect(Store(tmp_path / "cache"), Records(tmp_path / "cache" / "records"), verify=True)
    assert report.memo_wrong == [str(source.resolve())]
    assert Store(tmp_path / "cache").memo.digest(source) != before  # the next build sees the change


def test_verify_dry_run_removes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    entry = build(store)
    (entry.out / "model.onnx").write_bytes(b"M" * 5000)
    report = collect(store, Records(tmp_path / "records"), keep_unreferenced=True, verify=True, dry_run=True)
    assert len(report.removed) == 1 and report.removed[0][2].startswith("corrupt (out/model.onnx: sha256 ")
    assert entry.path.is_dir()


# -- a lock held by another process ----------------------------------------------------------

HOLDER = """
import pathlib, sys, time
from navbuild.cache.store import Store

root, key, release = sys.argv[1:4]
with Store(pathlib.Path(root)).lock(key, what="onnx"):
    print("held", flush=True)
    while not pathlib.Path(release).exists():
        time.sleep(0.02)
"""


def test_waiting_on_a_lock_says_which_process_holds_it(tmp_path: Path) -> None:
    release = tmp_path / "release"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "cache"), KEY, str(release)],
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        store = Store(tmp_path / "cache")
        seen: list[dict] = []

        def on_wait(info: dict) -> None:
            seen.append(info)
            release.write_text("")  # let it go once we have said whom we wait for

        with store.lock(KEY, what="onnx", on_wait=on_wait):
            mine = json.loads((store.locks_dir / f"{KEY}.lock").read_text())
        assert len(seen) == 1
        info = seen[0]
        assert info["pid"] == holder.pid and info["what"] == "onnx" and "-c" in info["command"]
        assert info["lock"] == str(store.locks_dir / f"{KEY}.lock") and info["since"] <= time.time()
        assert mine["pid"] == os.getpid()  # the new holder says so in turn
        assert holder.wait(timeout=30) == 0
    finally:
        release.write_text("")
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_free_lock_calls_no_waiter(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with store.lock(KEY, on_wait=lambda info: pytest.fail(f"waited for {info}")):
        assert store.lock_holder(KEY)["pid"] == os.getpid()
    assert "pid" not in store.lock_holder(cache_key({"never": 1}))
