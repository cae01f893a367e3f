"""File-system failures (full disk, read-only cache) turned into messages that say where and what."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import Iterator

from navbuild.errors import DiskFull

#: errnos of a write that failed for lack of space (a quota counts as a full disk).
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
#: errnos of a write that the file system or its permissions refuse.
NOT_WRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})

#: A failed step on a file system with less than this free is taken to have run out of space:
#: a write that hit ENOSPC leaves its partial file in the staging folder until it is discarded,
#: and some libraries report it only as an opaque I/O error (OpenVINO: ``basic_ios::clear``).
LOW_SPACE_BYTES = 1 << 20

#: What a step's log says when it ran out of space (Python, C libraries, C++ streams).
_NO_SPACE_TEXT = ("No space left on device", "[Errno 28]", "ENOSPC", "Disk quota exceeded")


def mount_point(path: Path) -> Path:
    """The mount point of the file system holding ``path`` (or of its nearest existing parent).

    Linux's mount table is asked first: a bind mount shares its device with its parent, so
    comparing devices (``os.path.ismount``) would not see it.
    """
    p = Path(os.path.realpath(os.path.abspath(path)))
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        table = Path("/proc/self/mounts").read_text()
    except OSError:
        table = ""
    best: Path | None = None
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        point = Path(fields[1].encode().decode("unicode_escape"))  # "\040" is a space
        if (p == point or point in p.parents) and (best is None or len(point.parts) > len(best.parts)):
            best = point
    if best is not None:
        return best
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on ``path``'s file system (None if unknown)."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def is_read_only(path: Path) -> bool:
    """Whether ``path`` (or its nearest existing parent) is on a read-only mounted file system."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return bool(os.statvfs(p).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def disk_full(path: Path, what: str, detail: str = "") -> DiskFull:
    """The error for a write of ``what`` to ``path`` that found no space."""
    where = mount_point(path)
    free = free_bytes(path)
    room = f", {free / 1e6:.2f} MB free" if free is not None else ""
    said = f" ({detail})" if detail else ""
    return DiskFull(f"no space left on {where}{room}: writing {what} to {path} failed{said}; free space "
                    f"there (navbuild gc prunes the cache) or point NAVBUILD_CACHE_DIR / output_dir at a "
                    f"larger disk, then run again (what is already cached is intact)")


@contextlib.contextmanager
def writing(path: Path, what: str) -> Iterator[None]:
    """Turn an out-of-space ``OSError`` raised inside into ``DiskFull`` naming ``path`` and ``what``."""
    try:
        yield
    except OSError as e:
        if e.errno in NO_SPACE:
            raise disk_full(Path(e.filename) if e.filename else path, what) from None
        raise


def ran_out_of_space(path: Path, text: str = "") -> bool:
    """Whether a step that failed writing under ``path`` did so for lack of space.

    True when its output or log says so, or when the file system is (nearly) full now.
    """
    if any(marker in text for marker in _NO_SPACE_TEXT):
        return True
    free = free_bytes(path)
    return free is not None and free < LOW_SPACE_BYTES
