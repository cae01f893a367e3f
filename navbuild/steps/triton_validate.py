"""ValidateTritonModel: serve the chosen configuration and check its outputs over HTTP and gRPC against the source."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from navbuild.samples import read_npz
from navbuild.steps.base import Step, StepContext
from navbuild.steps.correctness import CorrectnessParams, judge_runner
from navbuild.steps.reference import SAMPLES_FILE
from navbuild.steps.triton_measure import triton_stack
from navbuild.steps.triton_model import IO_FILE
from navbuild.steps.triton_search import LOCAL_REPO, SEARCH_FILE
from navbuild.triton.client import TritonClientRunner
from navbuild.triton.server import TritonServer, connect


@dataclass(frozen=True)
class ValidateParams:
    name: str
    protocols: tuple[str, ...]
    check: CorrectnessParams  # the variant's own correctness settings (tolerances, metric, batch sizes)
    url: str | None  # an already running server to validate instead of starting one (HTTP host:port)
    grpc_url: str | None  # and its gRPC host:port (without it, that server is checked over HTTP only)
    startup_timeout_s: float


class ValidateTritonModel(Step):
    """End to end: start Triton on the winner's repository, send the recipe's samples, judge the outputs.

    The outputs must match the source model's reference with the variant's own tolerances
    (and user metric) at every profiled batch size that fits the configuration's
    max_batch_size, through every protocol. A mismatch is a ``fail`` verdict.
    """

    name: ClassVar[str] = "ValidateTritonModel"
    version: ClassVar[int] = 1
    Params: ClassVar[type] = ValidateParams
    requires: ClassVar[tuple[str, ...]] = ("numpy", "tritonclient", "pytriton")
    tools: ClassVar[tuple[str, ...]] = ("nvidia-pytriton", "tritonclient", "onnxruntime", "openvino", "torch",
                                        "numpy")

    def run(self, params: ValidateParams, ctx: StepContext) -> dict:

        search = json.loads((ctx.inputs["search"] / SEARCH_FILE).read_text())
        if not search.get("best"):
            raise RuntimeError("the search chose no configuration (none met the constraints): nothing to validate")
        max_batch = int(search["best"]["config"]["max_batch_size"])
        batch_sizes = tuple(b for b in params.check.batch_sizes if b <= max_batch)
        skipped = [b for b in params.check.batch_sizes if b > max_batch]
        check = dataclasses.replace(params.check, batch_sizes=batch_sizes)
        samples = read_npz(ctx.inputs["reference"] / SAMPLES_FILE)
        io = _io(ctx)
        verdicts: dict[str, Any] = {}
        skipped_protocols: list[str] = []
        server = None
        try:
            if params.url:
                endpoint = connect(params.url, params.grpc_url)
                http_url, grpc_url = endpoint.http_url, endpoint.grpc_url
            else:
                # served from a copy: the python backend writes __pycache__ beside model.py, and the
                # search's cache entry must stay byte-identical
                repository = Path(tempfile.mkdtemp(prefix="validate-", dir=ctx.out.parent)) / "repository"
                shutil.copytree(ctx.inputs["search"] / LOCAL_REPO, repository)
                server = TritonServer(triton_stack(ctx), repository, ctx.out / "server.log",
                                      startup_timeout_s=params.startup_timeout_s).start()
                http_url, grpc_url = server.http_url, server.grpc_url
            for protocol in params.protocols:
                url = http_url if protocol == "http" else grpc_url
                if url is None:
                    print(f"{protocol}: skipped (triton.server.grpc_url is not set for the running server)",
                          flush=True)
                    skipped_protocols.append(protocol)
                    continue
                runner = TritonClientRunner(url, protocol, params.name, [t["name"] for t in io["inputs"]],
                                            [t["name"] for t in io["outputs"]])
                try:
                    print(f"{protocol} at {url}:", flush=True)
                    verdicts[protocol] = judge_runner(runner, check, ctx.inputs["reference"], samples, max_batch)
                finally:
                    runner.close()
        finally:
            if server is not None:
                server.stop()
                shutil.rmtree(server.repository.parent, ignore_errors=True)
        failed = [f"{p}: {v.get('reason', '')}" for p, v in verdicts.items() if v.get("verdict") != "pass"]
        if not verdicts:
            failed.append("no protocol could be checked")
        verdict = "fail" if failed else "pass"
        print(f"verdict: {verdict}" + (f" ({'; '.join(failed)})" if failed else ""), flush=True)
        return {"verdict": verdict, "reason": "; ".join(failed), "protocols": verdicts,
                "batch_sizes": list(batch_sizes), "skipped_batch_sizes": skipped,
                "skipped_protocols": skipped_protocols,
                "config": search["best"]["label"]}


def _io(ctx: StepContext) -> dict[str, Any]:

    return json.loads((ctx.inputs["repo"] / IO_FILE).read_text())


__all__ = ["ValidateTritonModel", "ValidateParams"]
