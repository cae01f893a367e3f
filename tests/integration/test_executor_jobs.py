"""executor.jobs: N targets at once on this machine build what one at a time builds."""

from __future__ import annotations

import time

from procs import live_commands

import navbuild


def digests(result) -> dict[str, str]:
    return {o.id: o.digest for o in result.outcomes.values()}


def test_two_jobs_build_the_same_artifacts_as_one(project):
    one = navbuild.build("tiny", ["output_dir=build/one", f"cache.dir={project.root / 'cache-one'}"])
    two = navbuild.build("tiny", ["output_dir=build/two", f"cache.dir={project.root / 'cache-two'}",
                                  "executor.jobs=2"])
    assert one.exit_code == two.exit_code == 0
    assert {o.status for o in two.outcomes.values()} == {"built"}
    assert digests(two) == digests(one) and None not in digests(two).values()
    again = navbuild.build("tiny", ["output_dir=build/two", f"cache.dir={project.root / 'cache-two'}",
                                    "executor.jobs=2"])
    assert {o.status for o in again.outcomes.values()} == {"cached"}


def test_ctrl_c_with_two_jobs_exits_130_and_stops_every_running_step(project):
    def children() -> list[int]:
        return [pid for pid, cmd in live_commands().items()
                if "navbuild.execute.child" in cmd and str(project.root) in cmd]

    # torch's reference and the onnx export are independent: both start at once
    code, out = project.ctrl_c_when(lambda: len(children()) >= 2, "recipe=tiny", "executor.jobs=2", settle_s=0.3)
    assert code == 130, out
    assert "Traceback" not in out
    deadline = time.monotonic() + 10
    while children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert children() == []
    tmp = project.cache / "tmp"
    assert (sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []) == []
