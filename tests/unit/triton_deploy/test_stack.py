"""Finding the Triton tools: the bundled server, the prepared backend folder, perf_analyzer and its libraries."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from navbuild.errors import MissingTool
from navbuild.triton.stack import STUB, TritonStack, find_stack

if importlib.util.find_spec("pytriton") is None:
    pytest.skip("nvidia-pytriton is not installed (pip install 'navbuild[triton]')", allow_module_level=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> TritonStack:
    return find_stack(tmp_path_factory.mktemp("work"))


def test_bundled_server_and_backends(stack: TritonStack) -> None:
    assert stack.server.name == "tritonserver" and os.access(stack.server, os.X_OK)
    assert (stack.backend_dir / "python" / STUB).is_file()
    assert (stack.backend_dir / "python" / "libtriton_python.so").is_file()
    assert stack.version == "2.51.0"
    assert any(p.name == "nvidia_pytriton.libs" for p in stack.library_path)


def test_backend_folder_is_prepared_once(tmp_path: Path) -> None:
    first = find_stack(tmp_path)
    stub = first.backend_dir / "python" / STUB
    mtime = stub.stat().st_mtime_ns
    assert find_stack(tmp_path).backend_dir == first.backend_dir
    assert stub.stat().st_mtime_ns == mtime
    assert [p.name for p in (tmp_path / "backends").iterdir()] == [first.backend_dir.name]


def test_concurrent_preparation_leaves_one_complete_folder(tmp_path: Path) -> None:
    results: list[Path] = []
    errors: list[Exception] = []

    def prepare() -> None:
        try:
            results.append(find_stack(tmp_path).backend_dir)
        except Exception as e:  # reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=prepare) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    assert [p.name for p in (tmp_path / "backends").iterdir()] == [results[0].name]  # no temp folders left
    assert (results[0] / "python" / STUB).is_file()


def test_explicit_server_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "tritonserver"
    with pytest.raises(MissingTool, match=f"tritonserver not found at {re.escape(str(missing))}"):
        find_stack(tmp_path, server=str(missing))


def test_explicit_bundled_server_still_gets_the_stub(stack: TritonStack, tmp_path: Path) -> None:
    explicit = find_stack(tmp_path, server=str(stack.server))
    assert (explicit.backend_dir / "python" / STUB).is_file()
    assert explicit.version == "2.51.0"


def test_missing_perf_analyzer_names_its_package(tmp_path: Path) -> None:
    stack = find_stack(tmp_path, perf_analyzer=str(tmp_path / "no" / "perf_analyzer"))
    with pytest.raises(MissingTool, match=r"perf_analyzer not found at .*tritonclient\[all\]==2\.51\.0"):
        stack.require_perf_analyzer()
    with pytest.raises(MissingTool, match=r"^perf_analyzer not found: install tritonclient\[all\]==2\.51\.0"):
        dataclasses.replace(stack, perf_analyzer=None).require_perf_analyzer()


def test_missing_cuda_runtime_names_its_package(stack: TritonStack) -> None:
    no_libs = dataclasses.replace(stack, library_path=())
    if stack.perf_analyzer is None:
        pytest.skip("perf_analyzer is not installed")
    import ctypes.util

    if ctypes.util.find_library("cudart") == "libcudart.so.12":
        pytest.skip("this machine has a system libcudart.so.12")
    with pytest.raises(MissingTool, match=r"libcudart\.so\.12 not found .*nvidia-cuda-runtime-cu12"):
        no_libs.require_perf_analyzer()


def test_missing_model_analyzer_names_its_package(stack: TritonStack) -> None:
    with pytest.raises(MissingTool, match="model-analyzer not found: install triton-model-analyzer"):
        dataclasses.replace(stack, model_analyzer=None).require_model_analyzer()


def test_missing_tool_exit_code() -> None:
    assert MissingTool.exit_code == 2


def test_env_puts_our_folders_first_and_keeps_the_rest(stack: TritonStack) -> None:
    env = stack.env({"LD_LIBRARY_PATH": "/opt/other", "PATH": "/usr/bin", "HOME": "/h"})
    libs = env["LD_LIBRARY_PATH"].split(os.pathsep)
    assert libs == [str(p) for p in stack.library_path] + ["/opt/other"]
    assert env["PATH"].split(os.pathsep) == [str(Path(sys.executable).parent), "/usr/bin"]
    assert env["PYTHONPATH"].split(os.pathsep) == [str(p) for p in stack.python_path]
    assert env["HOME"] == "/h"
    import navbuild

    assert Path(navbuild.__file__).resolve().parent.parent in stack.python_path


def test_env_from_an_empty_base_still_finds_bash(stack: TritonStack) -> None:
    # The python backend launches its stub through `bash` looked up on PATH.
    assert shutil.which("bash", path=stack.env({})["PATH"]) is not None


def test_perf_analyzer_runs_with_the_stack_env(stack: TritonStack) -> None:
    try:
        perf_analyzer = stack.require_perf_analyzer()
    except MissingTool as e:
        pytest.skip(str(e))
    # perf_analyzer 2.51 has no --help (it exits 99 on unknown options); --version exits 0.
    done = subprocess.run([str(perf_analyzer), "--version"], check=False, env=stack.env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "2.51.0" in done.stdout + done.stderr


def test_model_analyzer_is_found(stack: TritonStack) -> None:
    if importlib.util.find_spec("model_analyzer") is None:
        pytest.skip("triton-model-analyzer is not installed")
    assert stack.require_model_analyzer().name == "model-analyzer"
