"""Tests for navbuild.cache.store and records: verified lookup, atomic publish, materialize."""

from __future__ import annotations

import json
import os
import re
import stat
import time
from pathlib import Path

import pytest

from navbuild.cache.keys import cache_key
from navbuild.cache.records import RECORD_SCHEMA_VERSION, Records, record_name
from navbuild.cache.store import (
    CACHE_ENV,
    DEFAULT_CACHE_DIRNAME,
    Entry,
    Store,
    resolve_cache_dir,
)
from navbuild.errors import CacheError

KEY = cache_key({"test": 1})
OLD = time.time() - 3600


def build(store: Store, key: str = KEY, files: dict[str, bytes] | None = None,
          target: str = "onnx") -> Entry:
    files = files if files is not None else {"model.onnx": b"x" * 20, "sub/config.json": b"{}"}
    staging = store.staging(key)
    for rel, data in files.items():
        (staging / "out" / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / "out" / rel).write_bytes(data)
    (staging / "log.txt").write_text("built\n")
    return store.publish(key, staging, payload={"step": "S"}, result={"ok": True},
                         info={"target_id": target, "seconds": 0.1})


def only_dirs(path: Path) -> list[str]:
    return sorted(os.listdir(path)) if path.exists() else []


# -- resolve_cache_dir --------------------------------------------------------------------


def test_resolve_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert resolve_cache_dir(None, tmp_path) == tmp_path / DEFAULT_CACHE_DIRNAME
    monkeypatch.setenv(CACHE_ENV, "envcache")
    assert resolve_cache_dir(None, tmp_path) == tmp_path / "envcache"
    assert resolve_cache_dir("", tmp_path) == tmp_path / "envcache"
    assert resolve_cache_dir("/abs/c", tmp_path) == Path("/abs/c")
    assert resolve_cache_dir("rel/c", tmp_path) == tmp_path / "rel" / "c"


# -- publish / lookup ---------------------------------------------------------------------


def test_publish_lookup_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    assert store.lookup(KEY) is None
    published = build(store)
    assert published.path == tmp_path / "cache" / "objects" / KEY[:2] / KEY
    entry = store.lookup(KEY)
    assert entry is not None
    assert (entry.out / "model.onnx").read_bytes() == b"x" * 20
    assert entry.digest == published.digest and len(entry.digest) == 64
    assert entry.result == {"ok": True}
    assert entry.meta["target_id"] == "onnx" and entry.meta["payload"] == {"step": "S"}
    assert entry.log.read_text() == "built\n"
    assert sorted(entry.meta["files"]) == ["model.onnx", "sub/config.json"]
    assert store.peek(KEY)["key"] == KEY
    assert only_dirs(store.tmp_dir) == []  # staging was renamed away
    assert store.warnings == []


def test_same_content_gives_same_digest(tmp_path: Path) -> None:
    store = Store(tmp_path)
    a = build(store, cache_key({"a": 1}))
    b = build(store, cache_key({"b": 1}))
    assert a.digest == b.digest


def test_lookup_is_cheap_for_unchanged_files(tmp_path: Path) -> None:
    store = Store(tmp_path)
    entry = build(store)
    for f in entry.out.rglob("*"):
        if f.is_file():
            os.utime(f, (OLD, OLD))  # out of the memo's racy window
    assert store.lookup(KEY) is not None
    fresh = Store(tmp_path)  # a later process: digests come from the saved memo
    assert fresh.lookup(KEY) is not None
    assert fresh.memo.hashed == 0


def test_lookup_touches_meta(tmp_path: Path) -> None:
    store = Store(tmp_path)
    entry = build(store)
    os.utime(entry.path / "meta.json", (OLD, OLD))
    store.lookup(KEY)
    assert (entry.path / "meta.json").stat().st_mtime > OLD + 100


def corrupt_cases() -> dict:
    def truncate(e: Entry) -> None:
        with open(e.out / "model.onnx", "r+b") as f:
            f.truncate(10)

    def flip(e: Entry) -> None:
        p = e.out / "model.onnx"
        data = bytearray(p.read_bytes())
        data[3] ^= 0xFF
        p.write_bytes(bytes(data))
        os.utime(p, (OLD + 5, OLD + 5))

    def extra(e: Entry) -> None:
        (e.out / "stray.txt").write_text("?")

    def missing_file(e: Entry) -> None:
        (e.out / "sub" / "config.json").unlink()

    def missing_meta(e: Entry) -> None:
        (e.path / "meta.json").unlink()

    def bad_json(e: Entry) -> None:
        (e.path / "meta.json").write_text('{"schema": 1, "key":')

    def wrong_key(e: Entry) -> None:
        meta = json.loads((e.path / "meta.json").read_text())
        meta["key"] = "f" * 64
        (e.path / "meta.json").write_text(json.dumps(meta))

    def old_schema(e: Entry) -> None:
        meta = json.loads((e.path / "meta.json").read_text())
        meta["schema"] = 0
        (e.path / "meta.json").write_text(json.dumps(meta))

    def bad_digest(e: Entry) -> None:
        meta = json.loads((e.path / "meta.json").read_text())
        meta["digest"] = "0" * 64
        (e.path / "meta.json").write_text(json.dumps(meta))

    return {
        "truncated": (truncate, r"out/model.onnx: size 10 != 20"),
        "flipped": (flip, r"out/model.onnx: sha256"),
        "extra": (extra, r"out/stray.txt: unexpected file"),
        "missing_file": (missing_file, r"out/sub/config.json: missing"),
        "missing_meta": (missing_meta, r"meta.json missing"),
        "bad_json": (bad_json, r"meta.json unreadable"),
        "wrong_key": (wrong_key, r"meta.json is for key ffffffffffff"),
        "old_schema": (old_schema, r"schema 0 != 1"),
        "bad_digest": (bad_digest, r"tree digest"),
    }


@pytest.mark.parametrize("case", sorted(corrupt_cases()))
def test_corrupt_entry_is_a_warning_and_a_miss(tmp_path: Path, case: str) -> None:
    damage, reason = corrupt_cases()[case]
    store = Store(tmp_path)
    entry = build(store)
    # Prime the memo with old mtimes so a flipped byte is caught by the mtime change alone.
    for f in entry.out.rglob("*"):
        if f.is_file():
            os.utime(f, (OLD, OLD))
    assert store.lookup(KEY) is not None
    damage(entry)
    assert store.lookup(KEY) is None
    assert len(store.warnings) == 1
    warning = store.warnings[0]
    assert warning.startswith(f"cache entry {KEY[:12]}")
    assert warning.endswith("it will be rebuilt")
    assert re.search(reason, warning), warning
    if case not in ("missing_meta", "bad_json"):
        assert "(target onnx)" in warning
    assert not entry.path.exists()
    assert only_dirs(store.tmp_dir) == []  # moved aside, then deleted
    # and it can be rebuilt
    build(store)
    assert store.lookup(KEY) is not None


def test_publish_race_returns_existing_entry(tmp_path: Path) -> None:
    store = Store(tmp_path)
    first = build(store, files={"a": b"first"})
    second = build(store, files={"a": b"second"})
    assert second.path == first.path
    assert (second.out / "a").read_bytes() == b"first"
    assert only_dirs(store.tmp_dir) == []


def test_publish_replaces_corrupt_existing_entry(tmp_path: Path) -> None:
    store = Store(tmp_path)
    first = build(store, files={"a": b"first"})
    (first.out / "a").write_bytes(b"broken")
    second = build(store, files={"a": b"second"})
    assert (second.out / "a").read_bytes() == b"second"
    assert store.lookup(KEY) is not None
    assert len(store.warnings) == 1


def test_publish_refuses_symlinks_and_reserved_info(tmp_path: Path) -> None:
    store = Store(tmp_path)
    staging = store.staging(KEY)
    os.symlink("/etc/hostname", staging / "out" / "link")
    with pytest.raises(CacheError, match="non-regular files"):
        store.publish(KEY, staging, payload={}, result={}, info={})
    with pytest.raises(ValueError, match="may not set"):
        store.publish(KEY, staging, payload={}, result={}, info={"digest": "x"})


def test_staging_layout_and_discard(tmp_path: Path) -> None:
    store = Store(tmp_path)
    s = store.staging(KEY)
    assert s.parent == store.tmp_dir
    assert s.name.startswith(f"{KEY[:16]}-{os.getpid()}-")
    assert only_dirs(s) == ["out"]
    assert store.staging(KEY) != s
    store.discard(s)
    assert not s.exists()


def test_invalid_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid cache key"):
        Store(tmp_path).lookup("../etc")


def test_unwritable_root_is_a_cache_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        store = Store(ro / "cache")
        assert store.lookup(KEY) is None  # reading never needs to write
        with pytest.raises(CacheError, match=str(ro / "cache")):
            store.staging(KEY)
    finally:
        ro.chmod(stat.S_IRWXU)


def test_file_as_root_is_a_cache_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(CacheError, match="not usable"):
        Store(tmp_path / "file").staging(KEY)


# -- locks --------------------------------------------------------------------------------


def test_lock_timeout_and_release(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with store.lock(KEY):
        assert store.is_locked(KEY)
        with store.try_lock(KEY) as taken:
            assert not taken
        with pytest.raises(CacheError, match="timed out"):
            with store.lock(KEY, timeout=0.1):
                pass
    assert not store.is_locked(KEY)
    with store.lock(KEY, timeout=0.1):
        pass


# -- maintenance --------------------------------------------------------------------------


def test_entries_size_touch_remove(tmp_path: Path) -> None:
    store = Store(tmp_path)
    e1 = build(store, cache_key({"a": 1}))
    build(store, cache_key({"b": 1}))
    (store.objects_dir / "zz" / ("z" * 64)).mkdir(parents=True)  # junk: no meta, skipped
    keys = sorted(e.key for e in store.entries())
    assert keys == sorted([cache_key({"a": 1}), cache_key({"b": 1})])
    assert store.entry_size(e1) > 22
    os.utime(e1.path / "meta.json", (OLD, OLD))
    store.touch(e1.key)
    assert store.last_used(e1) > OLD + 100
    store.remove(e1.key)
    assert store.lookup(e1.key) is None and store.warnings == []
    store.remove(e1.key)  # idempotent


def test_materialize_hardlinks_and_replaces(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    entry = build(store)
    dest = tmp_path / "build" / "onnx"
    dest.mkdir(parents=True)
    (dest / "stale.bin").write_text("old build")
    (dest / "model.onnx").write_text("older model")
    store.materialize(entry, dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "model.onnx", "sub/config.json"
    ]
    assert os.path.samefile(dest / "model.onnx", entry.out / "model.onnx")
    inode = (dest / "model.onnx").stat().st_ino
    store.materialize(entry, dest)  # already linked: untouched
    assert (dest / "model.onnx").stat().st_ino == inode
    assert [p.name for p in dest.iterdir() if p.name.startswith(".")] == []


def test_materialize_replaces_a_file_at_dest(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    entry = build(store)
    dest = tmp_path / "build" / "onnx"
    dest.parent.mkdir()
    dest.write_text("a file where the folder goes")
    store.materialize(entry, dest)
    assert (dest / "sub" / "config.json").read_bytes() == b"{}"


# -- records ------------------------------------------------------------------------------


def test_records_round_trip(tmp_path: Path) -> None:
    records = Records(tmp_path / "records")
    build_dir = tmp_path / "build" / "r"
    rec = {"targets": {"onnx": {"key": KEY, "payload": {}, "digest": "d", "status": "built"}}}
    path = records.save(build_dir, rec)
    assert path.name == f"{record_name(build_dir)}.json" and len(path.stem) == 16
    loaded = records.load(build_dir)
    assert loaded["schema"] == RECORD_SCHEMA_VERSION
    assert loaded["build_dir"] == str(build_dir.resolve())
    assert loaded["targets"]["onnx"]["key"] == KEY
    assert records.referenced_keys() == {KEY}
    assert records.load(tmp_path / "other") is None
    assert records.warnings == []


@pytest.mark.parametrize("content", ["{broken", "[]", '{"schema": 0, "targets": {}}',
                                     '{"schema": 1, "targets": [1]}', "\xff\xfe"])
def test_corrupt_record_is_a_warning(tmp_path: Path, content: str) -> None:
    records = Records(tmp_path / "records")
    good_dir, bad_dir = tmp_path / "good", tmp_path / "bad"
    records.save(good_dir, {"targets": {"onnx": {"key": "a" * 64}}})
    records.path_for(bad_dir).write_text(content, encoding="latin-1")
    assert records.load(bad_dir) is None
    assert len(records.warnings) == 1 and str(records.path_for(bad_dir)) in records.warnings[0]
    assert [r["build_dir"] for r in records.all()] == [str(good_dir.resolve())]
    assert records.referenced_keys() == {"a" * 64}
    assert len(records.warnings) == 1  # the same problem is reported once


def test_record_cannot_forge_schema(tmp_path: Path) -> None:
    records = Records(tmp_path)
    records.save(tmp_path / "b", {"schema": 99, "build_dir": "/elsewhere", "targets": {}})
    loaded = records.load(tmp_path / "b")
    assert loaded["schema"] == RECORD_SCHEMA_VERSION
    assert loaded["build_dir"] == str((tmp_path / "b").resolve())
