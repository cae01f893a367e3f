"""The live processes of this machine, for tests that prove nothing was left running."""

from __future__ import annotations

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
