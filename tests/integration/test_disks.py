"""Disks and caches that misbehave, met by real builds: a full disk (a real tmpfs), a read-only
cache (a real read-only bind mount), broken entries, a lock held by another process, a byte
flipped behind the digest memo's back, and multirun on a recipe file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import navbuild
from navbuild.cache.store import Store
from tests.mounts import fill, read_only_view, tmpfs

REPO = Path(navbuild.__file__).resolve().parent.parent
ONNX_ONLY = "formats=[onnx]"


def flat(text: str) -> str:
    """Console output with rich's line wrapping undone."""
    return " ".join(text.split())


def entry_of(project, target_id: str) -> Path:
    for meta in (project.cache / "objects").glob("*/*/meta.json"):
        if json.loads(meta.read_text()).get("target_id") == target_id:
            return meta.parent
    raise AssertionError(f"no cache entry for {target_id}")


def assert_cache_intact(cache: Path) -> int:
    """Every committed entry verifies byte for byte and no staging folder was left; returns the count."""
    store = Store(cache)
    keys = [key for key, _path in store.object_dirs()]
    assert [(k, store.verify(k)) for k in keys if store.verify(k) is not None] == []
    assert not (cache / "tmp").is_dir() or list((cache / "tmp").iterdir()) == []
    return len(keys)


def test_full_disk_at_several_fill_levels_says_where_and_keeps_the_cache(project, tmp_path):
    with tmpfs(tmp_path / "disk", "512k") as disk:
        project.cache = disk / "cache"
        seen, entries = [], 0
        for free_kb in (0, 16, 32, 64):  # the space left grows: each run gets further
            fill(disk, free_kb * 1024)
            proc = project.run("recipe=tiny", "formats=[torch,onnx]")
            assert proc.returncode == 1, proc.stderr
            assert "Traceback" not in proc.stderr
            message = re.search(rf"navbuild: error: no space left on {disk}, [0-9.]+ MB free: writing (.+?) "
                                rf"to {disk}/cache/", proc.stderr)
            assert message, proc.stderr
            assert "then run again (what is already cached is intact)" in proc.stderr
            seen.append(message.group(1))
            now = assert_cache_intact(project.cache)
            assert now >= entries  # nothing that was cached was lost
            entries = now
        # before anything could start (the source's dependencies are discovered first); inside a
        # running step (a child process writing its output); after the first target was published
        assert seen[0] == "the job files of the source's dependency discovery"
        assert any(s.startswith("the output of target ") for s in seen), seen
        assert entries >= 1
        (disk / "filler").unlink()
        done = project.run("recipe=tiny", "formats=[torch,onnx]", check=True)
        statuses = project.statuses()
        assert statuses["reference"] == "cached" and statuses["finalists"] == "built"
        assert_cache_intact(project.cache)
    # the counter says more targets may join while the profiles run; the finalists close it
    assert re.search(r"\[1/5\+\] +cached +reference", done.stderr), done.stderr
    assert re.search(r"\[6/6\] +built +finalists", done.stderr), done.stderr


def test_full_disk_while_openvino_writes_its_model_is_named_as_such(project, tmp_path):
    # OpenVINO reports a failed write only as "basic_ios::clear: iostream error", and on a full
    # disk not even that reaches the step's log: the free space left is what tells.
    with tmpfs(tmp_path / "disk", "2m") as disk:
        project.cache = disk / "cache"
        project.run("recipe=tiny", ONNX_ONLY, check=True)
        fill(disk, 16 * 1024)
        proc = project.run("recipe=tiny", "formats=[onnx,openvino]")
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        # the free space is measured once the failed step's staging folder is gone: a few KB
        assert re.search(rf"navbuild: error: no space left on {re.escape(str(disk))}, 0\.0\d MB free: writing the "
                         rf"output of target openvino to {re.escape(str(disk))}/cache/tmp/", proc.stderr), proc.stderr
        assert_cache_intact(project.cache)
        assert set(project.statuses().values()) == {"built"}  # the last complete build's summary is left alone


def test_read_only_cache_serves_what_it_holds_and_says_it_could_not_record(project, tmp_path):
    project.run("recipe=tiny", ONNX_ONLY, check=True)
    with read_only_view(project.cache, tmp_path / "ro") as ro:
        project.cache = ro
        proc = project.run("recipe=tiny", ONNX_ONLY)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        assert f"could not record this build in {ro}/records/" in flat(proc.stderr)
        assert "(Read-only file system): what the cache held was served" in flat(proc.stderr)
        assert set(project.statuses().values()) == {"cached"}
        # a miss cannot be built into it: that target fails, what is cached is still served
        miss = project.run("recipe=tiny", ONNX_ONLY, "onnx.opset=18")
        assert miss.returncode == 1 and "Traceback" not in miss.stderr
        assert f"not in the cache, and cannot be built into it: the cache {ro} is on a read-only file " \
               f"system ({ro})" in flat(miss.stderr)
        statuses = project.statuses()
        assert statuses["reference"] == "cached" and statuses["onnx"] == "failed"


def test_output_dir_that_is_a_file_is_a_recipe_error(project):
    (project.root / "out.txt").write_text("mine")
    for value in ("out.txt", "out.txt/sub"):
        proc = project.run("recipe=tiny", f"output_dir={value}")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert (f"output_dir: '{value}' cannot be created: {project.root}/out.txt is a file, not a folder; "
                "remove or rename that file") in proc.stderr
    assert (project.root / "out.txt").read_text() == "mine" and project.objects() == []


def test_cache_entry_replaced_by_a_file_is_set_aside_and_rebuilt(project):
    import shutil

    project.run("recipe=tiny", ONNX_ONLY, check=True)
    entry = entry_of(project, "onnx")
    shutil.rmtree(entry)
    entry.write_text("a file where the entry's folder was")
    proc = project.run("recipe=tiny", ONNX_ONLY)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert re.search(r"warning: cache entry \w+ is broken \(.* is a file, not a folder\); it was set aside "
                     r"and will be rebuilt", flat(proc.stderr)), proc.stderr
    assert project.statuses()["onnx"] == "built" and entry.is_dir()
    again = project.run("recipe=tiny", ONNX_ONLY, check=True)  # no longer blocks anything
    assert "warning" not in again.stderr and set(project.statuses().values()) == {"cached"}


HOLDER = """
import pathlib, sys, time
from navbuild.cache.store import Store

root, key, release = sys.argv[1:4]
with Store(pathlib.Path(root)).lock(key, what="reference"):
    print("held", flush=True)
    while not pathlib.Path(release).exists():
        time.sleep(0.05)
"""


def test_a_build_waiting_on_another_process_says_on_which(project, tmp_path):
    from navbuild.api import plan

    # a first build (of other samples) discovers what defines the source, so the plan's keys
    # are the ones the build below uses
    project.run("recipe=tiny", "formats=[torch]", "samples.seed=1", check=True)
    key = plan("tiny", [ONNX_ONLY], cwd=project.root).by_id()["reference"].key
    release, log = tmp_path / "release", tmp_path / "build.log"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(project.cache), key, str(release)],
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    build = None
    try:
        assert holder.stdout.readline().strip() == "held"
        with open(log, "w") as out:
            build = subprocess.Popen([sys.executable, "-m", "navbuild", "recipe=tiny", ONNX_ONLY], cwd=project.root,
                                     env=project.env(), stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while "waiting for" not in log.read_text():
            assert build.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        time.sleep(0.2)
        text = flat(log.read_text())
        assert re.search(rf"waiting for reference: process {holder.pid} \(-c .*\) has been building reference "
                         rf"for \d+s in the same cache", text), text
        assert f"locks/{key}.lock" in text.replace(" ", "")
        release.write_text("")
        assert build.wait(timeout=300) == 0, log.read_text()
        assert project.statuses()["reference"] == "built"
    finally:
        release.write_text("")
        for proc in (holder, build):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def flip_keeping_stat(path: Path) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_gc_verify_finds_a_byte_flipped_behind_the_memo(project):
    project.run("recipe=tiny", ONNX_ONLY, check=True)
    model = entry_of(project, "onnx") / "out" / "model.onnx"
    good = model.read_bytes()
    old = model.stat().st_mtime_ns - 10**10
    os.utime(model, ns=(old, old))  # past the memo's racy window: the next build memoizes it for good
    project.run("recipe=tiny", ONNX_ONLY, check=True)
    flip_keeping_stat(model)
    served = project.run("recipe=tiny", ONNX_ONLY, check=True)
    assert "nothing to do" in served.stderr  # what the memo trusts (inode, size, mtime) did not change

    gc = project.run("gc", "--verify", check=True)
    assert re.search(r"removed \w{16} .* corrupt \(out/model\.onnx: sha256 \w+ != \w+\)", gc.stdout), gc.stdout
    assert re.search(r"verified \d+ entries by re-hashing every file: 1 corrupt", gc.stdout), gc.stdout
    project.run("recipe=tiny", ONNX_ONLY, check=True)
    assert project.statuses()["onnx"] == "built"
    assert (project.root / "build" / "tiny" / "onnx" / "model.onnx").read_bytes() == good


def test_multirun_finds_a_recipe_file_as_a_single_run_does(project):
    (project.root / "sub").mkdir()
    for name in ("my.yaml", "sub/other.yaml"):
        (project.root / name).write_text((project.root / "recipes" / "tiny.yaml").read_text())
    single = project.run("plan", "recipe=my.yaml", check=True)
    assert "plan of recipe my" in single.stdout
    proc = project.run("plan", "-m", "recipe=my.yaml,sub/other.yaml", "profile.batch_sizes=[1],[1,2]")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("plan of recipe my") == 2 and proc.stdout.count("plan of recipe other") == 2
