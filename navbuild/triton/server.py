"""A tritonserver child process on 127.0.0.1: started on free ports, health-checked, always stopped."""

from __future__ import annotations

import atexit
import json
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from navbuild import supervise
from navbuild.errors import ServerError
from navbuild.triton.stack import TritonStack, python_backend_shm

HOST = "127.0.0.1"
STOP_GRACE_S = 15.0
POLL_S = 0.2
MAX_LOG_LINES = 15

# Triton's own error lines (E1124 01:29:44.47 ...), and other lines that say what went wrong.
_RELEVANT = re.compile(r"^E\d{4} |error|failed|UNAVAILABLE", re.IGNORECASE)
# Printed by every CPU-only start; they are not the reason a start failed.
_HARMLESS = ("CudaDriverHelper has not been initialized", "Failed to initialize NVML",
             "DCGM unable to start", "pinned memory pool will not be available")
_PORT_CLASH = re.compile(r"already in use|address in use", re.IGNORECASE)
# Log lines whose cause is not in the log itself.
_HINTS = {"Failed to run python backend stub": "the python backend starts its stub with `bash` from PATH: "
                                               "PATH must hold bash (see TritonStack.env)"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (it may be taken before it is used)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ServerEndpoint:
    """A ready Triton server: its HTTP and gRPC addresses ("host:port") and its version."""

    http_url: str
    grpc_url: str | None
    version: str


class TritonServer:
    """tritonserver over one model repository, as a context manager that always stops it.

    It runs under navbuild's process guard (navbuild.supervise): stopping it also stops
    the python backend stubs it forked, and it dies with the process that started it, however
    that process dies; its stdout and stderr go to ``log_path``.
    """

    def __init__(self, stack: TritonStack, repository: Path, log_path: Path, *,
                 startup_timeout_s: float = 120, model_control: str = "none",
                 extra_args: Sequence[str] = ()) -> None:
        self.stack = stack
        self.repository = Path(repository)
        self.log_path = Path(log_path)
        self.startup_timeout_s = startup_timeout_s
        self.model_control = model_control
        self.extra_args = tuple(extra_args)
        self.http_url = ""
        self.grpc_url = ""
        self.metrics_url = ""
        self.endpoint: ServerEndpoint | None = None
        self._proc: supervise.Supervised | None = None
        self._log: IO[bytes] | None = None
        #: the glob of the shared-memory regions its python backend makes (removed when it is gone)
        self._shm_config, self.shm_regions = python_backend_shm()

    @property
    def pid(self) -> int | None:
        """The server's process group id (its guard's pid); None when not running."""
        return self._proc.pid if self._proc is not None else None

    def command(self) -> list[str]:
        """The tritonserver command line for the current ports."""
        cmd = [str(self.stack.server),
               f"--model-repository={self.repository.absolute()}",
               f"--backend-directory={self.stack.backend_dir}",
               f"--model-control-mode={self.model_control}",
               f"--http-address={HOST}", f"--http-port={self.http_url.rsplit(':', 1)[1]}",
               f"--grpc-address={HOST}", f"--grpc-port={self.grpc_url.rsplit(':', 1)[1]}",
               f"--metrics-address={HOST}", f"--metrics-port={self.metrics_url.rsplit(':', 1)[1]}",
               # Shorter than our own grace period, so a stop ends cleanly before SIGKILL.
               "--exit-timeout-secs=10",
               f"--backend-config={self._shm_config}"]
        if not _has_nvidia_gpu():
            cmd.append("--allow-gpu-metrics=false")  # else NVML and DCGM report errors on every start
        return cmd + list(self.extra_args)

    def start(self) -> TritonServer:
        """Start the server and wait until it is ready; ServerError (with log lines) otherwise."""
        if self._proc is not None:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_bytes(b"")
        try:
            for attempt in (1, 2):
                self.http_url, self.grpc_url, self.metrics_url = (f"{HOST}:{free_port()}" for _ in range(3))
                self._launch(attempt)
                try:
                    self._wait_ready()
                    return self
                except ServerError:
                    self.stop()
                    # free_port() cannot reserve a port: another process may bind it first.
                    if attempt == 1 and _PORT_CLASH.search(_read(self.log_path)):
                        continue
                    raise
        except BaseException:
            self.stop()  # also on KeyboardInterrupt while waiting
            raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """SIGTERM the server, SIGKILL what is left of it after the grace period; safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        try:
            proc.stop()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _launch(self, attempt: int) -> None:
        cmd = self.command()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - held while the server runs, closed by stop()
        self._log.write(f"# navbuild attempt {attempt}: {' '.join(cmd)}\n".encode())
        self._log.flush()
        try:
            self._proc = supervise.start(cmd, grace_s=STOP_GRACE_S, leftovers=(self.shm_regions,),
                                         stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                         env=self.stack.env())
        except OSError as e:
            self._log.close()
            self._log = None
            raise ServerError(f"cannot run {self.stack.server}: {e}", log_path=str(self.log_path)) from e
        atexit.register(self.stop)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            code = self._proc.exit_code()
            if code is not None:
                raise self._error(f"tritonserver exited with code {code} before it was ready")
            # A stub that cannot be launched leaves the server waiting until the timeout.
            if any(cue in _read(self.log_path) for cue in _HINTS):
                raise self._error("tritonserver will not become ready")
            if _is_ready(self.http_url):
                self.endpoint = ServerEndpoint(self.http_url, self.grpc_url, _version(self.http_url))
                return
            if time.monotonic() > deadline:
                raise self._error(f"tritonserver was not ready after {self.startup_timeout_s:g} s")
            time.sleep(POLL_S)

    def _error(self, what: str) -> ServerError:
        log = _read(self.log_path)
        lines = "\n".join(f"  {line}" for line in relevant_lines(log))
        hints = "".join(f"\nhint: {hint}" for cue, hint in _HINTS.items() if cue in log)
        return ServerError(f"{what}; from its log:\n{lines}{hints}\nfull log: {self.log_path}",
                           log_path=str(self.log_path))


def connect(url: str, grpc_url: str | None = None, timeout_s: float = 5.0) -> ServerEndpoint:
    """An already running server given by its HTTP "host:port": ServerError unless it is ready."""
    http = url.removeprefix("http://").rstrip("/")
    deadline = time.monotonic() + timeout_s
    while not _is_ready(http):
        if time.monotonic() > deadline:
            raise ServerError(f"no ready Triton server at {url} (GET /v2/health/ready for {timeout_s:g} s): "
                              f"start it, or fix triton.server.url")
        time.sleep(POLL_S)
    return ServerEndpoint(http, grpc_url, _version(http))


def relevant_lines(log: str, limit: int = MAX_LOG_LINES) -> list[str]:
    """The log lines that say why a start failed (the last ``limit``), else the log's tail."""
    lines = [line.rstrip()[:500] for line in log.splitlines() if line.strip() and not line.startswith("#")]
    hits = [line for line in lines if _RELEVANT.search(line) and not any(h in line for h in _HARMLESS)]
    return (hits or lines)[-limit:]


# Health checks go straight to the server: an http_proxy in the environment must not see them.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _is_ready(http: str) -> bool:
    try:
        with _DIRECT.open(f"http://{http}/v2/health/ready", timeout=1.0) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _version(http: str) -> str:
    try:
        with _DIRECT.open(f"http://{http}/v2", timeout=2.0) as response:
            return str(json.load(response).get("version", "unknown"))
    except (urllib.error.URLError, OSError, ValueError):
        return "unknown"


def _has_nvidia_gpu() -> bool:
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/gpus").is_dir()


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
