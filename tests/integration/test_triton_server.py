"""A real tritonserver with a python-backend model: it serves HTTP and gRPC, reports failures, always stops."""

from __future__ import annotations

import glob
import importlib.util
import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from navbuild.errors import ServerError
from navbuild.supervise import group_members
from navbuild.triton import server as server_module
from navbuild.triton.server import TritonServer, connect, free_port
from navbuild.triton.stack import TritonStack, find_stack
from procs import live_commands

if importlib.util.find_spec("pytriton") is None:
    pytest.skip("nvidia-pytriton is not installed (pip install 'navbuild[triton]')", allow_module_level=True)

CONFIG = textwrap.dedent('''
    name: "{name}"
    backend: "python"
    max_batch_size: 8
    input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
    output [
      {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }},
      {{ name: "INFO" data_type: TYPE_STRING dims: [ 1 ] }}
    ]
    instance_group [ {{ kind: KIND_CPU count: 1 }} ]
''')

# Doubles INPUT0; INFO says where numpy and navbuild were imported from inside the stub.
DOUBLE = textwrap.dedent('''
    import json
    import sys

    import numpy as np
    import triton_python_backend_utils as pb_utils

    import navbuild


    class TritonPythonModel:
        def initialize(self, args):
            {initialize}

        def execute(self, requests):
            info = json.dumps({{"numpy": np.__file__, "navbuild": navbuild.__file__, "prefix": sys.prefix}})
            responses = []
            for request in requests:
                x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
                rows = np.array([[info.encode()]] * x.shape[0], dtype=np.object_)
                responses.append(pb_utils.InferenceResponse([
                    pb_utils.Tensor("OUTPUT0", (x * 2).astype(np.float32)),
                    pb_utils.Tensor("INFO", rows),
                ]))
            return responses
''')


def write_model(repository: Path, name: str, initialize: str = "pass") -> Path:
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(CONFIG.format(name=name))
    (repository / name / "1" / "model.py").write_text(DOUBLE.format(initialize=initialize))
    return repository


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line mentions ``text`` (a test's tmp_path catches its stubs)."""
    return [pid for pid, cmdline in live_commands().items() if text in cmdline]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> TritonStack:
    return find_stack(tmp_path_factory.mktemp("work"))


@pytest.fixture
def no_leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    assert processes_mentioning(str(tmp_path)) == []


def infer_http(url: str, x: np.ndarray) -> tuple[np.ndarray, dict]:
    from tritonclient import http

    client = http.InferenceServerClient(url)
    inp = http.InferInput("INPUT0", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("double", [inp])
    return result.as_numpy("OUTPUT0"), json.loads(result.as_numpy("INFO")[0][0])


def infer_grpc(url: str, x: np.ndarray) -> np.ndarray:
    from tritonclient import grpc

    client = grpc.InferenceServerClient(url)
    inp = grpc.InferInput("INPUT0", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return client.infer("double", [inp]).as_numpy("OUTPUT0")


def test_serves_http_and_grpc_then_stops_with_its_stubs(stack: TritonStack, tmp_path: Path,
                                                         no_leftovers: None) -> None:
    repository = write_model(tmp_path / "repo", "double")
    server = TritonServer(stack, repository, tmp_path / "server.log", startup_timeout_s=60)
    with server:
        assert server.http_url.startswith("127.0.0.1:") and server.grpc_url.startswith("127.0.0.1:")
        assert server.endpoint is not None and server.endpoint.version == "2.51.0"
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        out, info = infer_http(server.http_url, x)
        np.testing.assert_array_equal(out, x * 2)
        np.testing.assert_array_equal(infer_grpc(server.grpc_url, x), x * 2)
        # The stub imports this environment's numpy and this navbuild, not the base Python's.
        assert info["numpy"] == np.__file__
        import navbuild

        assert Path(info["navbuild"]).resolve() == Path(navbuild.__file__).resolve()
        assert info["prefix"] == sys.prefix
        assert connect(server.http_url).version == "2.51.0"
        pgid = server.pid
        assert pgid is not None
        members = group_members(pgid)
        assert pgid in members and len(members) >= 2  # the server and its model's stub
        assert glob.glob(server.shm_regions)  # its python backend's regions carry the server's own prefix
    assert server.pid is None
    assert group_members(pgid) == []
    assert glob.glob(server.shm_regions) == []
    server.stop()  # idempotent


def test_model_that_fails_to_initialize(stack: TritonStack, tmp_path: Path, no_leftovers: None) -> None:
    repository = write_model(tmp_path / "repo", "double",
                             initialize='raise RuntimeError("deliberate failure in initialize")')
    log = tmp_path / "server.log"
    with pytest.raises(ServerError, match=r"exited with code 1 before it was ready(.|\n)*"
                                          r"E\d{4} .*deliberate failure in initialize") as caught:
        TritonServer(stack, repository, log, startup_timeout_s=60).start()
    assert f"full log: {log}" in str(caught.value)
    assert "CudaDriverHelper" not in str(caught.value)  # a harmless line on every CPU-only start


def test_exception_inside_with_still_stops(stack: TritonStack, tmp_path: Path, no_leftovers: None) -> None:
    repository = write_model(tmp_path / "repo", "double")
    server = TritonServer(stack, repository, tmp_path / "server.log", startup_timeout_s=60)
    with pytest.raises(KeyboardInterrupt), server:
        pgid = server.pid
        raise KeyboardInterrupt
    assert pgid is not None and group_members(pgid) == []


# A user's program that starts a server, then either is interrupted (Ctrl-C) inside the
# `with`, or just ends without stopping it (atexit must).
CHILD = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from navbuild.triton.server import TritonServer
    from navbuild.triton.stack import find_stack

    work, repository, log, mode = sys.argv[1:5]
    server = TritonServer(find_stack(Path(work)), Path(repository), Path(log), startup_timeout_s=60).start()
    print(server.pid, flush=True)
    print(server.shm_regions, flush=True)
    if mode == "interrupt":
        with server:
            time.sleep(60)
    elif mode == "killed":
        time.sleep(60)
''')


@pytest.mark.parametrize("mode", ["interrupt", "exit", "killed"])
def test_callers_end_stops_the_server(stack: TritonStack, tmp_path: Path, no_leftovers: None, mode: str) -> None:
    repository = write_model(tmp_path / "repo", "double")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(stack.backend_dir.parent.parent), str(repository),
                              str(tmp_path / "server.log"), mode], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        pgid = int(child.stdout.readline())
        regions = child.stdout.readline().strip()
        assert len(group_members(pgid)) >= 2
        assert glob.glob(regions)
        if mode == "interrupt":
            child.send_signal(signal.SIGINT)
        elif mode == "killed":
            child.kill()  # no atexit, no stop(): the guard alone stops the server and removes its regions
        child.wait(timeout=60)
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 30
    while (group_members(pgid) or glob.glob(regions)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group_members(pgid) == []
    assert glob.glob(regions) == []


def test_no_bash_on_path_fails_fast_with_a_hint(stack: TritonStack, tmp_path: Path, no_leftovers: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(stack.python_bin))
    repository = write_model(tmp_path / "repo", "double")
    with pytest.raises(ServerError, match=r"Failed to run python backend stub(.|\n)*hint: .*bash"):
        TritonServer(stack, repository, tmp_path / "server.log", startup_timeout_s=60).start()


def test_startup_timeout_stops_the_server(stack: TritonStack, tmp_path: Path, no_leftovers: None) -> None:
    repository = write_model(tmp_path / "repo", "double", initialize="import time; time.sleep(60)")
    with pytest.raises(ServerError, match=r"not ready after 0\.5 s(.|\n)*full log"):
        TritonServer(stack, repository, tmp_path / "server.log", startup_timeout_s=0.5).start()


def test_port_clash_is_retried_with_new_ports(stack: TritonStack, tmp_path: Path, no_leftovers: None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1]])
        monkeypatch.setattr(server_module, "free_port", lambda: next(ports, None) or free_port())
        log = tmp_path / "server.log"
        (tmp_path / "empty-repo").mkdir()
        with TritonServer(stack, tmp_path / "empty-repo", log, startup_timeout_s=60) as server:
            assert server.http_url != f"127.0.0.1:{taken.getsockname()[1]}"
        text = log.read_text()
        assert "already in use" in text and "# navbuild attempt 2" in text


def test_connect_to_nothing() -> None:
    port = free_port()
    with pytest.raises(ServerError, match=f"no ready Triton server at 127.0.0.1:{port}"):
        connect(f"127.0.0.1:{port}", timeout_s=0.3)
