"""The .nav file format: a zip of files plus a manifest; every file and the manifest are digested.

Layout: ``manifest.json`` (format name and version, specs, resolved recipe, targets, and the
sha256 and size of every other file), ``manifest.sha256`` (the manifest's own digest),
``source/`` (the serialized model and its state dict), ``samples/samples.npz`` and
``targets/<target id>/...`` (each built target's artifacts).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Iterator, Mapping

from navbuild.package.manifest import (MAX_INFLATION, MAX_MANIFEST_BYTES, MAX_TOTAL_ENV, PackageError, check_manifest,
                                       member_problem, unpack_limit)

FORMAT_NAME = "navbuild-package"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_DIGEST = "manifest.sha256"
_COMPLETE = ".complete"


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
    """Open a package and return its manifest after checking its digest, format and schema.

    Reads only the manifest: :func:`verify` also checks every member.
    """
    path = _existing(path)
    with _open(path) as zf:
        return _read_manifest(zf, path)[0]


def verify(path: Path) -> dict:
    """Check the manifest and every member (name, declared size, digest, nothing extra or missing)
    without unpacking anything; return the manifest. ``show`` and ``navbuild.load`` run this;
    continuing runs the very same checks while it unpacks.
    """
    path = _existing(path)
    with _open(path) as zf:
        manifest, _ = _read_manifest(zf, path)
        _members(zf, manifest, path, into=None)
    return manifest


def extract(path: Path, into: Path) -> tuple[Path, dict]:
    """Verify the package while unpacking it into ``into/<manifest digest>``; return (folder, manifest)."""
    folder, manifest, _ = unpack(path, into)
    return folder, manifest


def unpack(path: Path, into: Path) -> tuple[Path, dict, bool]:
    """Unpack (verifying as :func:`verify` does) into ``into/<manifest digest>``.

    Returns (folder, manifest, placed): ``placed`` is True when this call put the folder there
    (the caller removes it if it refuses the package after all). Members are written into a
    staging folder beside it, which is renamed into place only once every member verified, and
    removed on any refusal: nothing of a refused package stays.
    """
    path = _existing(path)
    into = Path(into)
    with _open(path) as zf:
        manifest, digest = _read_manifest(zf, path)
        dest = into / digest[:24]
        if (dest / _COMPLETE).is_file():
            _members(zf, manifest, path, into=None)  # the same checks, even when already unpacked
            return dest, manifest, False
        into.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".staging-{digest[:24]}-", dir=into))
        try:
            _members(zf, manifest, path, into=tmp)
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
            (tmp / _COMPLETE).write_text("ok\n")
            if dest.exists() and not (dest / _COMPLETE).is_file():
                shutil.rmtree(dest)  # a folder left half-written by an older navbuild
            try:
                os.rename(tmp, dest)
            except OSError:
                if not (dest / _COMPLETE).is_file():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process unpacked it first
                return dest, manifest, False
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest, manifest, True


def _existing(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise PackageError(f"package {path}: file does not exist")
    return path


@contextlib.contextmanager
def _open(path: Path) -> Iterator[zipfile.ZipFile]:
    try:
        with zipfile.ZipFile(path) as zf:
            yield zf
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError, RuntimeError,
            zlib.error) as exc:
        raise PackageError(f"package {path}: cannot be read or unpacked: unreadable, truncated or corrupt "
                           f"({exc}); it was refused") from None


def _read_manifest(zf: zipfile.ZipFile, path: Path) -> tuple[dict, str]:
    """The checked manifest and its recorded digest."""
    names = zf.namelist()
    if MANIFEST not in names or MANIFEST_DIGEST not in names:
        raise PackageError(f"package {path}: not a navbuild package (no {MANIFEST})")
    body = _read_capped(zf, MANIFEST, MAX_MANIFEST_BYTES, path)
    recorded = _read_capped(zf, MANIFEST_DIGEST, 256, path).decode(errors="replace").strip()
    if hashlib.sha256(body).hexdigest() != recorded:
        raise PackageError(f"package {path}: the manifest does not match its digest (tampered or corrupt); "
                           "it was refused")
    try:
        manifest = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise PackageError(f"package {path}: the manifest is not valid JSON ({exc}); it was refused") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        what = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise PackageError(f"package {path}: format '{what}' is not {FORMAT_NAME}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise PackageError(f"package {path}: format version {version} was written by navbuild "
                           f"{manifest.get('navbuild_version', '?')}; this navbuild reads up to version "
                           f"{FORMAT_VERSION}: upgrade navbuild to read it")
    return check_manifest(manifest, path), recorded


def _read_capped(zf: zipfile.ZipFile, name: str, cap: int, path: Path) -> bytes:
    info = zf.getinfo(name)
    if info.file_size > cap:
        raise PackageError(f"package {path}: {name} declares {info.file_size} bytes, more than {cap}; "
                           "it was refused")
    with zf.open(info) as fh:
        body = fh.read(cap + 1)
    if len(body) > cap:
        raise PackageError(f"package {path}: {name} inflates beyond {cap} bytes; it was refused")
    return body


def _members(zf: zipfile.ZipFile, manifest: dict, path: Path, into: Path | None) -> None:
    """Check every member against the manifest while streaming it (into ``into`` when given).

    Sizes are enforced as bytes come out of the zip, not after: a member is refused as soon as
    it inflates beyond its declared size, and the package before anything is read when its
    declared sizes add up to more than :func:`unpack_limit` allows.
    """
    expected: dict = manifest["files"]
    infos = [i for i in zf.infolist() if i.filename not in (MANIFEST, MANIFEST_DIGEST)]
    bad = [why for i in infos if (why := member_problem(i.filename))]
    if bad:
        raise PackageError(f"package {path}: {bad[0]}; the package was refused")
    names = [i.filename for i in infos]
    twice = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) != len(names) else []
    missing = sorted(set(expected) - set(names))
    extra = sorted(set(names) - set(expected))
    if missing or extra or twice:
        raise PackageError(f"package {path}: files do not match the manifest (missing: {', '.join(missing) or 'none'}; "
                           f"unexpected: {', '.join(extra) or 'none'}"
                           + (f"; listed twice: {', '.join(twice)}" if twice else "") + "); it was refused")
    total = sum(f["size"] for f in expected.values())
    limit = unpack_limit(path.stat().st_size)
    if total > limit:
        raise PackageError(f"package {path}: its files declare {total} bytes unpacked, more than the {limit} "
                           f"a {path.stat().st_size}-byte package may unpack to (at most {MAX_INFLATION}x its "
                           f"size, and ${MAX_TOTAL_ENV}); it was refused")
    root = into.resolve() if into is not None else None
    for info in infos:
        name, size_declared = info.filename, expected[info.filename]["size"]
        if info.is_dir() or info.file_size != size_declared:
            raise PackageError(f"package {path}: member {name} is {info.file_size} bytes in the zip, "
                               f"the manifest declares {size_declared}; it was refused")
        out = None
        if root is not None:
            target = (root / name).resolve()
            if not target.is_relative_to(root) or target == root:
                raise PackageError(f"package {path}: member {name} points outside the package; it was refused")
            target.parent.mkdir(parents=True, exist_ok=True)
            out = open(target, "xb")
        digest, size = hashlib.sha256(), 0
        try:
            with zf.open(info) as fh:
                while chunk := fh.read(min(1 << 20, size_declared - size + 1)):
                    size += len(chunk)
                    if size > size_declared:
                        raise PackageError(f"package {path}: member {name} inflates beyond its declared "
                                           f"{size_declared} bytes; it was refused")
                    digest.update(chunk)
                    if out is not None:
                        out.write(chunk)
        finally:
            if out is not None:
                out.close()
        if size != size_declared or digest.hexdigest() != expected[name]["sha256"]:
            raise PackageError(f"package {path}: {name} does not match its digest (tampered or "
                               "corrupt); the package was refused")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "PackageError", "write_archive", "read_manifest", "verify",
           "extract", "unpack"]
