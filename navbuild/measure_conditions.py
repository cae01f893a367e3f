"""The conditions a measurement ran under (background CPU, load, frequency) and when it is only provisional."""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

from navbuild.supervise import descendants, process_stats

#: Background cores busy (other processes' CPU time over the measurement, averaged) above which a
#: measurement is provisional. 0.5 suits 2-core CI runners: half a core taken by others is a
#: quarter of such a machine, which a 2-thread profile cannot help feeling, while an idle
#: machine's daemons stay well below it. Measured here over ~0.1 s windows the figure has a
#: resolution of about 0.2 cores (jiffies), so a stricter default would flag quiet runs.
#: It is a policy, not an input of the measurement: it never enters a cache key.
DEFAULT_MAX_BACKGROUND_LOAD = 0.5

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class MeasurePolicy:
    """How a build treats timed targets (carried by the graph; not part of any key)."""

    max_background_load: float = DEFAULT_MAX_BACKGROUND_LOAD
    remeasure: bool = False  # re-run every timed target even when its measurement is cached


@dataclass(frozen=True)
class Sample:
    """One reading: wall clock, the machine's busy jiffies, and the measuring process tree's jiffies."""

    wall: float
    busy: int | None  # every CPU's non-idle jiffies (None: /proc/stat unreadable)
    ours: int  # CPU jiffies of the measuring process and its descendants (reaped ones included)


def machine_busy_jiffies() -> int | None:
    """Jiffies every CPU spent not idle: user, nice, system, irq, softirq and steal (a hypervisor's
    other guests take CPU from us as much as a local process does)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:9]] + [0] * 8
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return user + nice + system + irq + softirq + steal


def tree_jiffies(root: int) -> int:
    """CPU jiffies of ``root`` and every live descendant, counting what they reaped (cutime, cstime):
    a worker that ends and is reaped moves its time into its parent's figure, not out of the tree."""
    stats = process_stats()
    tree = [root, *descendants(root, stats, zombies=True)]
    # utime stime cutime cstime
    return sum(sum(int(v) for v in stats[pid][11:15]) for pid in tree if len(stats.get(pid, ())) >= 15)


def sample(root: int | None = None) -> Sample:
    """Read the clock, the machine's busy time and the measuring tree's CPU time now."""
    return Sample(wall=time.monotonic(), busy=machine_busy_jiffies(), ours=tree_jiffies(root or os.getpid()))


def cpu_frequency_mhz() -> float | None:
    """Mean current frequency of the CPUs (cpufreq), or None where the machine does not expose it."""
    values = []
    for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq"):
        try:
            with open(path, encoding="ascii") as f:
                values.append(int(f.read().strip()) / 1000.0)
        except (OSError, ValueError):
            continue
    return round(sum(values) / len(values), 1) if values else None


def conditions(start: Sample, end: Sample) -> dict[str, Any]:
    """What the machine did between two samples, as a JSON-able record.

    ``background_cores`` (other processes' CPU time / wall time) is what decides: the load
    average lags by a minute and counts the measurement itself, so it is recorded only.
    """
    seconds = max(end.wall - start.wall, 1e-9)
    ours = max(end.ours - start.ours, 0) / _HZ
    record: dict[str, Any] = {"seconds": round(seconds, 3), "cpus": os.cpu_count() or 1,
                              "own_cores": round(ours / seconds, 2)}
    if start.busy is not None and end.busy is not None:
        busy = max(end.busy - start.busy, 0) / _HZ
        record["background_cores"] = round(max(busy - ours, 0.0) / seconds, 2)
    else:
        record["background_cores"] = None
    try:
        record["loadavg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        record["loadavg_1m"] = None
    record["cpu_mhz"] = cpu_frequency_mhz()
    return record


class Probe:
    """Measure the conditions of a block: ``with Probe() as p: ...`` then ``p.conditions``.

    ``root`` is the measuring process (default: this one); its descendants count as ours too
    (finalist workers, a Triton server, perf_analyzer).
    """

    def __init__(self, root: int | None = None) -> None:
        self.root = root or os.getpid()
        self.start: Sample | None = None
        self.conditions: dict[str, Any] = {}

    def __enter__(self) -> "Probe":
        self.start = sample(self.root)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.start is not None
        self.conditions = conditions(self.start, sample(self.root))


def describe(cond: Mapping[str, Any]) -> str:
    """A short text of a conditions record for logs: ``background 0.1 cores, load 0.7, 2400 MHz``."""
    if not cond:
        return "conditions not recorded"
    bg = cond.get("background_cores")
    parts = [f"background {bg:.1f} cores" if bg is not None else "background unknown"]
    if cond.get("loadavg_1m") is not None:
        parts.append(f"load {cond['loadavg_1m']:.1f}")
    if cond.get("cpu_mhz"):
        parts.append(f"{cond['cpu_mhz']:.0f} MHz")
    return ", ".join(parts)


def provisional_reason(result: Mapping[str, Any], what: str, max_background_load: float) -> str | None:
    """Why a timed step's result is only provisional, or None when it can be trusted.

    Pure: reads the step's recorded ``conditions`` and the ``noise`` it reported against its
    own stability target (a step's result without conditions predates them and is trusted).
    """
    reasons = []
    cond = result.get("conditions") or {}
    background = cond.get("background_cores")
    if background is not None and background > max_background_load:
        reasons.append(f"background load {background:.1f} cores during {what}")
    if result.get("noise"):
        reasons.append(str(result["noise"]))
    return "; ".join(reasons) or None


def judge(result: dict, what: str, policy: MeasurePolicy) -> dict:
    """``result`` with ``provisional: {reason}`` added when it should not be served to the next build."""
    why = provisional_reason(result, what, policy.max_background_load)
    return {**result, "provisional": {"reason": why}} if why else result


def unservable_reason(timed: bool, result: Mapping[str, Any] | None, policy: MeasurePolicy) -> str | None:
    """Why a cached entry must not be served to this build: a timed target under ``remeasure``,
    or one whose measurement was provisional. None: serve it (conversions and checks always)."""
    if not timed:
        return None
    if policy.remeasure:
        return "remeasure requested"
    return stale_reason(result)


#: how a build's outcome reason begins when it measured a timed target again rather than serve it
MEASURED_AGAIN = "measured again"


def stale_reason(result: Mapping[str, Any] | None) -> str | None:
    """Why a cached timed result must be measured again (it was provisional), else None."""
    prov = (result or {}).get("provisional")
    if not prov:
        return None
    return f"provisional measurement ({prov.get('reason', 'unknown conditions')})"


__all__ = ["DEFAULT_MAX_BACKGROUND_LOAD", "MEASURED_AGAIN", "MeasurePolicy", "Probe", "conditions", "sample", "provisional_reason",
           "judge", "unservable_reason", "stale_reason", "describe", "tree_jiffies", "machine_busy_jiffies", "cpu_frequency_mhz"]
