"""A build killed by SIGKILL (a CI timeout, the OOM killer) leaves none of its processes running."""

from __future__ import annotations

import os
import signal

import pytest
from procs import kill_all, left_after, watch_until

#: the promise: a killed build's processes are gone this long after it died (issue 13, part 3)
GONE_WITHIN_S = 3.0


@pytest.mark.parametrize("target", ["build", "group"])
def test_a_build_killed_during_a_step_leaves_nothing_running(project, target):
    # the finalists step runs one worker process per finalist; many rounds keep it going
    build = project.popen("recipe=tiny", "profile.finalist_rounds=50")
    seen: set[tuple[int, int]] = set()
    try:
        # the moment: the finalists' workers run (below the guard and the step child)
        seen = watch_until(build.pid, lambda commands: sum("multiprocessing" in c for c in commands) >= 2)
        assert len(seen) >= 4
        if target == "group":
            os.killpg(build.pid, signal.SIGKILL)
        else:
            build.kill()
        build.wait()
        assert left_after(seen, str(project.root), GONE_WITHIN_S) == []
    finally:
        build.kill()
        build.communicate()
        kill_all(seen)

