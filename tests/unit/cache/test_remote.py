"""The object-store cache's logic on a file:// and a memory:// store: records checked before any
download, every downloaded file digest-checked, content first and record last, leases, pickling."""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from pathlib import Path

import pytest

from navbuild.cache.open import is_url, local_cache_root, open_store
from navbuild.cache.remote import RemoteStore, record_problem
from navbuild.cache.store import Store
from navbuild.errors import CacheError


def _key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _publish(store, key: str, files: dict[str, bytes], target: str = "onnx"):
    staging = store.staging(key)
    for rel, data in files.items():
        (staging / "out" / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / "out" / rel).write_bytes(data)
    (staging / "log.txt").write_text(f"built {target}\n")
    return store.publish(key, staging, payload={"step": target}, result={"ok": True}, info={"target_id": target})


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"file://{tmp_path / 'bucket' / 'prefix'}"


def _machine(url: str, tmp_path: Path, name: str) -> RemoteStore:
    """A builder with its own local cache, pointed at the shared store."""
    return RemoteStore(url, tmp_path / f"local-{name}")


def test_second_machine_downloads_the_entry_with_its_digests_and_log(url, tmp_path):
    a, b = _machine(url, tmp_path, "a"), _machine(url, tmp_path, "b")
    key = _key("x")
    built = _publish(a, key, {"model.onnx": b"weights", "sub/info.json": b"{}"})
    assert b.peek(key)["digest"] == built.digest  # plan reads the record, downloads nothing
    assert not b.local.entry_dir(key).exists()
    got = b.lookup(key)
    assert got is not None and got.digest == built.digest
    assert (got.out / "model.onnx").read_bytes() == b"weights"
    assert got.log.read_text() == "built onnx\n"
    assert got.meta["target_id"] == "onnx" and got.result == {"ok": True}
    assert b.warnings == []


def test_identical_files_are_stored_once(url, tmp_path):
    a = _machine(url, tmp_path, "a")
    _publish(a, _key("x"), {"model.onnx": b"same"})
    _publish(a, _key("y"), {"model.onnx": b"same"}, target="onnx-fp16")
    blobs = Path(url[len("file://"):]) / "blobs"
    sha = hashlib.sha256(b"same").hexdigest()
    assert (blobs / sha).read_bytes() == b"same"
    assert sorted(a.remote_records()) == sorted([_key("x"), _key("y")])


def test_a_tampered_blob_is_refused_with_a_warning_then_rebuilt_and_repaired(url, tmp_path):
    a, b, c = (_machine(url, tmp_path, n) for n in "abc")
    key = _key("x")
    _publish(a, key, {"model.onnx": b"weights"})
    blob = Path(url[len("file://"):]) / "blobs" / hashlib.sha256(b"weights").hexdigest()
    blob.write_bytes(b"weightz")  # same size, other bytes
    assert b.lookup(key) is None
    assert any(key[:12] in w and "target onnx" in w and "sha256" in w for w in b.warnings), b.warnings
    assert not b.local.entry_dir(key).exists()
    # the rebuild publishes over the broken entry, and the blob holds its digest's bytes again
    _publish(b, key, {"model.onnx": b"weights"})
    assert blob.read_bytes() == b"weights"
    assert (c.lookup(key).out / "model.onnx").read_bytes() == b"weights"


def test_a_missing_blob_or_a_record_naming_other_digests_is_a_miss(url, tmp_path):
    a, b = _machine(url, tmp_path, "a"), _machine(url, tmp_path, "b")
    key = _key("x")
    _publish(a, key, {"model.onnx": b"weights"})
    root = Path(url[len("file://"):])
    (root / "blobs" / hashlib.sha256(b"weights").hexdigest()).unlink()
    assert b.lookup(key) is None
    assert any("is missing" in w for w in b.warnings)
    record = json.loads((root / "entries" / f"{key}.json").read_text())
    record["digest"] = "0" * 64
    (root / "entries" / f"{key}.json").write_text(json.dumps(record))
    assert _machine(url, tmp_path, "c").lookup(key) is None
    assert _machine(url, tmp_path, "d").peek(key) is None


def test_record_problem_checks_what_a_download_relies_on():
    key = _key("x")
    files = {"model.onnx": {"sha256": hashlib.sha256(b"w").hexdigest(), "size": 1}}
    from navbuild.cache.digest import tree_digest

    good = {"schema": 1, "key": key, "files": files, "digest": tree_digest({"model.onnx": files["model.onnx"]["sha256"]})}
    from navbuild.cache.keys import KEY_SCHEMA_VERSION

    good["schema"] = KEY_SCHEMA_VERSION
    assert record_problem(key, good) is None
    assert "key" in record_problem(_key("y"), good)
    assert "tree digest" in record_problem(key, {**good, "digest": "0" * 64})
    escape = {"../../etc/passwd": files["model.onnx"]}
    assert "inside the entry" in record_problem(key, {**good, "files": escape})
    assert "sha256" in record_problem(key, {**good, "files": {"model.onnx": {"sha256": "zz", "size": 1}}})
    assert "side file" in record_problem(key, {**good, "side_files": {"../log.txt": files["model.onnx"]}})
    assert "schema" in record_problem(key, {**good, "schema": -1})
    assert "JSON object" in record_problem(key, [])


def test_a_publish_after_another_builder_published_drops_this_copy(url, tmp_path):
    a, b = _machine(url, tmp_path, "a"), _machine(url, tmp_path, "b")
    key = _key("x")
    theirs = _publish(a, key, {"model.onnx": b"first"})
    ours = _publish(b, key, {"model.onnx": b"second"})
    assert ours.digest == theirs.digest  # the store keeps one entry per key: the first
    assert (b.local.entry_dir(key) / "out" / "model.onnx").read_bytes() == b"first"
    assert any("dropped" in w for w in b.warnings)


def test_a_local_hit_the_store_lacks_is_uploaded(url, tmp_path):
    key = _key("x")
    local = tmp_path / "local-a"
    _publish(Store(local), key, {"model.onnx": b"w"})
    a = RemoteStore(url, local)
    assert a.lookup(key) is not None
    assert a.remote_records() == [key]


def test_a_taken_lease_makes_another_builder_wait_and_an_expired_one_is_taken_over(url, tmp_path):
    a, b = _machine(url, tmp_path, "a"), _machine(url, tmp_path, "b")
    key = _key("x")
    seen = []
    with a.lock(key, what="onnx"):
        with pytest.raises(CacheError, match=r"waiting for the lease .*leases/"):
            with b.lock(key, timeout=0.2, on_wait=seen.append):
                pass
    assert seen and seen[0]["what"] == "onnx" and "leases" in seen[0]["lock"]
    lease = Path(url[len("file://"):]) / "leases" / key
    assert not lease.exists()  # released
    lease.write_text(json.dumps({"host": "gone", "pid": 1, "expires": time.time() - 1}))
    with b.lock(key, timeout=5):
        assert json.loads(lease.read_text())["host"] == b.host


def test_a_waiting_builder_stops_waiting_once_the_entry_is_published(url, tmp_path):
    a, b = _machine(url, tmp_path, "a"), _machine(url, tmp_path, "b")
    key = _key("x")
    with a.lock(key, what="onnx"):
        _publish(a, key, {"model.onnx": b"w"})
        with b.lock(key, timeout=5):  # the record exists: no lease needed, the lookup finds it
            assert b.lookup(key) is not None


def test_the_store_pickles_as_its_url_and_reopens(url, tmp_path):
    cloudpickle = pytest.importorskip("cloudpickle")
    a = _machine(url, tmp_path, "a")
    key = _key("x")
    _publish(a, key, {"model.onnx": b"w"})
    for dumps in (pickle.dumps, cloudpickle.dumps):
        again = pickle.loads(dumps(a))
        assert again.url == a.url and again.root == a.root
        assert again.lookup(key).digest == a.lookup(key).digest
    plain = Store(tmp_path / "plain")
    assert pickle.loads(pickle.dumps(plain)).root == plain.root


def test_a_memory_store_works_through_fsspec_alone(tmp_path):
    pytest.importorskip("fsspec")
    url = f"memory://navbuild-test-{time.time_ns()}"
    a, b = _machine(url, tmp_path, "a"), _machine(url, tmp_path, "b")
    key = _key("x")
    built = _publish(a, key, {"model.onnx": b"w"})
    assert b.lookup(key).digest == built.digest
    with a.lock(key):
        pass


def test_open_store_keeps_plain_paths_local_and_opens_urls_remote(tmp_path, monkeypatch):
    monkeypatch.delenv("NAVBUILD_CACHE_DIR", raising=False)
    monkeypatch.setenv("NAVBUILD_LOCAL_CACHE", str(tmp_path / "mine"))
    local = open_store("cache", tmp_path)
    assert type(local) is Store and local.root == tmp_path / "cache"
    remote = open_store("s3://bucket/prefix", tmp_path)
    assert isinstance(remote, RemoteStore) and remote.root == tmp_path / "mine"
    assert local_cache_root("s3://bucket/prefix", tmp_path) == tmp_path / "mine"
    monkeypatch.setenv("NAVBUILD_CACHE_DIR", "gs://b/p")
    assert open_store(None, tmp_path).url == "gs://b/p"
    assert is_url("file:///x") and not is_url("/x")


def test_gc_prunes_the_local_cache_and_keeps_the_stores_entries(url, tmp_path, monkeypatch, capsys):
    from navbuild.gc_command import gc_main

    monkeypatch.setenv("NAVBUILD_LOCAL_CACHE", str(tmp_path / "local-a"))
    a = open_store(url, tmp_path)
    key = _key("x")
    _publish(a, key, {"model.onnx": b"w"})
    assert gc_main(["--cache-dir", url, "--max-size", "0"]) == 0
    said = capsys.readouterr().out
    assert f"{url} is an object store; pruning its local cache {tmp_path / 'local-a'}" in said
    assert not a.local.entry_dir(key).exists()
    assert a.remote_records() == [key] and a.lookup(key) is not None


def test_a_measurement_taken_again_replaces_the_record(url, tmp_path):
    a, b, c = (_machine(url, tmp_path, n) for n in "abc")
    key = _key("profile")
    _publish(a, key, {"profile.json": b'{"ms": 2}'}, target="profile/onnx")
    staging = b.staging(key)
    (staging / "out" / "profile.json").write_bytes(b'{"ms": 1}')
    b.publish(key, staging, payload={}, result={"ms": 1}, info={"target_id": "profile/onnx"}, replace=True)
    got = c.lookup(key)
    assert got.result == {"ms": 1} and (got.out / "profile.json").read_bytes() == b'{"ms": 1}'


def test_a_record_that_is_not_json_is_a_miss_with_a_warning(url, tmp_path):
    a = _machine(url, tmp_path, "a")
    key = _key("x")
    record = Path(url[len("file://"):]) / "entries" / f"{key}.json"
    record.parent.mkdir(parents=True)
    record.write_text('{"schema": ')  # what a store without atomic writes could show mid-write
    assert a.lookup(key) is None and a.peek(key) is None
    assert any("not JSON" in w for w in a.warnings)
    assert _publish(a, key, {"model.onnx": b"w"}).digest == json.loads(record.read_text())["digest"]


def test_a_shared_file_reaches_a_machine_that_lacks_it(url, tmp_path):
    a, b = _machine(url, tmp_path, "a"), _machine(url, tmp_path, "b")
    mine = a.root / "sources" / "0123.json"
    mine.parent.mkdir(parents=True)
    mine.write_text('{"schema": 1}')
    a.push_shared(mine)
    theirs = b.root / "sources" / "0123.json"
    b.pull_shared(theirs)
    assert theirs.read_text() == '{"schema": 1}'
    b.pull_shared(b.root / "sources" / "none.json")  # nothing shared under that name: nothing happens
    assert not (b.root / "sources" / "none.json").exists()
