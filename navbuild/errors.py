"""The exception hierarchy: one root, and the exit code each kind maps to."""

from __future__ import annotations


class NavbuildError(Exception):
    """Root of every error navbuild raises on purpose."""

    exit_code = 1


class RecipeError(NavbuildError):
    """The recipe or its overrides are wrong: shown without a traceback, exit code 2.

    ``problems`` lists every problem found, each as ``key.path: message``.
    """

    exit_code = 2

    def __init__(self, problems: list[str] | str, where: str = "recipe") -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.where = where
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{where} has {len(self.problems)} problem(s):\n{lines}")


class InputError(NavbuildError):
    """The user's inputs (model, samples, files) do not fit the recipe: exit code 2."""

    exit_code = 2


class StepFailed(NavbuildError):
    """A target's step failed in its child process; carries the log tail and paths."""

    exit_code = 1

    def __init__(self, target_id: str, message: str, log_path: str | None = None,
                 log_tail: str = "", reproduce: str | None = None) -> None:
        self.target_id = target_id
        self.log_path = log_path
        self.log_tail = log_tail
        self.reproduce = reproduce
        super().__init__(f"{target_id}: {message}")


class CacheError(NavbuildError):
    """The cache store cannot be used (not writable, wrong layout)."""

    exit_code = 1


class DiskFull(NavbuildError):
    """A write failed for lack of space (ENOSPC, EDQUOT); the message names the file system and what was written."""

    exit_code = 1


class MissingTool(NavbuildError):
    """An external tool or library is not installed; the message names what to install: exit code 2."""

    exit_code = 2


class ServerError(NavbuildError):
    """A Triton server did not start, is not ready, or failed; the message holds its log lines."""

    exit_code = 1

    def __init__(self, message: str, log_path: str | None = None) -> None:
        self.log_path = log_path
        super().__init__(message)
