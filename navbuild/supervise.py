"""Child processes that die with navbuild: each command runs under a guard that stops its whole tree."""

# This file also runs on its own as the guard (``python -I -S supervise.py ...``, started by
# start()): it imports the standard library only, so that the command's environment (a
# PYTHONPATH of the Triton stack's, say) cannot break it, and it starts in a few ms (site
# and its .pth files took 50 ms of the guard's 80).

from __future__ import annotations

import contextlib
import ctypes
import glob
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: how long a command asked to stop gets to end by itself before its whole tree is killed
STOP_GRACE_S = 10.0
#: after SIGTERM to every process of a tree, how long they get before SIGKILL
KILL_GRACE_S = 1.5
#: how long stop() waits beyond the guard's own budget before it kills the group itself
_MARGIN_S = 3.0
#: a process that outlives SIGKILL this long is stuck in the kernel; the guard stops waiting for it
_GIVE_UP_S = 10.0
#: how long a guard below another has to stop its own tree and remove its leftovers before the
#: guard above SIGKILLs it too
_NESTED_GUARD_S = 2 * KILL_GRACE_S + 1.0
_POLL_S = 0.02

_THIS_FILE = str(Path(__file__).absolute())
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


class Supervised:
    """A command started by :func:`start` with everything it starts.

    ``pid`` is its guard's, which is also the group id of the guard and the command.
    """

    def __init__(self, popen: subprocess.Popen, grace_s: float) -> None:
        self.popen = popen
        self.grace_s = grace_s

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exit_code(self) -> int | None:
        """The command's exit code (negative: killed by that signal), None while it runs; never reaps."""
        if self.popen.returncode is not None:
            return self.popen.returncode
        return exit_code(self.popen.pid)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the command (and the guard's cleanup after it); TimeoutExpired as Popen.wait."""
        return self.popen.wait(timeout=timeout)

    def stop(self) -> int:
        """Stop the command and everything it started; return its exit code. Safe to call twice.

        The guard does the work (the command's stop signal, its grace, then the whole tree);
        only a guard that does not end in time is killed from here, with its group.
        """
        popen = self.popen
        if popen.returncode is not None:
            return popen.returncode
        if self.exit_code() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(popen.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.grace_s + KILL_GRACE_S + _MARGIN_S
            while self.exit_code() is None and time.monotonic() < deadline:
                time.sleep(_POLL_S)
        # The guard is not reaped yet, so its pid (the group id) cannot be anyone else's:
        # this reaches only the guard and what is left of its group.
        deadline = time.monotonic() + _GIVE_UP_S
        while group_members(popen.pid) and time.monotonic() < deadline:
            signal_group(popen.pid, signal.SIGKILL)
            time.sleep(_POLL_S)
        return popen.wait()


def start(cmd: Sequence[str | os.PathLike], *, grace_s: float = STOP_GRACE_S,
          stop_signal: signal.Signals = signal.SIGTERM, leftovers: Sequence[str] = (), **popen: Any) -> Supervised:
    """Start ``cmd`` in a session of its own under a guard; return once it runs (OSError if it cannot).

    The guard is a subreaper, so whatever the command starts, in any session, stays in its
    tree. It stops that whole tree (SIGTERM, then SIGKILL after KILL_GRACE_S): after the
    command ends; on stop(), once the command had ``stop_signal`` and ``grace_s`` to end by
    itself; and at once when the caller dies, however it dies (the kernel tells the guard:
    PR_SET_PDEATHSIG). The kernel does so when the *thread* that called start() ends: call it
    from the main thread or from one that lives as long as the command. ``popen`` goes to
    subprocess.Popen (stdout, env, cwd, ...); the command inherits it from the guard.
    ``leftovers``: glob patterns of files the command's tree may leave behind when killed (the
    Triton python backend's shared-memory regions in /dev/shm); the guard removes them once the
    whole tree is gone, however it ended.
    """
    read_fd, write_fd = os.pipe()
    guard = [sys.executable, "-I", "-S", _THIS_FILE, str(os.getpid()), repr(float(grace_s)),
             str(int(stop_signal)), str(write_fd), json.dumps(list(leftovers)),
             *(os.fspath(part) for part in cmd)]
    try:
        process = subprocess.Popen(guard, start_new_session=True, pass_fds=(write_fd,), **popen)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as report:
            answer = report.read().decode(errors="replace")
    except BaseException:
        Supervised(process, grace_s).stop()
        raise
    if answer != "ok":
        process.wait()
        errno, _, rest = answer.partition("\t")
        strerror, _, filename = rest.partition("\t")
        if errno.isdigit():
            raise OSError(int(errno), strerror, filename or None)
        raise OSError(f"navbuild's process guard did not start {cmd[0]} (exit code {process.returncode})")
    return Supervised(process, grace_s)


def die_with_parent(parent: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """Ask the kernel for ``sig`` when this process's parent ends; get it now if ``parent`` already has.

    For a process that navbuild starts without start() (multiprocessing's workers). The
    kernel sends it when the *thread* that started this process ends. No-op off Linux.
    """
    _prctl(_PR_SET_PDEATHSIG, int(sig))
    if os.getppid() != parent:  # the parent ended before the request was made
        os.kill(os.getpid(), sig)


def descendants(root: int, stats: dict[int, list[str]] | None = None, *, zombies: bool = False) -> list[int]:
    """Processes below ``root`` (its children, theirs, ...): live ones, zombies too if asked.

    ``stats`` is a reading of :func:`process_stats` to walk (default: a fresh one).
    """
    if stats is None:
        stats = process_stats()
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    found, todo = [], list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if zombies or stats[pid][0] != "Z":
            found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``, from /proc."""
    return [pid for pid, fields in process_stats().items() if fields[0] != "Z" and int(fields[2]) == pgid]


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """``sig`` to every process of group ``pgid``; nothing if the group is gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def exit_code(pid: int) -> int | None:
    """Our child's exit code (negative: killed by that signal), or None while it runs; never reaps it.

    Not reaping keeps the pid, which is also the group id of what it started, from being reused.
    """
    try:
        status = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return -1  # already reaped elsewhere
    if status is None:
        return None
    return status.si_status if status.si_code == os.CLD_EXITED else -status.si_status


def process_stats() -> dict[int, list[str]]:
    """pid -> the fields of /proc/PID/stat after the command name (state, ppid, pgrp, ...;
    ``[11:15]`` are utime, stime, cutime, cstime) of every process; empty off Linux."""
    found: dict[int, list[str]] = {}
    if not os.path.isdir("/proc"):  # not Linux: no process table to read
        return found
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        # the command name may hold spaces and parentheses: split after its last ')'
        _, paren, rest = text.rpartition(")")
        if paren:
            found[int(entry.name)] = rest.split()
    return found


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, ctypes.c_ulong(value), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


# -- the guard ---------------------------------------------------------------------------


#: what stops a guard (SIGTERM is also what the kernel sends it when its caller dies)
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


class _Guard:
    """Runs one command as a subreaper and stops every process below it; see start().

    Its signals stay blocked and are taken with sigtimedwait, never by a handler, so a
    stop cannot land between reaping the command and recording how it ended.
    """

    def __init__(self, parent: int, grace_s: float, stop_signal: int, leftovers: Sequence[str] = ()) -> None:
        self.parent = parent
        self.grace_s = grace_s
        self.stop_signal = stop_signal
        self.leftovers = tuple(leftovers)
        self.reaped: dict[int, int] = {}

    def run(self, cmd: list[str], report_fd: int) -> int:
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS | {signal.SIGCHLD})
        die_with_parent(self.parent, signal.SIGTERM)  # already gone: a SIGTERM waits, blocked
        guard = os.getpid()

        def in_child() -> None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            die_with_parent(guard)

        try:
            child = subprocess.Popen(cmd, preexec_fn=in_child)
        except OSError as e:
            os.write(report_fd, f"{e.errno or ''}\t{e.strerror or e}\t{e.filename or ''}".encode())
            return 127
        os.write(report_fd, b"ok")
        os.close(report_fd)
        status = self._wait(child.pid, None)
        if status is None:  # asked to stop, or the caller died
            if not self._parent_gone():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, self.stop_signal)
                status = self._wait(child.pid, time.monotonic() + self.grace_s)
        self._kill_tree()
        self._remove_leftovers()
        return self.reaped.get(child.pid, -signal.SIGKILL)

    def _wait(self, pid: int, deadline: float | None) -> int | None:
        """``pid``'s exit code once it ends; None at a stop signal (deadline None), or at the
        deadline or the caller's death (deadline given)."""
        while (status := self._reap(pid)) is None:
            if deadline is not None and (time.monotonic() > deadline or self._parent_gone()):
                return None
            info = signal.sigtimedwait(_STOP_SIGNALS | {signal.SIGCHLD}, 0.1 if deadline is not None else 1.0)
            if deadline is None and info is not None and info.si_signo in _STOP_SIGNALS:
                return self._reap(pid)
        return status

    def _parent_gone(self) -> bool:
        return os.getppid() != self.parent

    def _reap(self, pid: int | None = None) -> int | None:
        """Reap every finished child (adopted orphans too); ``pid``'s exit code once it has ended."""
        while True:
            try:
                done, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if done == 0:
                break
            self.reaped[done] = os.waitstatus_to_exitcode(status)
        return self.reaped.get(pid) if pid is not None else None

    def _kill_tree(self) -> None:
        """SIGTERM to every process below the guard, SIGKILL to those left after KILL_GRACE_S.

        A guard below this one (a step's Triton server or Model Analyzer) gets longer: it is
        stopping its own tree and then removes what that tree left (its leftovers).
        """
        start = time.monotonic()
        termed: set[int] = set()
        while time.monotonic() < start + KILL_GRACE_S + _GIVE_UP_S:
            self._reap()
            alive = descendants(os.getpid())
            if not alive:
                return
            now = time.monotonic()
            late = now > start + KILL_GRACE_S
            guards_late = now > start + _NESTED_GUARD_S
            for pid in alive:
                if late and not guards_late and _is_guard(pid):
                    continue  # it SIGKILLs its own tree at its own KILL_GRACE_S
                if late or pid not in termed:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL if late else signal.SIGTERM)
                    termed.add(pid)
            time.sleep(_POLL_S)


    def _remove_leftovers(self) -> None:
        """Delete the files the tree's processes left behind (they are all gone now)."""
        for pattern in self.leftovers:
            for path in glob.glob(pattern):
                with contextlib.suppress(OSError):
                    os.unlink(path)


def _is_guard(pid: int) -> bool:
    """Whether ``pid`` is a guard started by start() (this file run as a script)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return len(argv) > 3 and argv[3] == os.fsencode(_THIS_FILE)


def _exit_as(code: int) -> None:
    """End the guard as its command ended: the same exit code, or killed by the same signal."""
    if code >= 0:
        os._exit(code)
    import resource

    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a command's SIGSEGV must not dump the guard
    with contextlib.suppress(OSError, ValueError):  # SIGKILL's cannot be set, and needs not be
        signal.signal(-code, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {-code})
    os.kill(os.getpid(), -code)
    os._exit(128 - code)


def _main(argv: list[str]) -> None:
    """``supervise.py PARENT GRACE_S STOP_SIGNAL REPORT_FD LEFTOVERS_JSON COMMAND...`` (as start() writes it)."""
    parent, grace_s, stop_signal, report_fd, leftovers, *cmd = argv
    guard = _Guard(int(parent), float(grace_s), int(stop_signal), json.loads(leftovers))
    _exit_as(guard.run(cmd, int(report_fd)))


if __name__ == "__main__":
    _main(sys.argv[1:])
