"""What happened to a target in a build (its outcome), and the rule that skips a profile of an incorrect variant.

Declared below the executor because the later phases (navbuild.planning.phases) read the
outcomes of the targets they wait for, in a build and, from the cache, in a plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from navbuild.planning.target import CORRECTNESS

BUILT, CACHED, FAILED, SKIPPED, UNAVAILABLE = "built", "cached", "failed", "skipped", "unavailable"


@dataclass
class TargetOutcome:
    """What happened to one target in a build."""

    id: str
    kind: str
    variant: str | None
    status: str
    key: str | None = None
    payload: dict | None = None
    digest: str | None = None
    seconds: float = 0.0
    result: dict = field(default_factory=dict)
    reason: str = ""
    path: Path | None = None  # the target's folder under the build dir
    out_dir: Path | None = None  # the cache entry's out/ folder (what dependents read)
    log_path: Path | None = None
    reproduce: Path | None = None
    log_tail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "variant": self.variant, "status": self.status,
                "key": self.key, "digest": self.digest, "seconds": round(self.seconds, 3),
                "reason": self.reason, "path": str(self.path) if self.path else None,
                "log": str(self.log_path) if self.log_path else None}


def failed_check(outcomes: Mapping[str, TargetOutcome], variant: str | None) -> str | None:
    """Why a variant's profile is skipped: its correctness check did not pass (None: it did, or it has none)."""
    check = outcomes.get(f"{CORRECTNESS}/{variant}")
    if check is None:
        return None
    if check.status not in (BUILT, CACHED):
        return f"correctness/{variant} {check.status}"
    if check.result.get("verdict") != "pass":
        return f"correctness failed: {check.result.get('reason', '')}".rstrip(": ")
    return None
