"""The source's discovered dependencies: kept in the store, hashed into the source leaf, explained.

A torch source is defined by more than its factory's file: the user's modules it imports, the
files it reads (checkpoints, configs), the distributions its classes come from. A discovery run
(``DiscoverSourceDependencies``) records them; this module keeps that record in the store, makes
the source leaf's digest cover them (through the digest memo, so a no-op stays fast), and says
which one changed. Pure of torch: it reads the record and hashes files.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from navbuild.cache.digest import atomic_write_text
from navbuild.cache.keys import canonical_json, tool_versions
from navbuild.planning.graph import Graph
from navbuild.planning.target import Leaf

#: Bumped when the record layout changes; an old record is a miss (rediscovered), never a crash.
SOURCE_RECORD_SCHEMA = 1
FILES, MODULES, DISTRIBUTIONS = "files", "modules", "distributions"


@dataclass(frozen=True)
class SourceRecord:
    """Where a source's record lives, what it holds (None before the first discovery), and what
    changed since it was written (empty when nothing did)."""

    path: Path
    data: dict | None
    changes: tuple[str, ...] = ()

    @property
    def needs_discovery(self) -> bool:
        """Nothing recorded yet, or something recorded changed (it may now import other modules)."""
        return self.data is None or bool(self.changes)


def record_path(store_root: Path, leaf: Leaf, kwargs: Mapping[str, Any]) -> Path:
    """The record of a torch source: named by its factory, its module's file and its kwargs."""
    ident = canonical_json({"factory": leaf.facts.get("factory"), "origin": str(leaf.path), "kwargs": dict(kwargs)})
    return Path(store_root) / "sources" / f"{hashlib.sha256(ident.encode()).hexdigest()[:24]}.json"


def read_record(path: Path) -> dict | None:
    """The record at ``path``; None when absent, unreadable or of another schema (a miss)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("schema") != SOURCE_RECORD_SCHEMA:
        return None
    if not isinstance(data.get(FILES), dict) or not isinstance(data.get(DISTRIBUTIONS), dict):
        return None
    return data


def record_data(leaf: Leaf, findings: Mapping[str, Any], memo: Any) -> dict:
    """The record of what a discovery found, with each file's digest now (what later plans compare)."""
    files = sorted({*map(str, leaf.files), *findings.get(MODULES, ()), *findings.get(FILES, ())})
    return {
        "schema": SOURCE_RECORD_SCHEMA,
        FILES: {f: _digest(memo, f) for f in files},
        MODULES: sorted(findings.get(MODULES, ())),
        DISTRIBUTIONS: dict(sorted(dict(findings.get(DISTRIBUTIONS, {})).items())),
    }


def write_record(path: Path, data: dict) -> None:
    """Keep a record in the store (atomically: a reader sees the old one or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True))


def attach(graph: Graph, leaf_id: str, record: SourceRecord) -> Leaf:
    """Make the source leaf cover its recorded dependencies; return the new leaf.

    The files are the declared ones, then the discovered ones (sorted); the facts gain the
    installed version of every recorded distribution. Paths never enter the digest.
    """
    leaf = graph.leaves[leaf_id]
    if record.data is None:
        new = replace(leaf, note="first build of this source: its dependencies are not discovered yet; "
                                 "they will be before any target is built")
    else:
        declared = [str(f) for f in leaf.files]
        extra = sorted(f for f in record.data[FILES] if f not in declared and os.path.isfile(f))
        facts = {**leaf.facts, **{f"distribution:{d}": v for d, v in tool_versions(record.data[DISTRIBUTIONS]).items()}}
        new = replace(leaf, files=(*leaf.files, *map(Path, extra)), facts=facts,
                      changes=record.changes)
    graph.leaves[leaf_id] = new
    return new


def changes(data: dict | None, memo: Any, cwd: Path) -> tuple[str, ...]:
    """What changed since ``data`` was recorded: each file and distribution, by name."""
    if data is None:
        return ()
    found: list[str] = []
    for path, digest in sorted(data[FILES].items()):
        now = _digest(memo, path)
        if now != digest:
            what = "removed" if now is None else "changed"
            kind = "source dependency " if path in data.get(MODULES, ()) or path.endswith(".py") else ""
            found.append(f"{kind}{_shown(path, cwd)} {what}")
    installed = tool_versions(data[DISTRIBUTIONS])
    for name, version in sorted(data[DISTRIBUTIONS].items()):
        now = installed[name]
        if now != version:
            found.append(f"distribution {name} {version} -> {now}")
    return tuple(found)


def _digest(memo: Any, path: str) -> str | None:
    try:
        return memo.digest(path)
    except OSError:
        return None


def _shown(path: str, cwd: Path) -> str:
    """A path as a user reads it: relative to the working directory when inside it."""
    try:
        return str(Path(path).relative_to(cwd))
    except ValueError:
        return path


__all__ = ["SourceRecord", "record_path", "read_record", "record_data", "write_record", "attach", "changes"]
