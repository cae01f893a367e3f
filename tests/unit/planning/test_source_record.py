"""The source record: read (a bad one is a miss), what changed, and how it joins the source leaf."""

from __future__ import annotations

import json
from pathlib import Path

from navbuild.cache.digest import DigestMemo
from navbuild.planning.graph import Graph
from navbuild.planning.source_record import (SourceRecord, attach, changes, read_record, record_data, record_path,
                                              write_record)
from navbuild.planning.status import leaf_digest
from navbuild.planning.target import Leaf


def _leaf(tmp_path: Path) -> Leaf:
    factory = tmp_path / "models.py"
    factory.write_text("def make(): ...\n")
    return Leaf("source", factory, (factory,), {"factory": "models:make"})


def test_a_bad_or_old_record_is_a_miss(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    assert read_record(path) is None
    path.write_text("{not json")
    assert read_record(path) is None
    path.write_text(json.dumps({"schema": 0, "files": {}, "distributions": {}}))
    assert read_record(path) is None


def test_records_are_named_by_factory_origin_and_kwargs(tmp_path: Path) -> None:
    leaf = _leaf(tmp_path)
    assert record_path(tmp_path, leaf, {"a": 1}) == record_path(tmp_path, leaf, {"a": 1})
    assert record_path(tmp_path, leaf, {"a": 1}) != record_path(tmp_path, leaf, {"a": 2})


def test_changes_name_each_file_and_distribution(tmp_path: Path) -> None:
    memo = DigestMemo(tmp_path / "memo.json")
    leaf = _leaf(tmp_path)
    layers, ckpt = tmp_path / "layers.py", tmp_path / "ckpt.pt"
    layers.write_text("x = 1\n")
    ckpt.write_bytes(b"\x00" * 8)
    data = record_data(leaf, {"modules": [str(layers)], "files": [str(ckpt)],
                              "distributions": {"numpy": "0.0.1"}}, memo)
    write_record(tmp_path / "rec.json", data)
    assert read_record(tmp_path / "rec.json") == data
    layers.write_text("x = 2\n")
    ckpt.unlink()
    found = changes(data, memo, tmp_path)
    assert "source dependency layers.py changed" in found
    assert "ckpt.pt removed" in found
    assert any(c.startswith("distribution numpy 0.0.1 -> ") for c in found)


def test_attached_files_change_the_leaf_digest_and_unchanged_ones_do_not(tmp_path: Path) -> None:
    memo = DigestMemo(tmp_path / "memo.json")
    leaf = _leaf(tmp_path)
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"\x01" * 8)
    data = record_data(leaf, {"modules": [], "files": [str(ckpt)], "distributions": {}}, memo)

    def digest() -> str:
        graph = Graph()
        graph.add(leaf)
        return leaf_digest(attach(graph, "source", SourceRecord(tmp_path / "rec.json", data)), memo)

    before = digest()
    assert digest() == before
    ckpt.write_bytes(b"\x02" * 8)
    assert digest() != before


def test_no_record_yet_is_said_in_the_plan(tmp_path: Path) -> None:
    graph = Graph()
    graph.add(_leaf(tmp_path))
    record = SourceRecord(tmp_path / "none.json", None)
    assert record.needs_discovery
    assert "not discovered yet" in attach(graph, "source", record).note
