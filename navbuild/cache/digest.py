"""Content digests: streaming file SHA-256, a persisted memo that skips re-hashing, tree digests."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import stat
import threading
import time
from pathlib import Path
from typing import Iterator, Mapping

from navbuild.cache.keys import canonical_json

_CHUNK = 1 << 20

#: Bumped when the memo layout changes; a memo of another version is ignored, not misread.
MEMO_SCHEMA_VERSION = 1

#: A file whose mtime is this close to the moment it was hashed may be rewritten within the
#: same timestamp tick (ext4 ticks are milliseconds, FAT/NFS up to 2 s) without its mtime
#: changing, so such a "racy" hash is not trusted later (the same guard git uses).
RACY_WINDOW_NS = 2_000_000_000


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex of a file's bytes, read in 1 MiB chunks so big models fit in memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _fingerprint(st: os.stat_result) -> list[int]:
    """What must stay equal for a memoized digest to still be valid."""
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def atomic_write_text(path: Path, text: str, *, fsync: bool = True) -> None:
    """Write ``text`` to ``path`` via a unique temp file and ``os.replace``.

    Readers and concurrent writers only ever see a whole old or a whole new file: the
    last writer wins, and a kill mid-write leaves at most a stray temp file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # On a full or read-only disk removing the temp file can fail too; the first error counts.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


class DigestMemo:
    """SHA-256 of files, remembered across runs by (realpath, inode, size, mtime).

    Re-hashing a multi-GB model on every build is the slowest part of a no-op build; the
    memo makes an unchanged file cost one ``stat``. It holds only what this process looked
    up plus what was saved before, and forgets files that no longer exist when it saves.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._entries: dict[str, dict] | None = None  # loaded on first use: Store() stays cheap
        self._lock = threading.Lock()
        self.dirty = False
        #: how many files were actually hashed (not answered from the memo) in this process.
        self.hashed = 0

    def _load(self) -> dict[str, dict]:
        """Entries from disk; anything unreadable counts as an empty memo (it is only a cache)."""
        if self._entries is None:
            entries: dict[str, dict] = {}
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if isinstance(data, dict) and data.get("schema") == MEMO_SCHEMA_VERSION:
                    raw = data.get("entries")
                    if isinstance(raw, dict):
                        entries = {
                            k: v for k, v in raw.items()
                            if isinstance(v, dict) and isinstance(v.get("sha256"), str)
                            and isinstance(v.get("stat"), list)
                        }
            except (OSError, ValueError, UnicodeDecodeError):
                pass
            self._entries = entries
        return self._entries

    def digest(self, path: str | os.PathLike[str], trust: bool = True) -> str:
        """SHA-256 hex of ``path``, hashing only if the file changed since it was memoized.

        ``trust=False`` hashes the bytes whatever the memo says (``navbuild gc --verify``): the
        memo cannot see a change that kept the inode, size and mtime.
        """
        real = os.path.realpath(path)
        st = os.stat(real)
        fp = _fingerprint(st)
        with self._lock:
            known = self._load().get(real)
            if trust and known is not None and known["stat"] == fp and not known.get("racy", False):
                known["used"] = True
                return str(known["sha256"])
        started_ns = time.time_ns()
        value = sha256_file(real)
        with self._lock:
            self.hashed += 1
            self._load()[real] = {
                "sha256": value,
                "stat": fp,
                # Written too recently to rule out a same-tick rewrite: trust it next time
                # only if the mtime has moved (then the fingerprint differs anyway).
                "racy": st.st_mtime_ns + RACY_WINDOW_NS > started_ns,
                "used": True,
            }
            self.dirty = True
        return value

    def rehash_all(self, skip: Path | None = None) -> list[str]:
        """Hash again every remembered file that still exists (except those under ``skip``);
        returns those whose bytes changed although their fingerprint did not (the memo would
        have served a wrong digest)."""
        changed = []
        prefix = os.path.realpath(skip) + os.sep if skip is not None else None
        for real in sorted(self._load()):
            if prefix is not None and real.startswith(prefix):
                continue
            old = self._load()[real]
            try:
                same_stat = _fingerprint(os.stat(real)) == old["stat"]
                if self.digest(real, trust=False) != old["sha256"] and same_stat:
                    changed.append(real)
            except OSError:
                continue  # gone: save() forgets it
        return changed

    def save(self) -> None:
        """Persist the memo atomically, dropping entries whose file is gone or changed."""
        with self._lock:
            keep: dict[str, dict] = {}
            for real, entry in self._load().items():
                try:
                    st = os.stat(real)
                except OSError:
                    continue
                if _fingerprint(st) != entry["stat"]:
                    continue
                if entry.get("racy", False):
                    # Hashed while a same-tick rewrite was possible; the next look re-hashes
                    # it once (by then it is old enough) and that hash is kept.
                    continue
                keep[real] = {"sha256": entry["sha256"], "stat": entry["stat"]}
            self._entries = {k: dict(v) for k, v in keep.items()}
            self.dirty = False
        atomic_write_text(
            self.path, json.dumps({"schema": MEMO_SCHEMA_VERSION, "entries": keep}, indent=0),
            fsync=False,  # losing the memo costs only a re-hash, not worth an fsync per save
        )


def tree_digest(files: Mapping[str, str]) -> str:
    """Digest of a directory's content from ``{posix relpath: sha256}``.

    Relative paths are part of the digest (a rename changes it); where the tree lives is not.
    """
    return hashlib.sha256(
        canonical_json(dict(sorted(files.items()))).encode("utf-8")
    ).hexdigest()


def walk_tree(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every non-directory entry under ``root`` as (posix relpath, lstat), sorted.

    Symlinks are reported as themselves (not followed) so callers can refuse them: a link
    in a cache entry would point outside the store.
    """
    root = Path(root)
    found: list[tuple[str, os.stat_result]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        for name in dirnames:
            p = Path(dirpath, name)
            if p.is_symlink():
                found.append(((rel_dir / name).as_posix(), os.lstat(p)))
        for name in filenames:
            found.append(((rel_dir / name).as_posix(), os.lstat(Path(dirpath, name))))
    found.sort(key=lambda item: item[0])
    yield from found


def directory_files(root: Path, memo: DigestMemo | None = None) -> dict[str, dict]:
    """``{posix relpath: {"sha256", "size"}}`` for every regular file under ``root``, sorted."""
    out: dict[str, dict] = {}
    for rel, st in walk_tree(root):
        if not stat.S_ISREG(st.st_mode):
            continue
        path = Path(root, rel)
        sha = memo.digest(path) if memo is not None else sha256_file(path)
        out[rel] = {"sha256": sha, "size": st.st_size}
    return out
