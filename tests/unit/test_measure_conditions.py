"""Tests for navbuild.measure_conditions: the conditions record and the provisional decision."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from navbuild import measure_conditions as mc
from navbuild.measure_conditions import MeasurePolicy, Sample

HZ = os.sysconf("SC_CLK_TCK")


# -- the record (pure arithmetic on fake samples) -------------------------------------------


def test_background_is_machine_busy_time_minus_our_tree() -> None:
    start = Sample(wall=100.0, busy=1000, ours=50)
    # 2 s: the machine was busy 3.0 CPU-seconds, our tree 1.0 -> others 2.0 CPU-s / 2 s = 1.0 core
    end = Sample(wall=102.0, busy=1000 + 3 * HZ, ours=50 + HZ)
    cond = mc.conditions(start, end)
    assert cond["background_cores"] == 1.0
    assert cond["own_cores"] == 0.5
    assert cond["seconds"] == 2.0
    assert "loadavg_1m" in cond and "cpu_mhz" in cond


def test_background_never_negative_and_unknown_without_proc_stat() -> None:
    # jiffy sampling can make our tree look busier than the machine over a short span
    cond = mc.conditions(Sample(0.0, 100, 0), Sample(1.0, 101, 3))
    assert cond["background_cores"] == 0.0
    assert mc.conditions(Sample(0.0, None, 0), Sample(1.0, None, 3))["background_cores"] is None


# -- the decision -------------------------------------------------------------------------


def test_busy_measurement_is_provisional_quiet_one_is_not() -> None:
    busy = {"conditions": {"background_cores": 1.8}}
    quiet = {"conditions": {"background_cores": 0.1}}
    assert mc.provisional_reason(busy, "profile", 0.5) == "background load 1.8 cores during profile"
    assert mc.provisional_reason(quiet, "profile", 0.5) is None
    # the threshold is the recipe's: a generous one accepts the busy run
    assert mc.provisional_reason(busy, "profile", 2.0) is None


def test_noise_beyond_its_target_is_provisional_too() -> None:
    noisy = {"conditions": {"background_cores": 0.0}, "noise": "profile not stable at batch 8"}
    assert mc.provisional_reason(noisy, "profile", 0.5) == "profile not stable at batch 8"
    both = {"conditions": {"background_cores": 0.9}, "noise": "profile not stable at batch 8"}
    assert mc.provisional_reason(both, "profile", 0.5) == ("background load 0.9 cores during profile; "
                                                           "profile not stable at batch 8")


def test_results_without_conditions_are_trusted() -> None:
    # entries measured before conditions were recorded, or where /proc could not be read
    assert mc.provisional_reason({"batches": {}}, "profile", 0.5) is None
    assert mc.provisional_reason({"conditions": {"background_cores": None}}, "profile", 0.5) is None


def test_judge_marks_the_result_and_stale_reason_reads_it_back() -> None:
    policy = MeasurePolicy(max_background_load=0.5)
    marked = mc.judge({"conditions": {"background_cores": 3.1}}, "finalists", policy)
    assert marked["provisional"] == {"reason": "background load 3.1 cores during finalists"}
    assert mc.stale_reason(marked) == "provisional measurement (background load 3.1 cores during finalists)"
    kept = mc.judge({"conditions": {"background_cores": 0.2}}, "finalists", policy)
    assert "provisional" not in kept and mc.stale_reason(kept) is None


def test_unservable_only_for_timed_targets() -> None:
    provisional = {"provisional": {"reason": "background load 1.2 cores during profile"}}
    plain = MeasurePolicy()
    assert mc.unservable_reason(True, provisional, plain) == \
        "provisional measurement (background load 1.2 cores during profile)"
    assert mc.unservable_reason(True, {}, plain) is None
    # conversions and checks are never measured again, whatever their result says
    assert mc.unservable_reason(False, provisional, MeasurePolicy(remeasure=True)) is None
    assert mc.unservable_reason(True, {}, MeasurePolicy(remeasure=True)) == "remeasure requested"


def test_describe() -> None:
    assert mc.describe({"background_cores": 1.25, "loadavg_1m": 2.0, "cpu_mhz": 2400.0}) == \
        "background 1.2 cores, load 2.0, 2400 MHz"
    assert mc.describe({}) == "conditions not recorded"


# -- the probe (real /proc) ----------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc")
def test_tree_counts_a_spinning_child_as_ours() -> None:
    """A child of the measuring process is ours, not background: its CPU time is in our tree."""
    child = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<1.5: pass"])
    try:
        with mc.Probe() as probe:
            child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    cond = probe.conditions
    # the child spun (at most) 1.5 s: once it is reaped its time is in our cutime, so it counts as ours
    assert cond["own_cores"] * cond["seconds"] >= 0.2, cond
    assert cond["background_cores"] is not None and cond["background_cores"] >= 0.0


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc")
def test_a_process_outside_the_tree_is_background() -> None:
    """A spinning process that is not ours shows up as background CPU, not as our own."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        time.sleep(0.3)
        # the hog is this test's child, so measure for a tree it is not in: a pid that does not exist
        nobody = 2 ** 22 + 1
        start = mc.sample(root=nobody)
        time.sleep(1.0)
        cond = mc.conditions(start, mc.sample(root=nobody))
    finally:
        hog.kill()
        hog.wait()
    # the hog alone keeps (about) one core busy; allow for a shared machine's scheduling
    assert cond["background_cores"] >= 0.5, cond
    assert cond["own_cores"] == 0.0
