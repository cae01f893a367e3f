"""Measurements you can trust: a profile taken while a real CPU hog keeps every core busy is
provisional and measured again once the hog is gone; a quiet one is cached; ``--remeasure``
re-runs only the timed targets.

Everything runs for real: the CLI, child processes, torch and ONNX Runtime, and the hog is
real processes spinning on every core, started and always killed by the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from typing import Iterator

import pytest

import navbuild
from navbuild import measure_conditions as mc

TWO = ["recipe=tiny", "formats=[torch,onnx]"]
DEFAULT = f"profile.max_background_load={mc.DEFAULT_MAX_BACKGROUND_LOAD}"
TIMED = {"profile/torch", "profile/onnx", "finalists"}
UNTIMED = {"reference", "onnx", "correctness/onnx"}

#: the load these tests measure must be theirs alone: they run after the parallel run (see .ci/run)
pytestmark = pytest.mark.serial


@contextlib.contextmanager
def cpu_hog() -> Iterator[list[subprocess.Popen]]:
    """One process spinning ``while True: pass`` per core, killed (and reaped) whatever happens."""
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(os.cpu_count() or 2):
            procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                          stdin=subprocess.DEVNULL, start_new_session=True))
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def background_now(seconds: float = 1.0) -> float | None:
    """Cores other processes keep busy right now (this test process is idle while it samples)."""
    start = mc.sample()
    time.sleep(seconds)
    return mc.conditions(start, mc.sample())["background_cores"]


def meta_of(project, key: str) -> dict:
    return json.loads((project.cache / "objects" / key[:2] / key / "meta.json").read_text())


def keys(project) -> dict[str, str]:
    return {t["id"]: t["key"] for t in project.summary()["targets"]}


def test_a_profile_under_a_cpu_hog_is_provisional_and_measured_again_once_it_is_gone(project):
    with cpu_hog():
        busy = project.run(*TWO, DEFAULT, check=True)
    summary = project.summary()
    for variant in ("torch", "onnx"):
        row = summary["variants"][variant]
        cond = row["profile_conditions"]
        # the hog's processes are not the build's: their CPU time is background
        assert cond["background_cores"] > mc.DEFAULT_MAX_BACKGROUND_LOAD, cond
        assert row["provisional"].startswith("background load "), row["provisional"]
        assert row["provisional"].endswith(" cores during profile"), row["provisional"]
    # the finalists' interleaved ranking is a measurement too
    assert summary["measurements"]["finalists"]["provisional"].startswith("background load ")
    # the build used them, and said so: in the target lines, the table and result.json
    assert summary["best"]["variant"] in ("torch", "onnx")
    assert summary["best"]["provisional"] == summary["measurements"]["finalists"]["provisional"]
    assert "decided on provisional measurements" in busy.stderr
    assert "provisional: background load" in busy.stderr
    # used, not measured again within the build (the finalists phase re-runs the graph)
    assert busy.stderr.count(" profile/torch ") == 1, busy.stderr
    result = json.loads((project.root / "build/tiny/profile/torch/result.json").read_text())
    assert result["provisional"]["reason"].startswith("background load")
    assert {"seconds", "background_cores", "own_cores", "loadavg_1m", "cpu_mhz"} <= set(result["conditions"])
    assert "provisional measurements" in (project.root / "build/tiny/summary.txt").read_text()
    first_keys = keys(project)
    first_created = meta_of(project, first_keys["profile/torch"])["created"]

    # the hog is gone: plan says the measurements are stale, and why; nothing else is
    shown = project.run("plan", *TWO, DEFAULT, check=True)
    lines = {line.split("│")[1].strip(): line for line in shown.stdout.splitlines() if line.count("│") >= 3}
    for tid in ("profile/torch", "profile/onnx"):
        assert "stale: provisional measurement (background load" in lines[tid], shown.stdout
    for tid in UNTIMED:
        assert "cached" in lines[tid], shown.stdout

    project.run(*TWO, DEFAULT, check=True)
    st = project.statuses()
    assert {t: st[t] for t in TIMED} == {t: "built" for t in TIMED}, st
    # conversions and checks are never affected
    assert {t: st[t] for t in UNTIMED} == {t: "cached" for t in UNTIMED}, st
    reasons = {t["id"]: t["reason"] for t in project.summary()["targets"]}
    assert reasons["profile/torch"].startswith("measured again: provisional measurement (background load")
    # the new measurement replaced the provisional one under the same key
    again_keys = keys(project)
    assert again_keys["profile/torch"] == first_keys["profile/torch"]
    assert meta_of(project, again_keys["profile/torch"])["created"] > first_created
    assert not [p for p in (project.cache / "tmp").iterdir() if p.name.startswith("replaced-")]


def test_a_quiet_profile_is_cached(project):
    # a threshold a 2-core hog still exceeds (it keeps ~1.3-2 cores busy beside the build), generous
    # enough for an ordinary quiet machine's daemons
    threshold = 1.0
    before = background_now()
    if before is not None and before > threshold:
        pytest.skip(f"this machine is busy now ({before:.1f} cores of other processes): "
                    "the quiet case cannot be observed here")
    project.run("recipe=tiny", "formats=[torch]", f"profile.max_background_load={threshold}", check=True)
    row = project.summary()["variants"]["torch"]
    assert row["provisional"] is None, (f"measured as provisional on a machine that was quiet just before "
                                        f"({before} cores): {row['provisional']}; {row['profile_conditions']}")
    assert row["profile_conditions"]["background_cores"] <= threshold
    project.run("recipe=tiny", "formats=[torch]", f"profile.max_background_load={threshold}", check=True)
    assert project.statuses()["profile/torch"] == "cached"


def test_remeasure_reruns_only_the_timed_targets(project):
    project.run(*TWO, check=True)
    shown = project.run("plan", *TWO, "--remeasure", check=True)
    lines = {line.split("│")[1].strip(): line for line in shown.stdout.splitlines() if line.count("│") >= 3}
    for tid in ("profile/torch", "profile/onnx"):
        assert "stale: remeasure requested" in lines[tid], shown.stdout
    for tid in UNTIMED:
        assert "cached" in lines[tid], shown.stdout
    # the same through the API's keyword
    api = navbuild.plan("tiny", TWO[1:], remeasure=True).by_id()
    assert api["profile/onnx"].label == "stale: remeasure requested" and api["onnx"].status == "cached"

    again = project.run(*TWO, "--remeasure", check=True)
    st = project.statuses()
    assert {t: st[t] for t in TIMED} == {t: "built" for t in TIMED}, st
    assert {t: s for t, s in st.items() if t not in TIMED} == {t: "cached" for t in st if t not in TIMED}, st
    reasons = {t["id"]: t["reason"] for t in project.summary()["targets"]}
    assert reasons["profile/torch"] == "measured again: remeasure requested"
    assert "measured again: remeasure requested" in again.stderr
