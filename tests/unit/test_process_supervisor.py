"""The one process-group supervisor: its process table, and a command stopped with all it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from navbuild import supervise

PACKAGE = Path(supervise.__file__).parent

# a command that starts a child, says so, and waits
PARENT_AND_CHILD = ("import subprocess, sys, time; "
                    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
                    "print('up', flush=True); time.sleep(120)")


def test_descendants_walk_the_table_through_zombies() -> None:
    # fields after the command name: state, ppid, pgrp
    stats = {10: ["S", "1", "10"], 11: ["S", "10", "10"], 12: ["Z", "11", "10"], 13: ["S", "12", "10"],
             20: ["S", "1", "20"]}
    assert sorted(supervise.descendants(10, stats)) == [11, 13]
    assert sorted(supervise.descendants(10, stats, zombies=True)) == [11, 12, 13]
    assert supervise.descendants(13, stats) == []


def test_the_process_table_has_this_process() -> None:
    stats = supervise.process_stats()
    if sys.platform.startswith("linux"):
        state, ppid, pgrp = stats[os.getpid()][:3]
        assert state in "RS" and int(ppid) == os.getppid() and int(pgrp) == os.getpgrp()
        assert len(stats[os.getpid()]) >= 15  # utime, stime, cutime, cstime: what measurements read


def test_a_stopped_command_takes_what_it_started_with_it() -> None:
    proc = supervise.start([sys.executable, "-c", PARENT_AND_CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.popen.stdout is not None and proc.popen.stdout.readline() == "up\n"
        below = supervise.descendants(proc.pid)
        assert len(below) == 2  # the command and its child, both under the guard
        assert set(below) <= set(supervise.group_members(proc.pid))  # the guard's group: pid is its id
        assert proc.exit_code() is None
    finally:
        code = proc.stop()
    assert code == -signal.SIGTERM
    assert supervise.descendants(proc.pid) == [] and supervise.group_members(proc.pid) == []
    assert proc.stop() == code  # twice is fine


def test_no_other_module_starts_or_stops_a_process_group() -> None:
    # isolation, the Triton server and Model Analyzer all go through supervise.start
    found = [f"{path.relative_to(PACKAGE)}:{n}" for path in sorted(PACKAGE.rglob("*.py"))
             if path != Path(supervise.__file__)
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"killpg|start_new_session|setsid|PR_SET_", line)
             and not line.lstrip().startswith("#")]
    assert found == []
