"""Build records: the machine's file of what each build folder was built from (like DVC's lock)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from navbuild.cache.digest import atomic_write_text

#: Bumped when the record layout changes; an old record is then a warning and a miss.
RECORD_SCHEMA_VERSION = 1


def record_name(build_dir: Path) -> str:
    """File stem of the record of ``build_dir``: first 16 hex of SHA-256 of its absolute path."""
    resolved = str(Path(build_dir).resolve())
    return hashlib.sha256(resolved.encode("utf-8")).hexdigest()[:16]


class Records:
    """One JSON record per build output folder, kept under ``root`` (``<store>/records``).

    A record carries ``targets: {target_id: {key, payload, digest, status}}``: the payloads
    let ``plan`` explain why a key changed, and the keys tell gc which entries are in use.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        #: messages for the reporter (corrupt or old-schema records that were skipped).
        self.warnings: list[str] = []

    record_name = staticmethod(record_name)

    def path_for(self, build_dir: Path) -> Path:
        """Where the record of ``build_dir`` is stored."""
        return self.root / f"{record_name(build_dir)}.json"

    def save(self, build_dir: Path, record: dict) -> Path:
        """Write the record of ``build_dir`` atomically (temp file + rename); returns its path."""
        data = {
            **record,
            # Last, so a caller's dict can never forge the fields that make a record valid.
            "schema": RECORD_SCHEMA_VERSION,
            "build_dir": str(Path(build_dir).resolve()),
            "saved": time.time(),
        }
        path = self.path_for(build_dir)
        atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True))
        return path

    def load(self, build_dir: Path) -> dict | None:
        """The record of ``build_dir``, or None if absent, corrupt or of an old schema."""
        path = self.path_for(build_dir)
        if not path.exists():
            return None
        return self._read(path)

    def all(self) -> list[dict]:
        """Every readable record, sorted by file name; bad ones are skipped with a warning."""
        if not self.root.is_dir():
            return []
        found = []
        # Temp files of an interrupted save start with a dot and are not records.
        for path in sorted(self.root.glob("[!.]*.json")):
            record = self._read(path)
            if record is not None:
                found.append(record)
        return found

    def referenced_keys(self) -> set[str]:
        """Every cache key that some record refers to (gc keeps these)."""
        keys: set[str] = set()
        for record in self.all():
            targets = record.get("targets")
            if not isinstance(targets, dict):
                continue
            for target in targets.values():
                if isinstance(target, dict) and isinstance(target.get("key"), str):
                    keys.add(target["key"])
        return keys

    def _read(self, path: Path) -> dict | None:
        """Parse one record; anything wrong becomes a warning and None, never an exception."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as e:
            self._warn(f"build record {path} is unreadable ({e}); ignoring it")
            return None
        if not isinstance(data, dict):
            self._warn(f"build record {path} is not a JSON object; ignoring it")
            return None
        if data.get("schema") != RECORD_SCHEMA_VERSION:
            self._warn(
                f"build record {path} has schema {data.get('schema')!r}, expected "
                f"{RECORD_SCHEMA_VERSION}; ignoring it (targets will be re-checked)"
            )
            return None
        if not isinstance(data.get("targets", {}), dict):
            self._warn(f"build record {path}: 'targets' is not an object; ignoring it")
            return None
        return data

    def _warn(self, message: str) -> None:
        """Add a reporter message once (``all()`` may read the same bad file many times)."""
        if message not in self.warnings:
            self.warnings.append(message)
