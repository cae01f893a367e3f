"""A sweep's results: what each point built (its job's plain return value) and the sweep's summary, sweep.json.

A point's result travels back through the Hydra launcher that ran it (in this process, in
worker processes, on Slurm or on a Ray cluster), so it is plain picklable data. The sweep's
summary counts the targets of all points, the distinct keys among them, and the keys several
points share: with one cache (and its per-key locks) each shared key is built by one point and
served from the cache to the others, which ``built_by_several`` (0) shows. A measurement that
was provisional (taken under load) is measured again by the next point that needs it, as by the
next build: those keys are counted apart, in ``measured_again``.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from navbuild.measure_conditions import MEASURED_AGAIN

SWEEP_FILE = "sweep.json"


def point_result(overrides: Sequence[str], output_dir: Path | str, exit_code: int,
                 outcomes: Iterable[Any] = (), error: str = "", ran_here: bool = True) -> dict:
    """One point's result, as its job returns it: exit code, folder, and each target's key and status.

    ``outcomes`` are the build's target outcomes (anything with ``id``, ``key`` and ``status``);
    the process and host that ran the point (``ran_here``: this one) say where the launcher ran it.
    """
    return {
        "overrides": list(overrides),
        "output_dir": str(output_dir),
        "exit_code": int(exit_code),
        "targets": [{"id": o.id, "key": o.key, "status": o.status,
                     "measured_again": o.status == "built" and o.reason.startswith(MEASURED_AGAIN)}
                    for o in outcomes],
        "error": error,
        "pid": os.getpid() if ran_here else None,
        "host": socket.gethostname() if ran_here else None,
    }


def sweep_summary(points: Sequence[Mapping[str, Any]], launcher: str) -> dict:
    """The summary of a sweep from its points' results; its exit code is the worst point's."""
    points_by_key: dict[str, set[int]] = {}
    builders_by_key: dict[str, set[int]] = {}  # points that built a key (not measured it again)
    remeasured: set[str] = set()  # keys a point measured again: another point's measurement was provisional
    counts = {"built": 0, "cached": 0, "failed": 0}
    rows = []
    for num, point in enumerate(points):
        mine = {"built": 0, "cached": 0, "failed": 0}
        for t in point["targets"]:
            if t["status"] in mine:
                mine[t["status"]] += 1
            if t["key"]:
                points_by_key.setdefault(t["key"], set()).add(num)
                if t.get("measured_again"):
                    remeasured.add(t["key"])
                elif t["status"] == "built":
                    builders_by_key.setdefault(t["key"], set()).add(num)
        for status, n in mine.items():
            counts[status] += n
        rows.append({"overrides": list(point["overrides"]), "output_dir": point["output_dir"],
                     "exit_code": point["exit_code"], "targets": len(point["targets"]), **mine,
                     "pid": point.get("pid"), "host": point.get("host"), "error": point.get("error", "")})
    return {
        "launcher": launcher,
        "exit_code": max((p["exit_code"] for p in points), default=0),
        "points": rows,
        # what building each point on its own would have built
        "targets": sum(len(p["targets"]) for p in points),
        "distinct_keys": len(points_by_key),
        **counts,
        "shared": sum(1 for nums in points_by_key.values() if len(nums) > 1),
        # keys that more than one point built: 0 when the points share a cache with per-key locks
        "built_by_several": sum(1 for nums in builders_by_key.values() if len(nums) > 1),
        "measured_again": len(remeasured),
        # the processes the points ran in, as they reported them
        "processes": len({(p.get("host"), p.get("pid")) for p in points if p.get("pid") is not None}),
    }


def sweep_dir(output_dirs: Sequence[Path]) -> Path:
    """Where a sweep's summary goes: the folder its points' folders share (``build/<recipe>``)."""
    return Path(os.path.commonpath([str(Path(d).resolve()) for d in output_dirs]))


def write_sweep_summary(folder: Path, summary: dict) -> Path:
    """Write ``sweep.json`` into ``folder``; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SWEEP_FILE
    tmp = path.with_name(f".{SWEEP_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(path)
    return path


def render_sweep(summary: Mapping[str, Any]) -> list[str]:
    """The sweep's summary for people, one line each."""
    lines = [f"sweep: {len(summary['points'])} points through the {summary['launcher']} launcher "
             f"({summary['processes']} processes), exit code {summary['exit_code']}"]
    for num, p in enumerate(summary["points"]):
        what = f"{p['targets']} targets: {p['built']} built, {p['cached']} cached"
        if p["failed"]:
            what += f", {p['failed']} failed"
        line = f"  point {num} exit {p['exit_code']}  {p['output_dir']}  ({what})"
        if p["error"]:
            line += f"  {p['error']}"
        lines.append(line)
    lines.append(f"  {summary['targets']} targets in all points, {summary['distinct_keys']} distinct keys: "
                 f"{summary['built']} built, {summary['cached']} served from the cache")
    again = summary["measured_again"]
    lines.append(f"  shared: {summary['shared']} keys appear in several points; "
                 f"keys built by more than one point: {summary['built_by_several']}"
                 + (f" ({again} measurement(s) measured again: provisional where first measured)" if again else ""))
    return lines


__all__ = ["SWEEP_FILE", "point_result", "sweep_summary", "sweep_dir", "write_sweep_summary", "render_sweep"]
