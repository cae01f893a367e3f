"""The recipe's executor section: checked like every section, local and one at a time by default."""

from __future__ import annotations

from navbuild.executor_settings import ExecutorConfig
from navbuild.recipe.schema import Recipe
from navbuild.settings import check_settings


def test_a_wrong_kind_or_jobs_is_named_with_its_path():
    problems = check_settings(ExecutorConfig(kind="raay", jobs=0), prefix="executor.")
    assert problems == ["executor.kind: unknown value 'raay' (did you mean 'ray'?); choose one of local, ray",
                        "executor.jobs: 0 must be >= 1"]


def test_the_default_runs_one_target_at_a_time_on_this_machine():
    assert Recipe().executor == ExecutorConfig(kind="local", jobs=1, address="", runtime_env={})
