"""A build killed by SIGKILL (a CI timeout, the OOM killer) leaves none of its processes running."""

from __future__ import annotations

import pytest
from procs import left_after_killing


@pytest.mark.parametrize("target", ["build", "group"])
def test_a_build_killed_during_a_step_leaves_nothing_running(project, target):
    # the finalists step runs one worker process per finalist; many rounds keep it going
    build = project.popen("recipe=tiny", "profile.finalist_rounds=50")
    # the moment: the finalists' workers run (below the guard and the step child)
    finalists_running = lambda commands: sum("multiprocessing" in c for c in commands) >= 2  # noqa: E731
    assert left_after_killing(build, finalists_running, str(project.root), group=target == "group") == []
