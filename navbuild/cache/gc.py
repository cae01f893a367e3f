"""Cache garbage collection: stale staging, unreferenced, old and least-recently-used entries."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from navbuild.cache.records import Records
from navbuild.cache.store import Entry, Store, remove_tree

#: Staging and temp files untouched this long belong to a dead process (a live build writes
#: its log continuously and keeps its pid alive).
STALE_STAGING_S = 3600.0

_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_AGE_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)
_AGE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", re.IGNORECASE)


@dataclass
class GcReport:
    """What a collection removed (or, with ``dry_run``, would remove) and what it kept."""

    removed: list[tuple[str, int, str]] = field(default_factory=list)  # (key, bytes, reason)
    freed_bytes: int = 0
    kept_entries: int = 0
    kept_bytes: int = 0
    staging_removed: int = 0
    dry_run: bool = False
    verified: int = 0  # entries re-hashed by ``verify`` (0 when not asked)
    memo_wrong: list[str] = field(default_factory=list)  # files the memo held a wrong digest for


def parse_size(text: str | int) -> int:
    """Bytes from ``"1024"``, ``"500M"``, ``"2G"``, ``"1.5GiB"`` (binary units K, M, G, T)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"invalid size {text}: must be >= 0")
        return text
    m = _SIZE_RE.fullmatch(str(text))
    if m is None:
        raise ValueError(
            f"invalid size {text!r}: expected a number with an optional unit K, M, G or T "
            f"(e.g. 1024, 500M, 2G)"
        )
    unit = m.group(2).lower()
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


def parse_age(text: str | float) -> float:
    """Seconds from `"45s"`, `"90m"`, `"12h"`, `"30d"` or `"2w"`; bare numbers are seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"invalid age {text}: must be >= 0")
        return float(text)
    m = _AGE_RE.fullmatch(str(text))
    if m is None:
        raise ValueError(
            f"invalid age {text!r}: expected a number with a unit s, m, h, d or w "
            f"(e.g. 45s, 90m, 12h, 30d)"
        )
    return float(m.group(1)) * _AGE_UNITS[m.group(2).lower()]


def _format_age(seconds: float) -> str:
    """Short human age for reasons (``3d``, ``5h``, ``12m``, ``40s``)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _newest_mtime(path: Path) -> float:
    """Latest mtime of ``path`` or anything below it: a live build writes deep inside staging."""
    newest = 0.0
    try:
        newest = path.lstat().st_mtime
    except OSError:
        return 0.0
    if path.is_dir() and not path.is_symlink():
        for dirpath, dirnames, filenames in os.walk(path):
            for name in (*dirnames, *filenames):
                try:
                    newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
                except OSError:
                    pass
    return newest


def _pid_alive(name: str) -> bool:
    """Whether the pid embedded in a staging name (``<key16>-<pid>-<rand>``) is running here."""
    parts = name.split("-")
    if len(parts) < 3 or not parts[-2].isdigit():
        return False
    pid = int(parts[-2])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _collect_stale_tmp(store: Store, records: Records, now: float, dry_run: bool) -> int:
    """Remove staging dirs and temp files nobody has written for an hour; returns the count."""
    candidates: list[Path] = []
    if store.tmp_dir.is_dir():
        candidates += [p for p in store.tmp_dir.iterdir() if not _pid_alive(p.name)]
    # Temp files of interrupted atomic writes (memo, records) are named ".<name>.tmp-...".
    for folder in (store.root, records.root):
        if folder.is_dir():
            candidates += [p for p in folder.glob(".*.tmp-*") if p.is_file()]
    count = 0
    for path in candidates:
        if now - _newest_mtime(path) <= STALE_STAGING_S:
            continue
        count += 1
        if not dry_run:
            if path.is_dir() and not path.is_symlink():
                remove_tree(path)
            else:
                path.unlink(missing_ok=True)
    return count


def collect(
    store: Store,
    records: Records,
    *,
    max_size: int | None = None,
    max_age_s: float | None = None,
    keep_unreferenced: bool = False,
    dry_run: bool = False,
    now: float | None = None,
    verify: bool = False,
) -> GcReport:
    """Collect garbage in ``store``, in this order.

    0. with ``verify``: re-hash every file of every entry, trusting no memoized digest, and
       drop entries whose bytes no longer match (then every other file the memo remembers
       is re-hashed too, so the next build sees a changed input);
    1. staging dirs and temp files untouched for an hour (their writer is gone);
    2. entries no build record refers to (unless ``keep_unreferenced``);
    3. entries not used within ``max_age_s``;
    4. least-recently-used entries while the total exceeds ``max_size`` bytes.

    An entry whose lock another process holds is in use and is always kept. With
    ``dry_run`` nothing is removed and the report says what would be.
    """
    now = time.time() if now is None else now
    report = GcReport(dry_run=dry_run)
    report.staging_removed = _collect_stale_tmp(store, records, now, dry_run)

    referenced = records.referenced_keys() if not keep_unreferenced else set()
    live: list[tuple[Entry, int, float]] = []  # (entry, bytes, last used)
    broken: list[tuple[Entry, int, float]] = []  # object dirs without a readable meta.json
    for key, path in store.object_dirs():
        meta = store.peek(key)
        entry = Entry(key=key, path=path, meta=meta if meta is not None else {})
        item = (entry, store.entry_size(entry), store.last_used(entry))
        (live if meta is not None else broken).append(item)

    def drop(item: tuple[Entry, int, float], reason: str) -> bool:
        entry, size, _used = item
        if dry_run:
            if store.is_locked(entry.key):
                return False
        else:
            with store.try_lock(entry.key) as taken:
                if not taken:
                    return False  # a build is using it right now
                store.remove(entry.key)
        report.removed.append((entry.key, size, reason))
        report.freed_bytes += size
        return True

    if verify:
        good = []
        for item in live:
            problem = store.verify(item[0].key)
            report.verified += 1
            if problem is None or not drop(item, f"corrupt ({problem})"):
                good.append(item)
        live = good
        report.memo_wrong = store.memo.rehash_all(skip=store.objects_dir)  # entries: just done
        if not dry_run:
            store.save_memo()

    kept: list[tuple[Entry, int, float]] = []
    for item in broken:
        # Can never be looked up successfully; lookup would delete it too, just later.
        if not drop(item, "corrupt (no readable meta.json)"):
            kept.append(item)
    for item in live:
        entry, _size, used = item
        if not keep_unreferenced and entry.key not in referenced:
            if drop(item, "unreferenced"):
                continue
        elif max_age_s is not None and now - used > max_age_s:
            if drop(item, f"unused for {_format_age(now - used)}"):
                continue
        kept.append(item)

    if max_size is not None:
        total = sum(size for _e, size, _u in kept)
        survivors = []
        for item in sorted(kept, key=lambda it: (it[2], it[0].key)):  # oldest use first
            if total > max_size and drop(item, "over the size limit"):
                total -= item[1]
            else:
                survivors.append(item)
        kept = survivors

    report.kept_entries = len(kept)
    report.kept_bytes = sum(size for _e, size, _u in kept)
    return report
