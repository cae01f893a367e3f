"""The reporter interface: library code emits events, reporters decide how to show them."""

from __future__ import annotations

from typing import Any


class Reporter:
    """Receives build events. The base class ignores them all (the API's default)."""

    def warning(self, message: str) -> None:
        """Something the user should know that does not stop the build."""

    def note(self, message: str) -> None:
        """Something the build did that is worth a line (e.g. discovering the source's dependencies)."""

    def planned(self, plan: Any) -> None:
        """The plan of a build, before anything runs."""

    def target_started(self, target_id: str, kind: str) -> None:
        """A target starts building (it was not in the cache)."""

    def target_running(self, target_id: str, log_path: Any) -> None:
        """A started target's step now runs in its child process, writing ``log_path``."""

    def waiting(self, target_id: str, holder: dict) -> None:
        """Another process holds the lock of this target's cache entry; the build waits for it.

        ``holder`` says what is known of it: ``pid``, ``command``, ``what``, ``since``, ``lock``.
        """

    def targets_total(self, total: int, final: bool) -> None:
        """The build now has ``total`` targets; ``final`` is false while a later phase may add more."""

    def target_finished(self, outcome: Any) -> None:
        """A target ended: built, cached, failed, skipped or unavailable."""

    def build_finished(self, summary: dict) -> None:
        """The whole build ended; ``summary`` is what summary.json holds."""


class CollectingReporter(Reporter):
    """Keeps every event in a list (tests, the Python API)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def warning(self, message: str) -> None:
        self.events.append(("warning", message))

    def note(self, message: str) -> None:
        self.events.append(("note", message))

    def planned(self, plan: Any) -> None:
        self.events.append(("planned", plan))

    def target_started(self, target_id: str, kind: str) -> None:
        self.events.append(("started", target_id))

    def waiting(self, target_id: str, holder: dict) -> None:
        self.events.append(("waiting", (target_id, holder)))

    def targets_total(self, total: int, final: bool) -> None:
        self.events.append(("total", (total, final)))

    def target_finished(self, outcome: Any) -> None:
        self.events.append(("finished", outcome))

    def build_finished(self, summary: dict) -> None:
        self.events.append(("summary", summary))
