"""Tests for navbuild.cache.gc: what gets collected, in which order, and size/age parsing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from navbuild.cache.gc import collect, parse_age, parse_size
from navbuild.cache.keys import cache_key
from navbuild.cache.records import Records
from navbuild.cache.store import Entry, Store

NOW = time.time()
DAY = 86400.0


def key(n: int) -> str:
    return cache_key({"n": n})


def add(store: Store, n: int, size: int = 1000, used: float = NOW) -> Entry:
    staging = store.staging(key(n))
    (staging / "out" / "blob").write_bytes(bytes(size))
    entry = store.publish(key(n), staging, payload={}, result={}, info={"target_id": f"t{n}"})
    os.utime(entry.path / "meta.json", (used, used))
    return entry


def refer(records: Records, *ns: int) -> None:
    records.save(Path("/build/x"), {"targets": {f"t{n}": {"key": key(n)} for n in ns}})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "cache")


@pytest.fixture
def records(store: Store) -> Records:
    return Records(store.records_dir)


def keys_left(store: Store) -> set[str]:
    return {e.key for e in store.entries()}


def test_unreferenced_entries_are_removed(store: Store, records: Records) -> None:
    add(store, 1), add(store, 2), add(store, 3)
    refer(records, 1, 3)
    report = collect(store, records, now=NOW)
    assert [(k, r) for k, _b, r in report.removed] == [(key(2), "unreferenced")]
    assert keys_left(store) == {key(1), key(3)}
    assert report.kept_entries == 2 and report.kept_bytes > 2000
    assert report.freed_bytes == report.removed[0][1] > 1000


def test_keep_unreferenced(store: Store, records: Records) -> None:
    add(store, 1)
    report = collect(store, records, keep_unreferenced=True, now=NOW)
    assert report.removed == [] and keys_left(store) == {key(1)}


def test_max_age(store: Store, records: Records) -> None:
    add(store, 1, used=NOW - 40 * DAY)
    add(store, 2, used=NOW - 1 * DAY)
    refer(records, 1, 2)
    report = collect(store, records, max_age_s=parse_age("30d"), now=NOW)
    assert [(k, r) for k, _b, r in report.removed] == [(key(1), "unused for 40d")]
    assert keys_left(store) == {key(2)}


def test_max_size_removes_least_recently_used(store: Store, records: Records) -> None:
    sizes = {}
    for n, age in ((1, 3), (2, 1), (3, 5), (4, 2)):
        sizes[n] = add(store, n, size=10_000, used=NOW - age * DAY)
    refer(records, 1, 2, 3, 4)
    one = store.entry_size(sizes[1])
    report = collect(store, records, max_size=2 * one + 10, now=NOW)
    assert [k for k, _b, _r in report.removed] == [key(3), key(1)]  # oldest use first
    assert {r for _k, _b, r in report.removed} == {"over the size limit"}
    assert keys_left(store) == {key(2), key(4)}
    assert report.kept_bytes <= 2 * one + 10


def test_dry_run_removes_nothing(store: Store, records: Records) -> None:
    add(store, 1, used=NOW - 40 * DAY)
    add(store, 2)
    stale = store.staging(key(9))
    os.utime(stale, (NOW - 2 * 3600,) * 2)
    os.utime(stale / "out", (NOW - 2 * 3600,) * 2)
    before = keys_left(store)
    report = collect(store, records, max_age_s=DAY, max_size=0, dry_run=True, now=NOW)
    assert report.dry_run
    assert {k for k, _b, _r in report.removed} == before
    assert keys_left(store) == before
    assert stale.exists()
    assert not store.locks_dir.exists() or os.listdir(store.locks_dir) == []


def test_stale_staging_removed_fresh_kept(store: Store, records: Records) -> None:
    old_dead = store.tmp_dir / f"{key(1)[:16]}-999999999-abcd"  # no such pid
    (old_dead / "out").mkdir(parents=True)
    (old_dead / "out" / "part").write_text("half")
    for p in (old_dead, old_dead / "out", old_dead / "out" / "part"):
        os.utime(p, (NOW - 2 * 3600,) * 2)
    fresh = store.tmp_dir / f"{key(2)[:16]}-999999999-ef01"
    (fresh / "out").mkdir(parents=True)
    mine_old = store.staging(key(3))  # our own pid: a live writer
    os.utime(mine_old, (NOW - 2 * 3600,) * 2)
    os.utime(mine_old / "out", (NOW - 2 * 3600,) * 2)
    tmp_file = store.root / ".digest-memo.json.tmp-1-aa"
    tmp_file.write_text("{")
    os.utime(tmp_file, (NOW - 2 * 3600,) * 2)
    report = collect(store, records, now=NOW)
    assert report.staging_removed == 2
    assert not old_dead.exists() and not tmp_file.exists()
    assert fresh.exists() and mine_old.exists()


def test_locked_entry_is_kept(store: Store, records: Records, tmp_path: Path) -> None:
    add(store, 1)
    # Another process holds the lock (flock is per open file, so a child is the honest test).
    ready = tmp_path / "ready"
    code = (
        "import sys, time, pathlib\n"
        "from navbuild.cache.store import Store\n"
        f"s = Store(pathlib.Path({str(store.root)!r}))\n"
        f"with s.lock({key(1)!r}):\n"
        f"    pathlib.Path({str(ready)!r}).write_text('1')\n"
        "    time.sleep(30)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        report = collect(store, records, now=NOW)
        assert report.removed == [] and report.kept_entries == 1
        assert keys_left(store) == {key(1)}
    finally:
        child.kill()
        child.wait()
    assert [k for k, _b, _r in collect(store, records, now=NOW).removed] == [key(1)]


@pytest.mark.parametrize("text,expected", [
    ("1024", 1024), ("500M", 500 << 20), ("2G", 2 << 30), ("2g", 2 << 30),
    ("1.5K", 1536), ("10KB", 10240), ("3GiB", 3 << 30), ("1T", 1 << 40), ("7B", 7), (5, 5),
])
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "M", "-5", "5X", "2 gigabytes", "1e3"])
def test_parse_size_errors(text: str) -> None:
    with pytest.raises(ValueError, match=r"invalid size .*K, M, G or T"):
        parse_size(text)


@pytest.mark.parametrize("text,expected", [
    ("45s", 45.0), ("90m", 5400.0), ("12h", 43200.0), ("30d", 30 * DAY), ("1w", 7 * DAY),
    ("10", 10.0), ("1.5h", 5400.0),
])
def test_parse_age(text: str, expected: float) -> None:
    assert parse_age(text) == expected


@pytest.mark.parametrize("text", ["", "d", "-1d", "3y", "tomorrow"])
def test_parse_age_errors(text: str) -> None:
    with pytest.raises(ValueError, match=r"invalid age .*s, m, h, d or w"):
        parse_age(text)


def test_object_dir_without_meta_is_removed(store: Store, records: Records) -> None:
    add(store, 1)
    refer(records, 1)
    junk = store.objects_dir / key(2)[:2] / key(2)
    (junk / "out").mkdir(parents=True)
    report = collect(store, records, now=NOW)
    assert [(k, r) for k, _b, r in report.removed] == [(key(2), "corrupt (no readable meta.json)")]
    assert not junk.exists() and keys_left(store) == {key(1)}
