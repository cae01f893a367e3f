"""The process guard for real: a command's whole tree, other sessions and orphans included, stops
when asked and dies with the process that started it, however that process dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from procs import alive, identity, kill_all

from navbuild import supervise

#: the promise: a killed caller's processes are gone this long after it died (issue 13, part 3).
#: The guard takes KILL_GRACE_S (SIGTERM, then SIGKILL); the rest is slack for a busy machine.
GONE_WITHIN_S = 3.0

# Starts a grandchild in a session of its own and a daemon (double fork: its parent exits at
# once, so it is nobody's child), prints its own pid, then waits.
TREE = textwrap.dedent('''
    import os, subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    middle = os.fork()
    if middle == 0:
        if os.fork() == 0:
            time.sleep(600)
        os._exit(0)
    os.waitpid(middle, 0)
    print(os.getpid(), flush=True)
    time.sleep(600)
''')

# A program that starts TREE under the guard, says so, and waits: killed by the test.
CALLER = textwrap.dedent('''
    import sys, time
    from navbuild import supervise
    supervise.start([sys.executable, "-c", sys.argv[1]])
    time.sleep(600)
''')


def _tree_of(root: int, size: int) -> set[tuple[int, int]]:
    """The (pid, start) of ``root``'s descendants once there are ``size`` of them."""
    deadline = time.monotonic() + 60
    while len(found := supervise.descendants(root)) < size:
        assert time.monotonic() < deadline, f"only {found} below {root}"
        time.sleep(0.05)
    return {ident for pid in found if (ident := identity(pid))}


def _gone(tree: set[tuple[int, int]], within_s: float) -> list[tuple[int, str]]:
    """Those of ``tree`` still alive after ``within_s`` (returns as soon as none is)."""
    deadline = time.monotonic() + within_s
    while (left := alive(tree)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.mark.parametrize("how", ["SIGKILL to the caller", "SIGKILL to its group", "SIGTERM to the caller"])
def test_the_whole_tree_dies_with_its_caller(how: str) -> None:
    caller = subprocess.Popen([sys.executable, "-c", CALLER, TREE], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    tree: set[tuple[int, int]] = set()
    try:
        assert caller.stdout is not None
        command = int(caller.stdout.readline())
        tree = _tree_of(caller.pid, 4)  # guard, command, the grandchild in its own session, the daemon
        assert command in {pid for pid, _ in tree}
        if how == "SIGKILL to its group":
            os.killpg(caller.pid, signal.SIGKILL)  # the guard has a session of its own: not in it
        else:
            caller.send_signal(signal.SIGKILL if how.startswith("SIGKILL") else signal.SIGTERM)
        caller.wait(timeout=60)
        assert _gone(tree, GONE_WITHIN_S) == []
    finally:
        caller.kill()
        caller.wait()
        kill_all(tree)


def test_stop_ends_the_tree_and_returns_the_exit_code() -> None:
    proc = supervise.start([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    tree: set[tuple[int, int]] = set()
    try:
        assert proc.popen.stdout is not None
        proc.popen.stdout.readline()
        tree = _tree_of(proc.pid, 3)  # the command, its grandchild, the daemon (adopted by the guard)
        assert proc.exit_code() is None
        assert proc.stop() == -signal.SIGTERM
        assert alive(tree) == []  # gone when stop() returns, not later
        assert proc.stop() == -signal.SIGTERM  # twice is fine
    finally:
        proc.stop()
        kill_all(tree)


def test_a_command_gets_its_stop_signal_and_grace_then_is_killed() -> None:
    clean = textwrap.dedent('''
        import signal, sys, time
        def stop(*_):
            print("clean stop", flush=True)
            sys.exit(0)
        signal.signal(signal.SIGINT, stop)
        print("up", flush=True)
        time.sleep(600)
    ''')
    proc = supervise.start([sys.executable, "-c", clean], stop_signal=signal.SIGINT, stdout=subprocess.PIPE, text=True)
    assert proc.popen.stdout is not None
    assert proc.popen.stdout.readline() == "up\n"
    assert proc.stop() == 0
    assert proc.popen.stdout.read() == "clean stop\n"

    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)"
    proc = supervise.start([sys.executable, "-c", stubborn], grace_s=0.5, stdout=subprocess.PIPE, text=True)
    assert proc.popen.stdout is not None
    assert proc.popen.stdout.readline() == "up\n"
    assert proc.stop() == -signal.SIGKILL


def test_what_a_finished_command_left_running_is_stopped_with_it() -> None:
    leaves = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], "
              "start_new_session=True); print(p.pid, flush=True); sys.exit(3)")
    proc = supervise.start([sys.executable, "-c", leaves], stdout=subprocess.PIPE, text=True)
    assert proc.popen.stdout is not None
    left = identity(int(proc.popen.stdout.readline()))
    assert left is not None
    try:
        assert proc.wait(timeout=60) == 3
        assert alive({left}) == []
    finally:
        kill_all({left})


def test_exit_codes_and_signals_pass_through_and_a_missing_command_is_an_os_error() -> None:
    assert supervise.start([sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"]).wait(timeout=60) == -9
    with pytest.raises(FileNotFoundError, match="No such file or directory"):
        supervise.start(["/nonexistent/tritonserver"])


def test_a_process_that_asks_dies_with_its_parent() -> None:
    worker = ("import os, sys, time; from navbuild.supervise import die_with_parent; "
              "die_with_parent(int(sys.argv[1])); print(os.getpid(), flush=True); time.sleep(600)")
    caller = textwrap.dedent('''
        import os, subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid())])
        time.sleep(600)
    ''')
    proc = subprocess.Popen([sys.executable, "-c", caller, worker], stdout=subprocess.PIPE, text=True)
    child = None
    try:
        assert proc.stdout is not None
        child = identity(int(proc.stdout.readline()))
        assert child is not None
        proc.kill()
        proc.wait()
        assert _gone({child}, GONE_WITHIN_S) == []
    finally:
        proc.kill()
        proc.wait()
        if child is not None:
            kill_all({child})
    # a parent that ended before the request: the process ends at once
    late = subprocess.run([sys.executable, "-c", worker, "1"], capture_output=True, timeout=60)
    assert late.returncode == -signal.SIGKILL


@pytest.mark.parametrize("how", ["stop()", "SIGKILL to the caller"])
def test_the_files_a_killed_command_leaves_are_removed_once_its_tree_is_gone(how: str, tmp_path) -> None:
    # the Triton python backend's /dev/shm regions: a killed server never unlinks them
    program = textwrap.dedent(f'''
        import pathlib, sys, time
        from navbuild import supervise
        command = "import pathlib, time; pathlib.Path({str(tmp_path)!r}, 'region_1').write_text('x'); time.sleep(600)"
        supervise.start([sys.executable, "-c", command], leftovers=[{str(tmp_path / 'region_*')!r}])
        while not pathlib.Path({str(tmp_path)!r}, "region_1").exists():
            time.sleep(0.02)
        print("ready", flush=True)
        time.sleep(600)
    ''')
    (tmp_path / "kept").write_text("not the command's")
    if how == "stop()":
        proc = supervise.start([sys.executable, "-c", f"import pathlib, time; pathlib.Path({str(tmp_path)!r}, "
                                                      "'region_1').write_text('x'); time.sleep(600)"],
                               leftovers=[str(tmp_path / "region_*")])
        try:
            deadline = time.monotonic() + 60
            while not (tmp_path / "region_1").exists():
                assert time.monotonic() < deadline
                time.sleep(0.02)
        finally:
            proc.stop()
        assert not (tmp_path / "region_1").exists()
    else:
        caller = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True,
                                  start_new_session=True)
        tree: set[tuple[int, int]] = set()
        try:
            assert caller.stdout is not None and caller.stdout.readline().strip() == "ready"
            tree = _tree_of(caller.pid, 2)
            caller.send_signal(signal.SIGKILL)
            caller.wait(timeout=60)
            assert _gone(tree, GONE_WITHIN_S) == []
            deadline = time.monotonic() + GONE_WITHIN_S
            while (tmp_path / "region_1").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not (tmp_path / "region_1").exists()
        finally:
            caller.kill()
            caller.wait()
            kill_all(tree)
    assert (tmp_path / "kept").read_text() == "not the command's"
