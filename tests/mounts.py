"""Real file-system faults for tests: a small tmpfs (a disk that fills up) and read-only bind mounts.

Both need the right to mount (root, or a user namespace); where it is missing the test is
skipped, saying why. Every mount is undone when its context ends.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


def _mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise OSError(proc.stderr.strip() or f"mount {' '.join(args)} failed")


def _umount(point: Path) -> None:
    # Lazy as a last resort: a test that failed may leave a process with its cwd inside.
    if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


@contextlib.contextmanager
def tmpfs(point: Path, size: str, inodes: int | None = None) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. ``"512k"``), with at most ``inodes`` files and folders, mounted at
    ``point``; skips the test if mounting is refused."""
    point.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (f",nr_inodes={inodes}" if inodes else "")
    try:
        _mount("-t", "tmpfs", "-o", options, "tmpfs", str(point))
    except (OSError, FileNotFoundError) as e:
        pytest.skip(f"cannot mount a tmpfs here ({e}); a full disk needs a real small file system")
    try:
        yield point
    finally:
        _umount(point)


@contextlib.contextmanager
def read_only_view(source: Path, point: Path) -> Iterator[Path]:
    """``source`` bind-mounted read-only at ``point`` (root cannot write it: EROFS, unlike chmod)."""
    point.mkdir(parents=True, exist_ok=True)
    try:
        _mount("--bind", str(source), str(point))
    except (OSError, FileNotFoundError) as e:
        pytest.skip(f"cannot bind-mount here ({e}); a read-only cache needs a read-only mount")
    try:
        _mount("-o", "remount,bind,ro", str(point))
        yield point
    finally:
        _umount(point)


def fill(point: Path, leave_bytes: int, name: str = "filler") -> Path:
    """Size a filler file on the file system at ``point`` so that only ``leave_bytes`` stay free."""
    filler = point / name
    current = filler.stat().st_size if filler.exists() else 0
    st = os.statvfs(point)
    size = max(0, current + st.f_bavail * st.f_frsize - leave_bytes)
    with open(filler, "wb") as f:  # real bytes, not a sparse file: the space must be taken
        f.write(b"\0" * size)
    return filler
