"""The .nav file format: a zip of files plus a manifest; every file and the manifest are digested.

Layout: ``manifest.json`` (format name and version, specs, resolved recipe, targets, and the
sha256 and size of every other file), ``manifest.sha256`` (the manifest's own digest),
``source/`` (the serialized model and its state dict), ``samples/samples.npz`` and
``targets/<target id>/...`` (each built target's artifacts).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Mapping

from navbuild.errors import InputError

FORMAT_NAME = "navbuild-package"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_DIGEST = "manifest.sha256"
_COMPLETE = ".complete"


class PackageError(InputError):
    """A package that cannot be trusted or read: refused, and nothing of it enters the cache."""


def write_archive(path: Path, manifest: dict, files: Mapping[str, Path]) -> int:
    """Write ``files`` (archive name -> local file) and the manifest atomically; return the size.

    The manifest gains ``files``: the sha256 and size of every archived file.
    """
    manifest = dict(manifest)
    manifest["files"] = {}
    for arcname, local in sorted(files.items()):
        manifest["files"][arcname] = {"sha256": _sha256_file(local), "size": local.stat().st_size}
    body = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            zf.writestr(MANIFEST, body, compress_type=zipfile.ZIP_DEFLATED)
            zf.writestr(MANIFEST_DIGEST, hashlib.sha256(body).hexdigest() + "\n")
            for arcname, local in sorted(files.items()):
                zf.write(local, arcname)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path.stat().st_size


def read_manifest(path: Path) -> dict:
    """Open a package and return its manifest after checking the format and the manifest's digest."""
    path = Path(path)
    if not path.is_file():
        raise PackageError(f"package {path}: file does not exist")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if MANIFEST not in names or MANIFEST_DIGEST not in names:
                raise PackageError(f"package {path}: not a navbuild package (no {MANIFEST})")
            body = zf.read(MANIFEST)
            recorded = zf.read(MANIFEST_DIGEST).decode().strip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise PackageError(f"package {path}: unreadable or truncated ({exc}); it was refused") from None
    if hashlib.sha256(body).hexdigest() != recorded:
        raise PackageError(f"package {path}: the manifest does not match its digest (tampered or corrupt); "
                           "it was refused")
    manifest = json.loads(body)
    if manifest.get("format") != FORMAT_NAME:
        raise PackageError(f"package {path}: format '{manifest.get('format')}' is not {FORMAT_NAME}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise PackageError(f"package {path}: format version {version} was written by navbuild "
                           f"{manifest.get('navbuild_version', '?')}; this navbuild reads up to version "
                           f"{FORMAT_VERSION}: upgrade navbuild to read it")
    return manifest


def verify(path: Path) -> dict:
    """Check every file of the package against the manifest (digest, size, nothing extra or missing)."""
    manifest = read_manifest(path)
    expected = manifest.get("files", {})
    try:
        with zipfile.ZipFile(path) as zf:
            present = set(zf.namelist()) - {MANIFEST, MANIFEST_DIGEST}
            missing = sorted(set(expected) - present)
            extra = sorted(present - set(expected))
            if missing or extra:
                raise PackageError(f"package {path}: files do not match the manifest "
                                   f"(missing: {', '.join(missing) or 'none'}; unexpected: {', '.join(extra) or 'none'})")
            for name, facts in expected.items():
                digest = hashlib.sha256()
                size = 0
                with zf.open(name) as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        digest.update(chunk)
                        size += len(chunk)
                if size != facts["size"] or digest.hexdigest() != facts["sha256"]:
                    raise PackageError(f"package {path}: {name} does not match its digest (tampered or "
                                       "corrupt); the package was refused")
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise PackageError(f"package {path}: unreadable or corrupt ({exc}); it was refused") from None
    return manifest


def extract(path: Path, into: Path) -> tuple[Path, dict]:
    """Verify the package, then unpack it once into ``into/<manifest digest>``; return (folder, manifest).

    The folder is written beside and renamed into place, so a half-extracted package is
    never used.
    """
    manifest = verify(path)
    with zipfile.ZipFile(path) as zf:
        key = zf.read(MANIFEST_DIGEST).decode().strip()[:24]
    dest = Path(into) / key
    if (dest / _COMPLETE).is_file():
        return dest, manifest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=dest.parent))
    try:
        with zipfile.ZipFile(path) as zf:
            for name in manifest["files"]:
                target = (tmp / name).resolve()
                if not str(target).startswith(str(tmp.resolve()) + os.sep):
                    raise PackageError(f"package {path}: entry '{name}' points outside the package")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(name) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            (tmp / MANIFEST).write_bytes(zf.read(MANIFEST))
        (tmp / _COMPLETE).write_text("ok\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest, manifest


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "PackageError", "write_archive", "read_manifest", "verify",
           "extract"]
