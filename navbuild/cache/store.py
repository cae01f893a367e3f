"""The content-addressed store: verified lookup, per-key locks, atomic publish, materialize."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from navbuild.cache.digest import DigestMemo, directory_files, tree_digest, walk_tree
from navbuild.cache.fs import NO_SPACE, disk_full, is_read_only, mount_point, writing
from navbuild.cache.keys import KEY_SCHEMA_VERSION
from navbuild.errors import CacheError

DEFAULT_CACHE_DIRNAME = ".navbuild-cache"
CACHE_ENV = "NAVBUILD_CACHE_DIR"

#: Fields of meta.json the store owns; ``info`` passed to publish may not override them.
RESERVED_META = frozenset({"schema", "key", "payload", "files", "digest", "result"})

#: Keys become directory and file names, so they must not contain separators or dots first.
_KEY_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.-]{0,199}")

_LOCK_POLL_S = 0.05


def resolve_cache_dir(configured: str | None, cwd: Path | None = None) -> Path:
    """Where the store lives.

    ``configured`` (non-empty) wins, then ``$NAVBUILD_CACHE_DIR``, then ``cwd/.navbuild-cache``.
    Relative paths resolve against ``cwd`` (default: the current directory).
    """
    base = Path(cwd) if cwd is not None else Path.cwd()
    raw = configured or os.environ.get(CACHE_ENV) or ""
    path = Path(raw).expanduser() if raw else Path(DEFAULT_CACHE_DIRNAME)
    if not path.is_absolute():
        path = base / path
    return Path(os.path.normpath(path.absolute()))


@dataclass(frozen=True)
class Entry:
    """One verified (or, from ``entries()``, merely parseable) cache entry."""

    key: str
    path: Path
    meta: dict

    @property
    def out(self) -> Path:
        """The artifacts folder."""
        return self.path / "out"

    @property
    def digest(self) -> str:
        """Tree digest of ``out/``: what downstream keys use as this target's input."""
        return str(self.meta["digest"])

    @property
    def result(self) -> dict:
        """The step's JSON result (metrics, facts)."""
        return self.meta.get("result", {})

    @property
    def log(self) -> Path:
        """The step's log as it ran when the entry was built."""
        return self.path / "log.txt"


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    """fsync a file or a directory (a directory fsync makes its entries' names durable)."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every file, then every directory bottom-up, under and including ``root``."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            p = Path(dirpath, name)
            if not p.is_symlink():
                _fsync_path(p)
        _fsync_path(Path(dirpath), directory=True)


def remove_tree(path: Path) -> None:
    """Remove a tree, tolerating it vanishing under us (another process may be cleaning too)."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)


class Store:
    """A content-addressed store of build outputs under ``root``.

    Layout: ``objects/<key[:2]>/<key>/{out/, meta.json, log.txt, ...}`` (committed entries),
    ``tmp/`` (staging, moved-aside corrupt entries), ``locks/<key>.lock``, ``records/``,
    ``digest-memo.json``. An entry exists only after a rename from ``tmp/``, so no reader can
    see a half-written one; every lookup re-verifies the files (cheaply, via the memo).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.memo = DigestMemo(self.root / "digest-memo.json")
        #: messages for the reporter (corrupt entries found and removed, ...).
        self.warnings: list[str] = []

    def __reduce__(self) -> tuple:
        """Pickled as its root (the memo holds a lock): a store passed to another process reopens there."""
        return (type(self), (self.root,))

    # -- layout -------------------------------------------------------------------------

    @property
    def objects_dir(self) -> Path:
        """Committed entries, sharded by the first two hex digits of the key."""
        return self.root / "objects"

    @property
    def tmp_dir(self) -> Path:
        """Staging dirs and entries being deleted (same filesystem, so renames are atomic)."""
        return self.root / "tmp"

    @property
    def locks_dir(self) -> Path:
        """One flock file per key (kept: deleting a lock file races with its users)."""
        return self.root / "locks"

    @property
    def records_dir(self) -> Path:
        """Where build records live (pass it to ``Records``)."""
        return self.root / "records"

    def entry_dir(self, key: str) -> Path:
        """Where the committed entry of ``key`` lives (whether or not it exists)."""
        _check_key(key)
        return self.objects_dir / key[:2] / key

    def _ensure_dir(self, path: Path) -> Path:
        """Create ``path`` (lazily: ``plan`` never writes) or explain why the store is unusable."""
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            if e.errno in NO_SPACE:
                raise disk_full(path, "a cache folder") from None
            raise CacheError(
                f"cache directory {self.root} is not usable: cannot create {path} ({e.strerror}); "
                f"point {CACHE_ENV} or the recipe's cache_dir at a writable folder"
            ) from e
        if not os.access(path, os.W_OK | os.X_OK):
            ro = f" (its file system {mount_point(path)} is mounted read-only)" if is_read_only(path) else ""
            raise CacheError(
                f"cache directory {self.root} is not writable ({path}){ro}; "
                f"point {CACHE_ENV} or the recipe's cache_dir at a writable folder"
            )
        return path

    def _warn(self, message: str) -> None:
        """Add a reporter message once (the same corrupt entry may be seen many times)."""
        if message not in self.warnings:
            self.warnings.append(message)

    def unwritable_reason(self) -> str | None:
        """Why nothing can be added to the store now (read-only file system, no permission), or None.

        A cache that can be read but not written still serves what it holds; only misses need this.
        """
        p = self.root
        while not p.exists() and p != p.parent:
            p = p.parent
        if is_read_only(p):
            return f"the cache {self.root} is on a read-only file system ({mount_point(p)})"
        if not os.access(p, os.W_OK | os.X_OK):
            return f"the cache {self.root} is not writable by this user"
        return None

    def pull_shared(self, path: Path) -> None:
        """Bring a file other machines share through the cache (a source's dependency record) to
        ``path`` under ``root``: a local cache is not shared, so there is nothing to do."""

    def push_shared(self, path: Path) -> None:
        """Share the file at ``path`` under ``root`` with other machines: nothing to do for a local cache."""

    def save_memo(self) -> str | None:
        """Persist the digest memo; returns why it could not be written (it is only a speed-up)."""
        if not self.memo.dirty:
            return None
        try:
            self.memo.save()
        except OSError as e:
            return f"{self.memo.path}: {e.strerror or e}"
        return None

    # -- reading ------------------------------------------------------------------------

    def peek(self, key: str) -> dict | None:
        """meta.json of ``key`` without verifying the files (cheap, for ``plan``)."""
        try:
            meta = json.loads((self.entry_dir(key) / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        return meta if isinstance(meta, dict) else None

    def lookup(self, key: str) -> Entry | None:
        """The verified entry of ``key``, or None.

        A corrupt entry (bad meta, a missing, extra, truncated or altered file) is moved
        aside and deleted with a warning, and None is returned: it will be rebuilt. Callers
        that may build should hold ``lock(key)`` around lookup + build + publish.
        """
        path = self.entry_dir(key)
        if not path.is_dir():
            self._clear_blocker(key, path)
            return None
        meta, problem = self._verify(key, path)
        if problem is not None:
            target = meta.get("target_id") if isinstance(meta, dict) else None
            what = f"cache entry {key[:12]}" + (f" (target {target})" if target else "")
            self._warn(f"{what} is corrupt ({problem}); it will be rebuilt")
            try:
                self._discard_entry_dir(key, path, prefix="corrupt")
            except (CacheError, OSError) as e:
                # A read-only store cannot drop it; the miss alone is still correct.
                self._warn(f"cannot remove corrupt cache entry {path}: {e}")
            self._save_memo()
            return None
        assert meta is not None
        self._save_memo()
        self.touch(key)
        return Entry(key=key, path=path, meta=meta)

    def _clear_blocker(self, key: str, path: Path) -> None:
        """A file (or link) standing where the entry's folder or its shard must be: set it aside.

        Left in place it would make every later publish of ``key`` fail; moved aside (then
        deleted) the entry is simply a miss and is rebuilt.
        """
        for p in (path.parent, path):
            if not (p.is_symlink() or (p.exists() and not p.is_dir())):
                continue
            self._warn(f"cache entry {key[:12]} is broken ({p} is a file, not a folder); "
                       f"it was set aside and will be rebuilt")
            try:
                aside = self._ensure_dir(self.tmp_dir) / f"corrupt-{key}-{secrets.token_hex(4)}"
                os.rename(p, aside)
                aside.unlink()
            except FileNotFoundError:
                pass  # another process set it aside first
            except (CacheError, OSError) as e:
                self._warn(f"cannot set aside {p} ({e}); remove it by hand")
            return

    def verify(self, key: str) -> str | None:
        """Re-hash every file of ``key``'s entry, trusting no memoized digest; returns why it is bad."""
        path = self.entry_dir(key)
        if not path.is_dir():
            return "not a folder"
        _meta, problem = self._verify(key, path, rehash=True)
        return problem

    def _verify(self, key: str, path: Path, rehash: bool = False) -> tuple[dict | None, str | None]:
        """(meta, None) if the entry at ``path`` can be trusted, else (meta or None, why not)."""
        meta_path = path / "meta.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None, "meta.json missing"
        except (OSError, ValueError, UnicodeDecodeError) as e:
            return None, f"meta.json unreadable: {e}"
        if not isinstance(meta, dict):
            return None, "meta.json is not an object"
        if meta.get("schema") != KEY_SCHEMA_VERSION:
            return meta, f"schema {meta.get('schema')!r} != {KEY_SCHEMA_VERSION}"
        if meta.get("key") != key:
            return meta, f"meta.json is for key {str(meta.get('key'))[:12]}"
        files = meta.get("files")
        if not isinstance(files, dict) or not isinstance(meta.get("digest"), str):
            return meta, "meta.json lacks files or digest"
        out = path / "out"
        if not out.is_dir():
            return meta, "out/ missing"
        present = {rel: st for rel, st in walk_tree(out)}
        for rel in sorted(present):
            if rel not in files:
                return meta, f"out/{rel}: unexpected file"
        digests: dict[str, str] = {}
        for rel in sorted(files):
            want = files[rel]
            st = present.get(rel)
            if st is None:
                return meta, f"out/{rel}: missing"
            if not stat.S_ISREG(st.st_mode):
                return meta, f"out/{rel}: not a regular file"
            if not isinstance(want, dict):
                return meta, f"out/{rel}: bad record in meta.json"
            if st.st_size != want.get("size"):
                return meta, f"out/{rel}: size {st.st_size} != {want.get('size')}"
            try:
                sha = self.memo.digest(out / rel, trust=not rehash)
            except OSError as e:
                return meta, f"out/{rel}: unreadable ({e.strerror})"
            if sha != want.get("sha256"):
                return meta, f"out/{rel}: sha256 {sha[:12]} != {str(want.get('sha256'))[:12]}"
            digests[rel] = sha
        if tree_digest(digests) != meta["digest"]:
            return meta, "tree digest does not match meta.json"
        return meta, None

    def _save_memo(self) -> None:
        """Persist new digests so the next run skips re-hashing; a failure only costs speed."""
        if self.memo.dirty:
            with contextlib.suppress(OSError):
                self.memo.save()

    # -- locking ------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float | None = None, *, what: str = "",
             on_wait: Callable[[dict], None] | None = None) -> Iterator[None]:
        """Hold the exclusive per-key lock (``flock`` on ``locks/<key>.lock``).

        Blocks until acquired; with ``timeout`` (seconds) raises CacheError when it expires.
        The lock dies with its process, so a killed build never leaves a stale lock. When the
        lock is taken, ``on_wait`` is called once (before blocking) with ``lock_holder(key)``;
        the holder writes its pid, command and ``what`` (the target) into the lock file.
        """
        _check_key(key)
        lock_path = self._ensure_dir(self.locks_dir) / f"{key}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait(self.lock_holder(key))
                _wait_for_flock(fd, timeout, f"cache entry {key[:12]} ({lock_path})")
            _write_holder(fd, what)
            yield
        finally:
            # Closing the descriptor releases the flock.
            os.close(fd)

    def lock_holder(self, key: str) -> dict:
        """Who holds the lock of ``key``: ``{"pid", "command", "what", "since", "lock"}`` as far as known.

        The pid comes from the kernel's lock table (``/proc/locks``) where there is one; the
        rest from what the holder wrote into the lock file, if that was this same process.
        """
        lock_path = self.locks_dir / f"{key}.lock"
        info: dict = {"lock": str(lock_path)}
        try:
            written = json.loads(lock_path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError, UnicodeDecodeError):
            written = {}
        pid = _flock_owner(lock_path)
        if isinstance(written, dict) and (pid is None or written.get("pid") == pid):
            info.update({k: written[k] for k in ("pid", "command", "what", "since") if k in written})
        if pid is not None:
            info["pid"] = pid
        if "pid" in info and not _pid_exists(int(info["pid"])):
            info.pop("pid")
        return info

    @contextlib.contextmanager
    def try_lock(self, key: str) -> Iterator[bool]:
        """Take the per-key lock if it is free; yields whether it was taken (never blocks)."""
        _check_key(key)
        lock_path = self._ensure_dir(self.locks_dir) / f"{key}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
            else:
                yield True
        finally:
            os.close(fd)

    def is_locked(self, key: str) -> bool:
        """Whether some process holds the lock of ``key`` now (creates nothing)."""
        _check_key(key)
        try:
            fd = os.open(self.locks_dir / f"{key}.lock", os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    # -- writing ------------------------------------------------------------------------

    def staging(self, key: str) -> Path:
        """A fresh staging dir ``tmp/<key[:16]>-<pid>-<random>/`` with an empty ``out/``."""
        _check_key(key)
        tmp = self._ensure_dir(self.tmp_dir)
        path = tmp / f"{key[:16]}-{os.getpid()}-{secrets.token_hex(4)}"
        with writing(path, "a staging folder"):
            path.mkdir()
            (path / "out").mkdir()
        return path

    def publish(
        self, key: str, staging: Path, *, payload: dict, result: dict, info: dict, replace: bool = False
    ) -> Entry:
        """Commit ``staging`` as the entry of ``key`` and return it.

        Writes meta.json, fsyncs everything, then renames staging into place: the rename is
        the commit point, so a kill before it leaves only a staging dir no lookup trusts.
        If another process published the key first, staging is discarded and the existing
        entry is returned. With ``replace`` (a provisional measurement measured again; the
        caller holds ``lock(key)``) the existing entry is moved aside in one rename and
        staging takes its place: a reader sees the old entry, none, or the new one.
        """
        staging = Path(staging)
        final = self.entry_dir(key)
        clash = RESERVED_META & set(info)
        if clash:
            raise ValueError(f"publish info may not set {sorted(clash)}: the store owns them")
        out = staging / "out"
        if not out.is_dir():
            raise CacheError(f"cannot publish {key[:12]}: {out} does not exist")
        odd = [rel for rel, st in walk_tree(out) if not stat.S_ISREG(st.st_mode)]
        if odd:
            raise CacheError(
                f"cannot publish {key[:12]}: {out} holds non-regular files {odd[:5]}; "
                f"steps must write plain files (a symlink would point outside the cache)"
            )
        files = directory_files(out)
        meta = {
            "schema": KEY_SCHEMA_VERSION,
            "key": key,
            "payload": payload,
            "files": files,
            "digest": tree_digest({rel: f["sha256"] for rel, f in files.items()}),
            "result": result,
            **info,
        }
        meta_path = staging / "meta.json"
        target = f" (target {info['target_id']})" if info.get("target_id") else ""
        with writing(meta_path, f"cache entry {key[:12]}{target}"):
            # NaN/inf are allowed here (metrics can be NaN); they never enter a key.
            meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
            _fsync_tree(staging)

        self._clear_blocker(key, final)
        shard = final.parent
        if not shard.is_dir():
            self._ensure_dir(shard)
            _fsync_path(shard.parent, directory=True)
        for _ in range(3):
            if replace and final.exists():
                self._discard_entry_dir(key, final, prefix="replaced")
            if final.exists():
                existing = self.lookup(key)
                if existing is not None:
                    self.discard(staging)
                    return existing
                # The existing entry was corrupt and has just been removed: take its place.
            try:
                os.rename(staging, final)
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    continue  # another process won between our check and our rename
                raise CacheError(f"cannot publish cache entry {key[:12]} to {final}: {e}") from e
            _fsync_path(shard, directory=True)
            return Entry(key=key, path=final, meta=meta)
        raise CacheError(f"cannot publish cache entry {key[:12]}: {final} keeps changing")

    def discard(self, staging: Path) -> None:
        """Delete a staging dir (a failed or superseded build)."""
        remove_tree(Path(staging))

    def _discard_entry_dir(self, key: str, path: Path, *, prefix: str) -> None:
        """Move an entry aside in one rename (so it vanishes atomically), then delete it."""
        aside = self._ensure_dir(self.tmp_dir) / f"{prefix}-{key}-{secrets.token_hex(4)}"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return  # someone else removed it first
        remove_tree(aside)

    # -- maintenance --------------------------------------------------------------------

    def object_dirs(self) -> Iterator[tuple[str, Path]]:
        """(key, dir) of every committed object dir, parseable or not."""
        if not self.objects_dir.is_dir():
            return
        for shard in sorted(self.objects_dir.iterdir()):
            if not shard.is_dir():
                continue
            for path in sorted(shard.iterdir()):
                if path.is_dir() and _KEY_RE.fullmatch(path.name):
                    yield path.name, path

    def entries(self) -> Iterator[Entry]:
        """Every entry whose meta.json parses (not verified; see ``lookup``)."""
        for key, path in self.object_dirs():
            meta = self.peek(key)
            if meta is not None:
                yield Entry(key=key, path=path, meta=meta)

    def entry_size(self, entry: Entry) -> int:
        """Bytes on disk of the entry dir (file sizes; hardlinked copies are not subtracted)."""
        total = 0
        for _rel, st in walk_tree(entry.path):
            total += st.st_size
        return total

    def last_used(self, entry: Entry) -> float:
        """When the entry was last looked up (mtime of its meta.json), 0.0 if unknown."""
        try:
            return (entry.path / "meta.json").stat().st_mtime
        except OSError:
            return 0.0

    def touch(self, key: str) -> None:
        """Record that ``key`` was just used (gc evicts least recently used first)."""
        with contextlib.suppress(OSError):
            os.utime(self.entry_dir(key) / "meta.json")

    def remove(self, key: str) -> None:
        """Delete the entry of ``key`` if present (atomically disappears, then is deleted)."""
        path = self.entry_dir(key)
        if path.exists():
            self._discard_entry_dir(key, path, prefix="removed")

    def materialize(self, entry: Entry, dest: Path) -> None:
        """Make ``dest`` a folder holding exactly the entry's files, hardlinked (else copied).

        Files already linked to the entry are left alone; anything else at ``dest`` is
        replaced. Each file is swapped in with ``os.replace`` so readers never see half a file.
        """
        dest = Path(dest)
        if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
            dest.unlink()
        dest.mkdir(parents=True, exist_ok=True)
        wanted = {rel: entry.out / rel for rel, _st in walk_tree(entry.out)}
        # Remove what the entry does not have (stale files from an older build).
        for rel, _st in walk_tree(dest):
            if rel not in wanted:
                (dest / rel).unlink()
        for rel, src in wanted.items():
            target = dest / rel
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            self._place(src, target)
        _prune_empty_dirs(dest)

    @staticmethod
    def _place(src: Path, target: Path) -> None:
        """Hardlink ``src`` at ``target`` unless it already is that file."""
        with contextlib.suppress(OSError):
            if not target.is_symlink() and os.path.samefile(src, target):
                return
        parent = target.parent
        _make_parent_dirs(parent)
        tmp = parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)  # another filesystem, or links not supported
        os.replace(tmp, target)


def _wait_for_flock(fd: int, timeout: float | None, what: str) -> None:
    """Block until the flock on ``fd`` is ours; with ``timeout``, raise CacheError when it expires."""
    if timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise CacheError(f"timed out after {timeout:g}s waiting for the lock on {what}; "
                                 f"another navbuild process is building it") from None
            time.sleep(_LOCK_POLL_S)


def _write_holder(fd: int, what: str) -> None:
    """Say in the lock file who holds it, for a process that has to wait (best effort)."""
    argv = list(sys.argv) or ["python"]
    if argv[0].endswith(os.path.join("navbuild", "__main__.py")) or Path(argv[0]).name == "navbuild":
        argv[0] = "navbuild"  # `python -m navbuild ...` and the console script read the same
    data = json.dumps({"pid": os.getpid(), "command": " ".join(argv)[:400], "what": what,
                       "since": time.time()}).encode("utf-8")
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)


def _flock_owner(path: Path) -> int | None:
    """The pid holding a ``flock`` on ``path``, from Linux's ``/proc/locks`` (None elsewhere or if free)."""
    try:
        st = os.stat(path)
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 00:2f:1234 0 EOF"; blocked waiters carry "->" and are skipped
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == ident:
            with contextlib.suppress(ValueError):
                return int(fields[4])
    return None


def _pid_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _make_parent_dirs(path: Path) -> None:
    """``mkdir -p`` that replaces a file standing where a directory must be (older layout).

    Only called below a ``dest`` that is a directory, so the walk up stops there at the latest.
    """
    p = path
    while not p.is_dir():
        if p.is_symlink() or p.exists():
            p.unlink()
            break
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)


def _prune_empty_dirs(root: Path) -> None:
    """Remove empty folders left under ``root`` after stale files were deleted."""
    for dirpath, _dirnames, _filenames in os.walk(root, topdown=False):
        p = Path(dirpath)
        if p != root:
            with contextlib.suppress(OSError):
                p.rmdir()


def _check_key(key: str) -> None:
    """Refuse keys that are not safe file names (they become paths in the store)."""
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ValueError(f"invalid cache key {key!r}: expected a hex digest")
