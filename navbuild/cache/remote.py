"""A cache on an object store (any fsspec URL): entries published content first and record last,
every download digest-checked, one builder per key through a lease, read through a local Store.

Layout under the URL: ``blobs/<sha256>`` (file contents, content-addressed, so identical files of
several entries are stored once), ``entries/<key>.json`` (the record: the entry's meta.json plus
``side_files``, the digests of its log and reproduce script), ``leases/<key>`` (who builds ``key``
now, until when), ``probes/`` (a write test, deleted at once). An entry exists once its record
exists: the record is written after every blob it names, so a reader never sees a partial entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from navbuild.cache.digest import sha256_file, tree_digest, walk_tree
from navbuild.cache.keys import KEY_SCHEMA_VERSION
from navbuild.cache.store import RESERVED_META, Entry, Store
from navbuild.errors import CacheError

#: Where the local cache of a remote store's entries lives, when set (else LOCAL_CACHE_DEFAULT/<sha of url>).
LOCAL_CACHE_ENV = "NAVBUILD_LOCAL_CACHE"
LOCAL_CACHE_DEFAULT = Path("~/.cache/navbuild/remote")

#: A lease not renewed for this long belongs to a builder that died: another one may take over.
LEASE_TTL_S = 60.0
#: How often a builder renews its lease, and how often a waiting one looks again.
LEASE_RENEW_S = 15.0
_WAIT_POLL_S = 0.5

_SHA_RE = re.compile(r"[0-9a-f]{64}")
#: Files of an entry beside out/ that travel with it (the log, the reproduce script, the job).
_SIDE_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.-]{0,99}")
_RECORD_ONLY = ("side_files",)


def default_local_cache(url: str) -> Path:
    """``~/.cache/navbuild/remote/<sha256 of url>[:16]``: one local cache per remote store."""
    return (LOCAL_CACHE_DEFAULT / hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]).expanduser()


def record_problem(key: str, record: Any) -> str | None:
    """Why ``record`` cannot be the remote entry of ``key`` (None if it can).

    Checks what a downloader relies on before it fetches anything: schema, key, a digest per
    file that is a SHA-256, relative paths that stay inside the entry, and a tree digest that
    matches the files' digests.
    """
    if not isinstance(record, dict):
        return "the record is not a JSON object"
    if record.get("schema") != KEY_SCHEMA_VERSION:
        return f"schema {record.get('schema')!r} != {KEY_SCHEMA_VERSION}"
    if record.get("key") != key:
        return f"the record is for key {str(record.get('key'))[:12]}"
    files, side = record.get("files"), record.get("side_files", {})
    if not isinstance(files, dict) or not isinstance(side, dict) or not isinstance(record.get("digest"), str):
        return "the record lacks files, side_files or digest"
    for rel, facts in files.items():
        parts = rel.split("/") if isinstance(rel, str) else [""]
        if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
            return f"file {rel!r}: not a relative path inside the entry"
        if (why := _facts_problem(facts)) is not None:
            return f"out/{rel}: {why}"
    for name, facts in side.items():
        if not isinstance(name, str) or not _SIDE_RE.fullmatch(name) or name == "meta.json":
            return f"side file {name!r}: not a plain file name"
        if (why := _facts_problem(facts)) is not None:
            return f"{name}: {why}"
    if tree_digest({rel: f["sha256"] for rel, f in files.items()}) != record["digest"]:
        return "the tree digest does not match the files' digests"
    return None


def _facts_problem(facts: Any) -> str | None:
    """Why ``{"sha256", "size"}`` of one file is malformed."""
    if not isinstance(facts, dict) or not _SHA_RE.fullmatch(str(facts.get("sha256"))):
        return "no sha256 in the record"
    size = facts.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return "no size in the record"
    return None


def file_problem(path: Path, facts: dict) -> str | None:
    """Why the downloaded file at ``path`` is not the one ``facts`` names (size, then SHA-256)."""
    try:
        size = path.stat().st_size
    except OSError as e:
        return f"unreadable ({e.strerror})"
    if size != facts["size"]:
        return f"size {size} != {facts['size']}"
    sha = sha256_file(path)
    if sha != facts["sha256"]:
        return f"sha256 {sha[:12]} != {facts['sha256'][:12]}"
    return None


class RemoteStore:
    """The store at ``url`` (``s3://bucket/prefix``, ``gs://...``, ``file:///...``), read through
    the local Store at ``local`` (default: :func:`default_local_cache`).

    It offers what the executor, the planner and gc use of a Store. A hit in the local cache is
    served from it; a miss there reads the remote record and downloads and checks the entry into
    the local cache. A publish commits locally, then uploads the blobs, then the record. The build
    records, the digest memo and staging folders are the local cache's; gc prunes the local cache.
    Pickled as its URL (and an explicit local folder), so it reopens in a Ray task on another node.
    """

    def __init__(self, url: str, local: Path | None = None) -> None:
        self.url = url.rstrip("/")
        self._local_setting = Path(local) if local is not None else None
        self.local = Store(self._local_setting or default_local_cache(self.url))
        #: the local store's list: the executor drains one list for both
        self.warnings = self.local.warnings
        self._fs: Any = None
        self._base = ""
        self._writable: str | None | bool = True  # True: not probed yet; None: writable; str: why not
        self._broken: set[str] = set()  # keys whose remote entry failed its check in this process
        self._bad_blobs: set[str] = set()  # blobs found not to hold their digest's bytes
        self.host = socket.gethostname()

    def __reduce__(self) -> tuple:
        return (type(self), (self.url, self._local_setting))

    def __getattr__(self, name: str) -> Any:
        # Everything else (root, memo, staging, discard, materialize, save_memo, entries, touch, ...)
        # is the local cache's: gc, records and the build folder act on it.
        if name.startswith("__") or name == "local":
            raise AttributeError(name)
        return getattr(self.local, name)

    # -- the object store -----------------------------------------------------------------

    @property
    def fs(self) -> Any:
        """The fsspec file system (fsspec and its backend imported on first use)."""
        if self._fs is None:
            import fsspec

            try:
                self._fs, self._base = fsspec.core.url_to_fs(self.url)
            except (ImportError, ValueError) as e:
                raise CacheError(f"cache.dir {self.url}: cannot open it with fsspec ({e}); install the "
                                 f"backend it names (pip install 'navbuild[cluster]' for s3://)") from None
            self._base = self._base.rstrip("/")
            self._check_reachable()
        return self._fs

    def _path(self, *parts: str) -> str:
        self.fs  # noqa: B018 (opens the file system, which sets _base)
        return "/".join([self._base, *parts])

    def record_url(self, key: str) -> str:
        """Where the record of ``key`` is (``<url>/entries/<key>.json``)."""
        return f"{self.url}/entries/{key}.json"

    def _check_reachable(self) -> None:
        """The bucket (or folder) answers with these credentials, or one CacheError saying what to set."""
        fs, base = self._fs, self._base
        if {"file", "memory"} & set(_protocols(fs)):
            return  # a folder is created on the first write
        bucket = base.split("/", 1)[0]
        with self._translate(f"listing bucket {bucket}"):
            try:
                fs.ls(bucket, detail=False, refresh=True)
            except FileNotFoundError:
                raise CacheError(self._explain(f"the bucket {bucket} does not exist",
                                               f"create it (aws s3 mb s3://{bucket}) or fix cache.dir")) from None
            finally:
                fs.invalidate_cache()  # other builders write here: never answer from a listing

    def _explain(self, what: str, fix: str) -> str:
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        where = f" at {endpoint}" if endpoint else ""
        return f"cache {self.url}{where}: {what}; {fix}"

    @contextlib.contextmanager
    def _translate(self, doing: str) -> Iterator[None]:
        """Turn the object store's errors (credentials, access, endpoint) into one CacheError."""
        try:
            yield
        except CacheError:
            raise
        except PermissionError as e:
            raise CacheError(self._explain(
                f"access denied {doing} ({e})",
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) of a user that may read "
                "and write that bucket")) from None
        except Exception as e:  # botocore's errors are not OSErrors; name them without importing it
            name = type(e).__name__
            if name in ("NoCredentialsError", "PartialCredentialsError", "InvalidAccessKeyId",
                        "SignatureDoesNotMatch"):
                raise CacheError(self._explain(
                    f"no valid credentials {doing} ({e})",
                    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and AWS_ENDPOINT_URL "
                    "for a store that is not AWS")) from None
            if name in ("EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError") or isinstance(
                    e, ConnectionError):
                raise CacheError(self._explain(
                    f"cannot reach the object store {doing} ({e})",
                    "set AWS_ENDPOINT_URL to the store's address (e.g. http://127.0.0.1:8333)")) from None
            if isinstance(e, FileNotFoundError):
                raise
            if isinstance(e, OSError) or name.endswith("Error"):
                raise CacheError(self._explain(f"{doing} failed ({name}: {e})",
                                               "check the store, AWS_ENDPOINT_URL and the credentials")) from None
            raise

    def _read_record(self, key: str) -> dict | None:
        """The remote record of ``key`` as stored (None if there is none or it is not JSON)."""
        with self._translate(f"reading {self.record_url(key)}"):
            try:
                data = self.fs.cat_file(self._path("entries", f"{key}.json"))
            except FileNotFoundError:
                return None
        try:
            record = json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            self._warn_broken(key, None, "its record is not JSON")
            return None
        return record if isinstance(record, dict) else None

    def _exists(self, *parts: str) -> bool:
        with self._translate(f"looking at {self.url}/{'/'.join(parts)}"):
            return bool(self.fs.exists(self._path(*parts)))

    def _create(self, path: str, data: bytes) -> bool:
        """Write ``data`` at ``path`` unless something is there; whether it was written.

        S3 gets a conditional PUT (``If-None-Match: *``), so of two writers exactly one wins;
        a local folder an exclusive create. Elsewhere fsspec checks, then writes (not atomic).
        """
        fs = self.fs
        if "file" in _protocols(fs):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        try:
            fs.pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
        except OSError:
            # s3fs reports S3's 412 PreconditionFailed as a plain OSError: the object is there
            if fs.exists(path):
                return False
            raise
        return True

    def _put_bytes(self, path: str, data: bytes) -> None:
        """Write (or overwrite) ``data`` at ``path`` whole (an object PUT is atomic; a folder renames)."""
        if "file" in _protocols(self.fs):
            _replace_local(Path(path), lambda tmp: tmp.write_bytes(data))
        else:
            self.fs.pipe_file(path, data)

    def _put_file(self, src: Path, path: str) -> None:
        """Upload the file ``src`` to ``path`` whole."""
        if "file" in _protocols(self.fs):
            _replace_local(Path(path), lambda tmp: shutil.copyfile(src, tmp))
        else:
            self.fs.put_file(str(src), path)

    def _warn_broken(self, key: str, record: dict | None, why: str) -> None:
        self._broken.add(key)
        target = record.get("target_id") if isinstance(record, dict) else None
        what = f"remote cache entry {key[:12]}" + (f" (target {target})" if target else "")
        self.local._warn(f"{what} in {self.url} is refused: {why}; it will be rebuilt and published again")

    # -- reading ----------------------------------------------------------------------------

    def peek(self, key: str) -> dict | None:
        """The entry's meta without downloading it: the local one, else the remote record (for ``plan``)."""
        meta = self.local.peek(key)
        if meta is not None:
            return meta
        record = self._read_record(key)
        if record is None or record_problem(key, record) is not None:
            return None
        return record

    def lookup(self, key: str) -> Entry | None:
        """The verified entry of ``key``: from the local cache, else downloaded, checked and kept there.

        A remote entry whose record is malformed or whose files do not have the record's digests
        (tampered, partial, missing) is refused with a warning and is a miss: the target is rebuilt
        and its entry published again over the broken one.
        """
        entry = self.local.lookup(key)
        if entry is not None:
            self._share(entry)
            return entry
        if key in self._broken:
            return None  # refused once in this process: it is being rebuilt
        record = self._read_record(key)
        if record is None:
            return None
        return self._fetch(key, record)

    def _fetch(self, key: str, record: dict) -> Entry | None:
        """Download the entry ``record`` names into local staging, check every file, publish it locally."""
        if (why := record_problem(key, record)) is not None:
            self._warn_broken(key, record, why)
            return None
        staging = self.local.staging(key)
        try:
            wanted = [(f"out/{rel}", facts) for rel, facts in sorted(record["files"].items())]
            wanted += sorted(record.get("side_files", {}).items())
            for rel, facts in wanted:
                dest = staging / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                blob = self._path("blobs", facts["sha256"])
                with self._translate(f"downloading {self.url}/blobs/{facts['sha256']}"):
                    try:
                        self.fs.get_file(blob, str(dest))
                    except FileNotFoundError:
                        self._warn_broken(key, record, f"{rel}: its blob {facts['sha256'][:12]} is missing")
                        return None
                if (why := file_problem(dest, facts)) is not None:
                    self._bad_blobs.add(facts["sha256"])
                    self._warn_broken(key, record, f"{rel}: {why} (blob {self.url}/blobs/{facts['sha256']})")
                    return None
            info = {k: v for k, v in record.items() if k not in RESERVED_META and k not in _RECORD_ONLY}
            entry = self.local.publish(key, staging, payload=record.get("payload", {}),
                                       result=record.get("result", {}), info=info)
        finally:
            self.local.discard(staging)  # a no-op once publish renamed it into place
        if entry.digest != record["digest"]:  # another local process published a different entry first
            self._warn_broken(key, record, "the local cache holds another entry for this key")
            return None
        return entry

    # -- writing ----------------------------------------------------------------------------

    def unwritable_reason(self) -> str | None:
        """Why nothing can be added (the local cache's reason, if any); a remote store that cannot
        be written raises one CacheError saying what to set (checked once, with a probe object)."""
        if (why := self.local.unwritable_reason()) is not None:
            return why
        if self._writable is True:
            self._writable = self._probe()
        if isinstance(self._writable, str):
            raise CacheError(self._writable)
        return None

    def _probe(self) -> str | None:
        """Write and delete a small object; why that failed (None if it worked)."""
        path = self._path("probes", f"{self.host}-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            with self._translate(f"writing a test object to {self.url}/probes/"):
                self._put_bytes(path, b"navbuild write test\n")
                with contextlib.suppress(OSError):
                    self.fs.rm_file(path)
        except CacheError as e:
            return f"{e} (the store can be read but not written: targets it lacks cannot be built into it)"
        return None

    def publish(self, key: str, staging: Path, *, payload: dict, result: dict, info: dict,
                replace: bool = False) -> Entry:
        """Commit ``staging`` locally, then upload its blobs, then its record (last).

        If a sound remote entry of ``key`` appeared meanwhile (a builder elsewhere was first),
        ours is dropped and that one is served: a record is never replaced by different content,
        except with ``replace`` (a measurement taken again) or over an entry found broken.
        """
        overwrite = replace or key in self._broken
        if not overwrite:
            record = self._read_record(key)
            if record is not None:
                entry = self._fetch(key, record)
                if entry is not None:
                    self.local.discard(staging)
                    self.local._warn(f"cache entry {key[:12]} (target {info.get('target_id', '?')}) was "
                                     f"published to {self.url} by another builder first; this build's "
                                     f"copy was dropped")
                    return entry
                overwrite = True  # the remote one is broken: ours replaces it
        entry = self.local.publish(key, staging, payload=payload, result=result, info=info, replace=replace)
        self._upload(entry, overwrite=overwrite)
        return entry

    def _upload(self, entry: Entry, *, overwrite: bool) -> None:
        """Blobs first (those the store lacks or holds corrupt), the record last."""
        files = {f"out/{rel}": facts for rel, facts in entry.meta["files"].items()}
        side = {}
        for rel, st in walk_tree(entry.path):
            if "/" not in rel and rel != "meta.json" and _SIDE_RE.fullmatch(rel):
                side[rel] = {"sha256": sha256_file(entry.path / rel), "size": st.st_size}
        with self._translate(f"uploading cache entry {entry.key[:12]} to {self.url}"):
            for rel, facts in [*files.items(), *side.items()]:
                sha = facts["sha256"]
                if sha in self._bad_blobs or not self.fs.exists(self._path("blobs", sha)):
                    self._put_file(entry.path / rel, self._path("blobs", sha))
                    self._bad_blobs.discard(sha)
            data = json.dumps({**entry.meta, "side_files": side}, indent=1, sort_keys=True).encode("utf-8")
            path = self._path("entries", f"{entry.key}.json")
            if overwrite:
                self._put_bytes(path, data)
                self._broken.discard(entry.key)
            elif not self._create(path, data):
                theirs = self._read_record(entry.key)
                if theirs is None or theirs.get("digest") != entry.digest:
                    self.local._warn(f"cache entry {entry.key[:12]}: {self.url} already holds another entry "
                                     f"for this key (published meanwhile); it was kept")

    def _share(self, entry: Entry) -> None:
        """A local hit the remote store lacks is uploaded, if it may be written (one HEAD per hit)."""
        if self._exists("entries", f"{entry.key}.json"):
            return
        if self._writable is True:
            self._writable = self._probe()
        if self._writable is None:
            self._upload(entry, overwrite=False)

    # -- files beside the entries ----------------------------------------------------------

    def _shared_path(self, path: Path) -> str:
        rel = Path(path).relative_to(self.local.root).as_posix()
        return self._path(*rel.split("/"))

    def pull_shared(self, path: Path) -> None:
        """Download a shared file (a torch source's dependency record, ``sources/...``) that this
        machine lacks, so that ``plan`` on a new machine computes the same keys (its digests are
        checked against the files here before any key trusts it)."""
        if Path(path).exists():
            return
        with self._translate(f"reading {self.url}/{Path(path).relative_to(self.local.root).as_posix()}"):
            try:
                data = self.fs.cat_file(self._shared_path(path))
            except FileNotFoundError:
                return
        with contextlib.suppress(OSError):  # a read-only local cache: discovered again instead
            _replace_local(Path(path), lambda tmp: tmp.write_bytes(data))

    def push_shared(self, path: Path) -> None:
        """Upload a shared file; a store that cannot be written only costs others a rediscovery."""
        try:
            with self._translate(f"uploading {path}"):
                self._put_file(Path(path), self._shared_path(path))
        except CacheError as e:
            self.local._warn(f"could not share {Path(path).name} ({e})")

    # -- one builder per key ------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float | None = None, *, what: str = "",
             on_wait: Callable[[dict], None] | None = None) -> Iterator[None]:
        """Hold the local flock of ``key``, then its remote lease (``leases/<key>``, renewed while held).

        A builder that finds the lease taken waits until the record appears (then it holds no
        lease: the lookup that follows finds the entry), the lease is released, or it expires
        (its holder died: this one takes over). With ``timeout`` it raises CacheError when that expires.
        """
        with self.local.lock(key, timeout, what=what, on_wait=on_wait):
            lease = self._take_lease(key, timeout, what, on_wait)
            if lease is None:
                yield
                return
            stop = threading.Event()
            renewer = threading.Thread(target=self._renew, args=(lease, stop), daemon=True,
                                       name=f"navbuild-lease-{key[:8]}")
            renewer.start()
            try:
                yield
            finally:
                stop.set()
                renewer.join()
                with contextlib.suppress(Exception):
                    self.fs.rm_file(lease["path"])

    def _lease(self, key: str, what: str) -> dict:
        argv = " ".join(sys.argv)[:300]
        return {"key": key, "holder": secrets.token_hex(8), "host": self.host, "pid": os.getpid(),
                "command": argv, "what": what, "since": time.time(), "expires": time.time() + LEASE_TTL_S}

    def _take_lease(self, key: str, timeout: float | None, what: str,
                    on_wait: Callable[[dict], None] | None) -> dict | None:
        """The lease of ``key`` once taken (with its ``path``), or None when the entry appeared meanwhile."""
        path = self._path("leases", key)
        deadline = None if timeout is None else time.monotonic() + timeout
        told = False
        while True:
            lease = self._lease(key, what)
            with self._translate(f"taking the lease {self.url}/leases/{key}"):
                if self._create(path, json.dumps(lease).encode("utf-8")):
                    return {**lease, "path": path}
                if self.fs.exists(self._path("entries", f"{key}.json")):
                    return None
                try:
                    held = json.loads(self.fs.cat_file(path).decode("utf-8"))
                except (FileNotFoundError, ValueError, UnicodeDecodeError):
                    continue  # released (or being written) just now: try again
                if not isinstance(held, dict) or float(held.get("expires", 0)) < time.time():
                    # its holder stopped renewing it (killed): take over
                    with contextlib.suppress(FileNotFoundError):
                        self.fs.rm_file(path)
                    continue
            if not told and on_wait is not None:
                told = True
                on_wait({"pid": held.get("pid"), "command": f"{held.get('command', '')} on {held.get('host')}",
                         "what": held.get("what", ""), "since": held.get("since"), "lock": f"{self.url}/leases/{key}"})
            if deadline is not None and time.monotonic() >= deadline:
                raise CacheError(f"timed out after {timeout:g}s waiting for the lease {self.url}/leases/{key}; "
                                 f"{held.get('host')} (pid {held.get('pid')}) is building it")
            time.sleep(_WAIT_POLL_S)

    def _renew(self, lease: dict, stop: threading.Event) -> None:
        """Push the lease's expiry forward until ``stop`` (a failed renewal only risks a takeover)."""
        while not stop.wait(LEASE_RENEW_S):
            body = {k: v for k, v in lease.items() if k != "path"}
            body["expires"] = time.time() + LEASE_TTL_S
            with contextlib.suppress(Exception):
                self._put_bytes(lease["path"], json.dumps(body).encode("utf-8"))

    def remote_records(self) -> list[str]:
        """Keys of every record in the store (a listing: for tests and maintenance, not the build)."""
        with self._translate(f"listing {self.url}/entries"):
            try:
                names = self.fs.ls(self._path("entries"), detail=False, refresh=True)
            except FileNotFoundError:
                return []
        return sorted(Path(n).name[:-len(".json")] for n in names if n.endswith(".json"))


def _replace_local(target: Path, write: Callable[[Path], Any]) -> None:
    """Write a file of a file:// store through a temp file and a rename: readers see all of it or none."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = getattr(fs, "protocol", ())
    return (proto,) if isinstance(proto, str) else tuple(proto)
