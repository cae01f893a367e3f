"""Tests for Store.publish(replace=True): a provisional measurement measured again takes its key's place."""

from __future__ import annotations

import os
from pathlib import Path

from navbuild.cache.keys import cache_key
from navbuild.cache.store import Store

KEY = cache_key({"test": "replace"})


def publish(store: Store, result: dict, data: bytes, replace: bool = False):
    staging = store.staging(KEY)
    (staging / "out" / "measurements.json").write_bytes(data)
    return store.publish(KEY, staging, payload={"step": "S"}, result=result, info={"target_id": "profile/x"},
                         replace=replace)


def test_publish_keeps_the_first_entry_unless_replacing(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    first = publish(store, {"provisional": {"reason": "busy"}}, b"old")
    # without replace, a second publish under the key returns the entry already there
    again = publish(store, {"ok": True}, b"new")
    assert again.result == first.result and (again.out / "measurements.json").read_bytes() == b"old"
    replaced = publish(store, {"ok": True}, b"new", replace=True)
    assert replaced.result == {"ok": True}
    looked = store.lookup(KEY)
    assert looked is not None and looked.result == {"ok": True}
    assert (looked.out / "measurements.json").read_bytes() == b"new"
    # nothing of the old entry, nor a staging folder, is left behind
    assert os.listdir(store.tmp_dir) == []
    assert [k for k, _ in store.object_dirs()] == [KEY]


def test_replace_without_an_existing_entry_publishes(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    entry = publish(store, {"ok": 1}, b"x", replace=True)
    assert store.lookup(KEY).result == entry.result == {"ok": 1}
