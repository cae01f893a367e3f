"""The cache on a real S3 server (SeaweedFS on 127.0.0.1): recipes/mlp.yaml built into a bucket is
found cached by a second machine, a tampered object is refused and rebuilt, two concurrent builds
leave every entry intact, and a store that cannot be written is one clear error."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import navbuild
from navbuild.cache.remote import record_problem

from s3server import READER, SeaweedS3

pytestmark = pytest.mark.cluster

REPO = Path(navbuild.__file__).resolve().parent.parent
BUCKET = "navbuild-test"
#: mlp, kept fast: no Triton, two formats, one batch size, no finalists; measurements on this
#: shared machine are trusted (not provisional), so a second build serves them from the cache
FAST = ["recipe=mlp", "triton.enabled=false", "formats=[torch,onnx]", "samples.count=4",
        "profile.batch_sizes=[1]", "profile.window_s=0.01", "profile.warmup_iters=1", "profile.finalists=0",
        "profile.max_background_load=64", "profile.stability=0.99"]


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> SeaweedS3:
    server = SeaweedS3(tmp_path_factory.mktemp("seaweed"))
    try:
        server.start()
        server.make_bucket(BUCKET)
        yield server
    finally:
        server.stop()


def _navbuild(s3: SeaweedS3, args: list[str], local: Path, credentials=None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NAVBUILD_LOCAL_CACHE": str(local),
           **(s3.env(credentials) if credentials else s3.env())}
    env.pop("NAVBUILD_CACHE_DIR", None)
    return subprocess.Popen([sys.executable, "-m", "navbuild", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _build(s3: SeaweedS3, prefix: str, tmp: Path, machine: str, credentials=None) -> tuple[int, str, dict]:
    out = tmp / f"build-{machine}"
    p = _navbuild(s3, [*FAST, f"cache.dir=s3://{BUCKET}/{prefix}", f"output_dir={out}"],
                  tmp / f"local-{machine}", credentials)
    text, _ = p.communicate(timeout=600)
    summary = out / "summary.json"
    return p.returncode, text, json.loads(summary.read_text()) if summary.is_file() else {}


def _statuses(summary: dict) -> dict[str, str]:
    return {t["id"]: t["status"] for t in summary["targets"]}


def _fs(s3: SeaweedS3):
    import s3fs

    env = s3.env()
    return s3fs.S3FileSystem(key=env["AWS_ACCESS_KEY_ID"], secret=env["AWS_SECRET_ACCESS_KEY"],
                             endpoint_url=s3.endpoint, skip_instance_cache=True)


def _records(s3: SeaweedS3, prefix: str) -> dict[str, dict]:
    fs = _fs(s3)
    return {Path(p).name[:-5]: json.loads(fs.cat_file(p)) for p in fs.ls(f"{BUCKET}/{prefix}/entries", refresh=True)}


def _check_bucket(s3: SeaweedS3, prefix: str) -> dict[str, dict]:
    """Every record sound and every file it names in the bucket with the record's digest; the records."""
    fs = _fs(s3)
    records = _records(s3, prefix)
    for key, record in records.items():
        assert record_problem(key, record) is None, (key, record_problem(key, record))
        for rel, facts in [*record["files"].items(), *record["side_files"].items()]:
            data = fs.cat_file(f"{BUCKET}/{prefix}/blobs/{facts['sha256']}")
            assert (len(data), hashlib.sha256(data).hexdigest()) == (facts["size"], facts["sha256"]), (key, rel)
    return records


def test_a_second_machine_finds_everything_cached_and_a_tampered_object_is_refused_and_rebuilt(s3, tmp_path):
    rc, text, first = _build(s3, "shared", tmp_path, "a")
    assert rc == 0, text
    targets = _statuses(first)
    assert set(targets.values()) == {"built"} and len(targets) >= 5
    records = _check_bucket(s3, "shared")
    assert {r["target_id"] for r in records.values()} == set(targets)

    # another machine: an empty local cache pointed at the same bucket
    rc, text, second = _build(s3, "shared", tmp_path, "b")
    assert rc == 0, text
    assert second["counts"] == {"cached": len(targets)}, text
    # plan on a third, empty machine reads the records (and the source's shared dependency record)
    p = _navbuild(s3, ["plan", *FAST, f"cache.dir=s3://{BUCKET}/shared", f"output_dir={tmp_path / 'build-p'}"],
                  tmp_path / "local-p")
    text, _ = p.communicate(timeout=300)
    assert p.returncode == 0, text
    assert text.count("cached") >= len(targets) and "missing" not in text, text
    assert not (tmp_path / "local-p" / "objects").exists()  # nothing downloaded

    # tamper with the ONNX model in the bucket: same size, other bytes
    key, record = next((k, r) for k, r in records.items() if r["target_id"] == "onnx")
    rel, facts = max(record["files"].items(), key=lambda kv: kv[1]["size"])
    blob = f"{BUCKET}/shared/blobs/{facts['sha256']}"
    fs = _fs(s3)
    data = bytearray(fs.cat_file(blob))
    data[len(data) // 2] ^= 0xFF
    fs.pipe_file(blob, bytes(data))
    rc, text, third = _build(s3, "shared", tmp_path, "c")
    assert rc == 0, text
    assert f"remote cache entry {key[:12]} (target onnx)" in text and "refused" in text, text
    assert _statuses(third)["onnx"] == "built"
    after = _check_bucket(s3, "shared")
    assert after[key]["digest"] == _digest(third, "onnx")  # and its blobs hold their digests again


def _digest(summary: dict, target: str) -> str:
    return next(t["digest"] for t in summary["targets"] if t["id"] == target)


def test_two_concurrent_builds_on_the_bucket_leave_every_entry_intact(s3, tmp_path):
    builds = [_navbuild(s3, [*FAST, f"cache.dir=s3://{BUCKET}/concurrent", f"output_dir={tmp_path / m}"],
                        tmp_path / f"local-{m}") for m in ("a", "b")]
    texts = [b.communicate(timeout=600)[0] for b in builds]
    assert [b.returncode for b in builds] == [0, 0], texts
    summaries = [json.loads((tmp_path / m / "summary.json").read_text()) for m in ("a", "b")]
    statuses = [_statuses(s) for s in summaries]
    assert statuses[0].keys() == statuses[1].keys()
    for tid in statuses[0]:
        built = [i for i in (0, 1) if statuses[i][tid] == "built"]
        assert built, f"{tid}: built by neither"
        # the lease makes one builder wait for the other; without it, the second copy is dropped
        assert len(built) == 1 or "dropped" in texts[built[1]], (tid, texts)
    records = _check_bucket(s3, "concurrent")
    assert {r["target_id"] for r in records.values()} == set(statuses[0])
    for tid in statuses[0]:
        assert _digest(summaries[0], tid) == _digest(summaries[1], tid), tid
    fs = _fs(s3)
    leases = f"{BUCKET}/concurrent/leases"
    # every lease released (SeaweedFS may keep the emptied folder itself)
    assert [p for p in fs.find(leases) if p.rstrip("/") != leases] == []


def test_a_store_that_cannot_be_written_or_reached_is_one_clear_error(s3, tmp_path):
    rc, text, _ = _build(s3, "readonly", tmp_path, "r", credentials=READER)
    assert rc == 1, text
    assert f"cache s3://{BUCKET}/readonly at {s3.endpoint}: access denied" in text, text
    assert "AWS_ACCESS_KEY_ID" in text and "Traceback" not in text, text
    p = _navbuild(s3, ["plan", *FAST, "cache.dir=s3://no-such-bucket/x", f"output_dir={tmp_path / 'n'}"],
                  tmp_path / "local-n")
    text, _ = p.communicate(timeout=300)
    assert p.returncode == 1, text
    assert "the bucket no-such-bucket does not exist" in text and "Traceback" not in text, text
