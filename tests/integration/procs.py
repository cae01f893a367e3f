"""The live processes of this machine, for tests that prove nothing was left running."""

from __future__ import annotations

import os
from pathlib import Path


def live_commands() -> dict[int, str]:
    """Command line of every live (non-zombie) process, by pid, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            found[int(entry.name)] = cmdline
    return found


def identity(pid: int) -> tuple[int, int] | None:
    """(pid, start time) of a live (non-zombie) process, None if it is gone: a reused pid is another process."""
    try:
        fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else (pid, int(fields[19]))


def alive(identities: set[tuple[int, int]]) -> list[tuple[int, str]]:
    """Those of ``identities`` that still run, with their command lines."""
    commands = live_commands()
    return [(pid, commands.get(pid, "?")) for pid, start in identities if identity(pid) == (pid, start)]


def kill_all(identities: set[tuple[int, int]]) -> None:
    """SIGKILL those of ``identities`` that still run: a failing test must not leave them behind."""
    import os
    import signal

    for pid, start in identities:
        if identity(pid) == (pid, start):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def watch_until(root: int, moment, timeout_s: float = 600) -> set[tuple[int, int]]:
    """(pid, start) of every process seen below ``root`` until ``moment(command lines)`` holds for them.

    AssertionError if ``root`` ends first or the moment does not come within ``timeout_s``.
    """
    import time

    from navbuild.supervise import descendants

    seen: set[tuple[int, int]] = set()
    deadline = time.monotonic() + timeout_s
    while True:
        assert identity(root) is not None, f"process {root} ended before the awaited moment"
        below = descendants(root)
        seen |= {ident for pid in below if (ident := identity(pid))}
        commands = live_commands()
        if moment([commands.get(pid, "") for pid in below]):
            return seen
        assert time.monotonic() < deadline, "the awaited moment never came"
        time.sleep(0.05)


def left_after(seen: set[tuple[int, int]], mention: str, within_s: float) -> list[tuple[int, str]]:
    """What still runs ``within_s`` after a kill: of ``seen``, and any process whose command line
    mentions ``mention`` (a project's folder); returns as soon as nothing does."""
    import time

    deadline = time.monotonic() + within_s
    while True:
        left = alive(seen)
        known = {pid for pid, _ in left}
        left += [(pid, cmd) for pid, cmd in live_commands().items() if mention in cmd and pid not in known]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


#: the promise: a killed build's processes are gone this long after it died (issue 13, part 3)
GONE_WITHIN_S = 3.0


def left_after_killing(build, moment, mention: str, group: bool, timeout_s: float = 600) -> list[tuple[int, str]]:
    """SIGKILL ``build`` (a Popen in a session of its own; with ``group``, its whole process group)
    once ``moment(commands)`` holds below it; return what still runs GONE_WITHIN_S later. Reaps the
    build and kills whatever it saw, whatever happens."""
    import signal

    seen: set[tuple[int, int]] = set()
    try:
        seen = watch_until(build.pid, moment, timeout_s=timeout_s)
        if group:
            os.killpg(build.pid, signal.SIGKILL)
        else:
            build.kill()
        build.wait()
        return left_after(seen, mention, GONE_WITHIN_S)
    finally:
        build.kill()
        build.communicate()
        kill_all(seen)
