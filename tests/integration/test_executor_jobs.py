"""executor.jobs: N targets at once on this machine build what one at a time builds."""

from __future__ import annotations

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
