"""Tests for navbuild.cache.digest: file and tree digests and the persisted digest memo."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from navbuild.cache import digest as digest_mod
from navbuild.cache.digest import DigestMemo, directory_files, sha256_file, tree_digest

OLD = time.time() - 3600  # an mtime safely outside the memo's racy window


def write(path: Path, data: bytes, mtime: float | None = OLD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every real hash the memo performs."""
    calls: list[str] = []
    real = digest_mod.sha256_file

    def spy(path: str | os.PathLike[str]) -> str:
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr(digest_mod, "sha256_file", spy)
    return calls


def test_sha256_file_streams_multi_chunk(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)
    f = write(tmp_path / "big.bin", data)
    assert sha256_file(f) == hashlib.sha256(data).hexdigest()


def test_memo_avoids_rehashing_in_process_and_across_processes(
    tmp_path: Path, counter: list[str]
) -> None:
    f = write(tmp_path / "m.onnx", b"model bytes")
    memo = DigestMemo(tmp_path / "memo.json")
    first = memo.digest(f)
    assert memo.digest(f) == first
    assert len(counter) == 1
    memo.save()
    again = DigestMemo(tmp_path / "memo.json")  # a later run
    assert again.digest(f) == first
    assert len(counter) == 1
    assert again.hashed == 0


def test_memo_rehashes_after_change(tmp_path: Path, counter: list[str]) -> None:
    f = write(tmp_path / "m.onnx", b"aaaa")
    memo = DigestMemo(tmp_path / "memo.json")
    a = memo.digest(f)
    write(f, b"bbbb", mtime=OLD + 10)  # same size, new content and mtime
    b = memo.digest(f)
    assert a != b and b == hashlib.sha256(b"bbbb").hexdigest()
    assert len(counter) == 2


def test_memo_rehashes_replaced_file_with_same_mtime(tmp_path: Path, counter: list[str]) -> None:
    # A new file renamed over the old one has a new inode even if size and mtime match.
    f = write(tmp_path / "m.onnx", b"aaaa")
    memo = DigestMemo(tmp_path / "memo.json")
    memo.digest(f)
    tmp = write(tmp_path / "new", b"bbbb")
    os.replace(tmp, f)
    assert memo.digest(f) == hashlib.sha256(b"bbbb").hexdigest()
    assert len(counter) == 2


def test_memo_does_not_trust_freshly_written_files(tmp_path: Path, counter: list[str]) -> None:
    # mtime within the timestamp tick: a same-size rewrite could keep the mtime, so re-hash.
    f = write(tmp_path / "fresh", b"xx", mtime=None)
    memo = DigestMemo(tmp_path / "memo.json")
    memo.digest(f)
    memo.digest(f)
    assert len(counter) == 2
    memo.save()
    assert json.loads((tmp_path / "memo.json").read_text())["entries"] == {}


@pytest.mark.parametrize("content", ["{not json", '{"schema": 99, "entries": {}}', "[1, 2]",
                                     '{"schema": 1, "entries": {"/x": 3}}'])
def test_corrupt_memo_is_ignored(tmp_path: Path, content: str) -> None:
    (tmp_path / "memo.json").write_text(content)
    f = write(tmp_path / "m", b"data")
    memo = DigestMemo(tmp_path / "memo.json")
    assert memo.digest(f) == hashlib.sha256(b"data").hexdigest()
    memo.save()
    saved = json.loads((tmp_path / "memo.json").read_text())
    assert list(saved["entries"]) == [os.path.realpath(f)]


def test_memo_save_drops_deleted_files_and_keeps_old_entries(tmp_path: Path) -> None:
    keep = write(tmp_path / "keep", b"1")
    gone = write(tmp_path / "gone", b"2")
    memo = DigestMemo(tmp_path / "memo.json")
    memo.digest(keep)
    memo.digest(gone)
    memo.save()
    gone.unlink()
    other = write(tmp_path / "other", b"3")
    later = DigestMemo(tmp_path / "memo.json")
    later.digest(other)
    later.save()
    entries = json.loads((tmp_path / "memo.json").read_text())["entries"]
    assert sorted(entries) == sorted([os.path.realpath(keep), os.path.realpath(other)])


def test_memo_save_leaves_no_temp_files(tmp_path: Path) -> None:
    memo = DigestMemo(tmp_path / "sub" / "memo.json")
    memo.digest(write(tmp_path / "f", b"x"))
    memo.save()
    assert os.listdir(tmp_path / "sub") == ["memo.json"]


def test_tree_digest_depends_on_relpaths_not_location(tmp_path: Path) -> None:
    for root in ("a", "b"):
        write(tmp_path / root / "model.onnx", b"m")
        write(tmp_path / root / "sub" / "w.bin", b"w")
    da = tree_digest({k: v["sha256"] for k, v in directory_files(tmp_path / "a").items()})
    db = tree_digest({k: v["sha256"] for k, v in directory_files(tmp_path / "b").items()})
    assert da == db
    (tmp_path / "b" / "model.onnx").rename(tmp_path / "b" / "renamed.onnx")
    dc = tree_digest({k: v["sha256"] for k, v in directory_files(tmp_path / "b").items()})
    assert dc != da


def test_tree_digest_ignores_mapping_order() -> None:
    assert tree_digest({"a": "1", "b": "2"}) == tree_digest({"b": "2", "a": "1"})


def test_directory_files_lists_regular_files_sorted(tmp_path: Path) -> None:
    write(tmp_path / "z.txt", b"zz")
    write(tmp_path / "d" / "a.bin", b"a")
    (tmp_path / "empty").mkdir()
    os.symlink(tmp_path / "z.txt", tmp_path / "link")
    files = directory_files(tmp_path)
    assert list(files) == ["d/a.bin", "z.txt"]
    assert files["z.txt"] == {"sha256": hashlib.sha256(b"zz").hexdigest(), "size": 2}


def test_directory_files_uses_memo(tmp_path: Path, counter: list[str]) -> None:
    write(tmp_path / "t" / "a", b"a")
    memo = DigestMemo(tmp_path / "memo.json")
    directory_files(tmp_path / "t", memo)
    directory_files(tmp_path / "t", memo)
    assert len(counter) == 1
