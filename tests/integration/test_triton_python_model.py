"""A real Triton server (the one nvidia-pytriton bundles) serving models written by navbuild.triton.repository.write_local."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from navbuild.triton.model_config import ModelConfig, TritonTensor
from navbuild.triton.repository import write_local

REPO_ROOT = Path(__file__).resolve().parents[2]
#: long enough that requests sent together are batched together, short enough for a test
QUEUE_DELAY_US = 200_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_paths() -> tuple[Path, Path, Path]:
    """(tritonserver binary, bundled python backend, its shared libraries); skip when absent."""
    try:
        import pytriton
    except ImportError:
        pytest.skip("tritonserver is not installed (pip install nvidia-pytriton)")
    root = Path(pytriton.__file__).parent
    binary = root / "tritonserver" / "bin" / "tritonserver"
    if not binary.is_file():
        pytest.skip(f"tritonserver is not installed ({binary} is missing)")
    return binary, root / "tritonserver", root.parent / "nvidia_pytriton.libs"


def _backends(server_root: Path, into: Path) -> Path:
    """A backend folder whose python backend has the stub built for the running Python."""
    stub = server_root / "python_backend_stubs" / f"{sys.version_info[0]}.{sys.version_info[1]}" / \
        "triton_python_backend_stub"
    if not stub.is_file():
        pytest.skip(f"pytriton has no python backend stub for Python {sys.version_info[0]}.{sys.version_info[1]}")
    python = into / "python"
    shutil.copytree(server_root / "backends" / "python", python)
    shutil.copy2(stub, python / "triton_python_backend_stub")
    return into


def _server_env(libs: Path) -> dict[str, str]:
    """The environment the python backend stub needs to see this interpreter's packages.

    The stub embeds libpython3.X and finds its prefix by looking up ``python3`` on PATH, so
    this environment's bin folder goes first (through its pyvenv.cfg the stub gets the
    venv's site-packages). This interpreter's own libpython goes first on LD_LIBRARY_PATH so
    the stub runs the same Python build (else the system's libpython3.X, if any, is used).
    PYTHONPATH adds the repository root in case navbuild is not installed.
    """
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    lib_dirs = [str(libs)]
    libdir = sysconfig.get_config_var("LIBDIR")
    soname = sysconfig.get_config_var("INSTSONAME")
    if libdir and soname and (Path(libdir) / soname).is_file():
        lib_dirs.insert(0, libdir)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_dirs + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop("PYTHONHOME", None)  # would pin the stub to another prefix than the one PATH leads to
    return env


class Server:
    """A tritonserver process on free local ports."""

    def __init__(self, repo: Path, workdir: Path) -> None:
        binary, server_root, libs = _server_paths()
        self.http_port = _free_port()
        self.log = workdir / "tritonserver.log"
        command = [str(binary), "--model-repository", str(repo),
                   "--backend-directory", str(_backends(server_root, workdir / "backends")),
                   "--http-address", "127.0.0.1", "--http-port", str(self.http_port),
                   "--grpc-address", "127.0.0.1", "--grpc-port", str(_free_port()),
                   "--allow-metrics", "false", "--exit-timeout-secs", "5"]
        with open(self.log, "wb") as log:
            # own session: the server and its stubs form one process group we can check and end
            self.process = subprocess.Popen(command, env=_server_env(libs), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"tritonserver exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://{self.url}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"tritonserver not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate, then kill; afterwards no process of its group may be left."""
        group = self.process.pid
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        # stubs exit after the server; give them a moment before calling them orphans
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.killpg(group, signal.SIGKILL)
        raise AssertionError(f"processes of tritonserver's group {group} were left running (now killed)")


def _export_tiny(path: Path) -> Path:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()
    with torch.no_grad():  # mostly positive outputs, so rows put back in the wrong place would show
        model[0].bias.fill_(0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 4),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """A server with three models: ``tiny`` (batching), a copy renamed as Model Analyzer does,
    and ``loose`` whose declared dims let a wrong shape reach the runner."""
    pytest.importorskip("tritonclient.http")
    pytest.importorskip("onnxruntime")
    _server_paths()
    work = tmp_path_factory.mktemp("triton")
    onnx_file = _export_tiny(work / "exported.onnx")
    repo = work / "repo"
    x, y = [TritonTensor("x", "float32", (4,))], [TritonTensor("y", "float32", (3,))]
    config = ModelConfig(max_batch_size=8, instance_count=1, dynamic_batching=True, max_queue_delay_us=QUEUE_DELAY_US)
    tiny = write_local(repo, "tiny", "onnx", {"model.onnx": onnx_file}, x, y, config, {"intra_op_threads": "1"})
    write_local(repo, "loose", "onnx", {"model.onnx": onnx_file}, [TritonTensor("x", "float32", (-1,))], y,
                ModelConfig(max_batch_size=8), {"intra_op_threads": "1"})
    # what Model Analyzer does: copy the folder under a new name, rewrite name and instances
    copy = shutil.copytree(tiny, repo / "tiny_config_1")
    text = (copy / "config.pbtxt").read_text().replace('name: "tiny"', 'name: "tiny_config_1"')
    (copy / "config.pbtxt").write_text(text.replace("count: 1", "count: 2"))
    server = Server(repo, work)
    try:
        server.wait_ready()
        yield server, onnx_file
    finally:
        server.stop()


def _infer(url: str, model: str, x: np.ndarray) -> np.ndarray:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url)
    try:
        feed = httpclient.InferInput("x", list(x.shape), "FP32")
        feed.set_data_from_numpy(x)
        return client.infer(model, [feed]).as_numpy("y")
    finally:
        client.close()


def _reference(onnx_file: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _stats(url: str, model: str) -> tuple[int, int]:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url)
    try:
        stats = client.get_inference_statistics(model)["model_stats"][0]
        return int(stats["inference_count"]), int(stats["execution_count"])
    finally:
        client.close()


X = np.random.default_rng(0).uniform(-1, 1, (3, 4)).astype(np.float32)


def test_reference_rows_are_distinct(served: tuple[Server, Path]) -> None:
    """Guards the other tests: a mix-up of rows could not pass unnoticed."""
    rows = _reference(served[1], X)
    assert len({tuple(r) for r in rows.round(4)}) == len(rows) and (rows != 0).any(axis=1).all()


@pytest.mark.parametrize("model", ["tiny", "tiny_config_1"])
def test_batch_of_two_matches_onnxruntime(served: tuple[Server, Path], model: str) -> None:
    server, onnx_file = served
    y = _infer(server.url, model, X[:2])
    assert y.dtype == np.float32 and y.shape == (2, 3)
    np.testing.assert_allclose(y, _reference(onnx_file, X[:2]), rtol=1e-6, atol=1e-6)


def test_concurrent_requests_are_batched_and_split_back(served: tuple[Server, Path]) -> None:
    server, onnx_file = served
    before = _stats(server.url, "tiny")
    with ThreadPoolExecutor(3) as pool:
        rows = list(pool.map(lambda i: _infer(server.url, "tiny", X[i:i + 1]), range(3)))
    np.testing.assert_allclose(np.concatenate(rows), _reference(onnx_file, X), rtol=1e-6, atol=1e-6)
    inferences, executions = (a - b for a, b in zip(_stats(server.url, "tiny"), before))
    assert inferences == 3
    assert executions < 3, "the dynamic batcher handed the three requests to model.py one by one"


def test_a_failing_request_gets_an_error_and_the_model_stays_up(served: tuple[Server, Path]) -> None:
    from tritonclient.utils import InferenceServerException

    server, onnx_file = served
    with pytest.raises(InferenceServerException, match="Got invalid dimensions for input: x"):
        _infer(server.url, "loose", np.zeros((1, 5), np.float32))
    np.testing.assert_allclose(_infer(server.url, "loose", X), _reference(onnx_file, X), rtol=1e-6, atol=1e-6)
