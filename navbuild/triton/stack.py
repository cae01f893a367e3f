"""Where the Triton tools are (server, backends, perf_analyzer, Model Analyzer) and the environment they need."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import secrets
import shutil
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from navbuild.errors import MissingTool

INSTALL_SERVER = "install nvidia-pytriton (pip install 'navbuild[triton]')"
INSTALL_PERF_ANALYZER = "install tritonclient[all]==2.51.0"
INSTALL_CUDART = "install nvidia-cuda-runtime-cu12"
INSTALL_MODEL_ANALYZER = "install triton-model-analyzer (pip install 'navbuild[triton]')"

STUB = "triton_python_backend_stub"

#: where the python backend keeps its shared-memory regions
SHM_DIR = Path("/dev/shm")

# The Triton release each nvidia-pytriton line bundles (from its changelog): the bundled
# binary has no --version and the number is compiled into code, not stored as a string.
_BUNDLED_RELEASES = (("0.7.", "2.51.0"), ("0.6.", "2.51.0"), ("0.5.14", "2.51.0"),
                     ("0.5.13", "2.51.0"), ("0.5.12", "2.51.0"))


def python_backend_shm() -> tuple[str, str]:
    """A shared-memory prefix of its own for one server's python backend (the ``--backend-config``
    value that sets it), and the glob of the regions that server may leave in /dev/shm.

    A killed server leaves its 1 MiB-and-up regions behind; with a prefix of its own, whoever
    started it can remove exactly its regions once it is gone (supervise.start's leftovers).
    """
    prefix = f"navbuild_{os.getpid()}_{secrets.token_hex(4)}_"
    return f"python,shm-region-prefix-name={prefix}", str(SHM_DIR / f"{prefix}*")


@dataclass(frozen=True)
class TritonStack:
    """The Triton binaries found on this machine, and the folders their processes must see."""

    server: Path
    backend_dir: Path
    library_path: tuple[Path, ...]
    python_path: tuple[Path, ...]
    perf_analyzer: Path | None
    model_analyzer: Path | None
    version: str
    # The running interpreter's folder; see env() for why it goes first on PATH.
    python_bin: Path = Path(sys.executable).parent

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default os.environ) with LD_LIBRARY_PATH, PYTHONPATH and PATH extended for Triton."""
        env = dict(os.environ if base is None else base)
        env["LD_LIBRARY_PATH"] = _join(self.library_path, env.get("LD_LIBRARY_PATH"))
        env["PYTHONPATH"] = _join(self.python_path, env.get("PYTHONPATH"))
        # The python backend stub embeds libpython and looks "python3" up on PATH to find its
        # prefix: with this interpreter's folder first it finds the venv's pyvenv.cfg, so it
        # uses the venv's site-packages (and .pth files) instead of the base Python's. The
        # backend launches the stub through `bash`, so an empty base still needs the system PATH.
        env["PATH"] = _join((self.python_bin,), env.get("PATH") or os.defpath)
        return env

    def require_perf_analyzer(self) -> Path:
        """The perf_analyzer binary, once it and the libraries it loads are known to exist."""
        if self.perf_analyzer is None or not _is_executable(self.perf_analyzer):
            where = "" if self.perf_analyzer is None else f" at {self.perf_analyzer}"
            raise MissingTool(f"perf_analyzer not found{where}: {INSTALL_PERF_ANALYZER}")
        needs = (("libcudart.so.12", INSTALL_CUDART),
                 ("libb64.so.0d", "install nvidia-pytriton (it bundles a copy) or the system package libb64-0d"))
        for library, install in needs:
            found = any((folder / library).exists() for folder in self.library_path)
            if not found and not _system_has(library):
                raise MissingTool(f"{library} not found (perf_analyzer loads it): {install}")
        return self.perf_analyzer

    def require_model_analyzer(self) -> Path:
        """The model-analyzer command, or MissingTool naming its package."""
        if self.model_analyzer is None or not _is_executable(self.model_analyzer):
            raise MissingTool(f"model-analyzer not found: {INSTALL_MODEL_ANALYZER}")
        return self.model_analyzer


def find_stack(work_dir: Path, server: str | None = None, perf_analyzer: str | None = None) -> TritonStack:
    """Locate the Triton tools; prepare a backend folder and library links under ``work_dir``.

    ``server`` is another tritonserver binary (default: the one nvidia-pytriton bundles);
    ``perf_analyzer`` another perf_analyzer binary (checked only by require_perf_analyzer).
    """
    work_dir = Path(work_dir)
    pytriton = _pytriton_dir()
    if server is not None:
        server_path = Path(server).expanduser().absolute()
        if not server_path.is_file():
            raise MissingTool(f"tritonserver not found at {server_path}: pass an existing tritonserver "
                              f"binary as triton.server.path, or leave it unset to use the bundled one "
                              f"({INSTALL_SERVER})")
        root = server_path.parent.parent
        bundled = pytriton is not None and root == (pytriton / "tritonserver").absolute()
        if (root / "backends" / "python" / STUB).is_file():
            backend_dir = root / "backends"  # a full install (NGC: /opt/tritonserver) has its stub
        elif pytriton is not None:
            backend_dir = _prepare_backends(pytriton, work_dir)
        elif (root / "backends").is_dir():
            backend_dir = root / "backends"  # native backends only; python-backend models will fail
        else:
            raise MissingTool(f"no backends/ folder next to {server_path.parent}: {INSTALL_SERVER}")
        # NGC installs write their release to TRITON_VERSION beside bin/.
        version = (_bundled_release(_pytriton_version()) if bundled
                   else _read_text(root / "TRITON_VERSION") or "unknown")
    else:
        if pytriton is None:
            raise MissingTool(f"tritonserver not found: {INSTALL_SERVER}")
        server_path = pytriton / "tritonserver" / "bin" / "tritonserver"
        if not server_path.is_file():
            raise MissingTool(f"tritonserver not found in {server_path.parent}: reinstall nvidia-pytriton")
        backend_dir = _prepare_backends(pytriton, work_dir)
        version = _bundled_release(_pytriton_version())
    return TritonStack(
        server=server_path,
        backend_dir=backend_dir,
        library_path=_library_path(pytriton, work_dir / "lib"),
        python_path=_python_path(),
        perf_analyzer=Path(perf_analyzer).expanduser() if perf_analyzer else _find_command("perf_analyzer"),
        model_analyzer=_find_command("model-analyzer"),
        version=version,
    )


def _pytriton_dir() -> Path | None:
    """The installed ``pytriton`` package folder (found without importing it)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _pytriton_version() -> str:
    try:
        return importlib.metadata.version("nvidia-pytriton")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _bundled_release(pytriton_version: str) -> str:
    """The Triton release a pytriton version bundles; an unknown one still names pytriton, for cache keys."""
    for prefix, release in _BUNDLED_RELEASES:
        if pytriton_version.startswith(prefix):
            return release
    return f"bundled-by-nvidia-pytriton-{pytriton_version}"


def _prepare_backends(pytriton: Path, work_dir: Path) -> Path:
    """A copy of pytriton's backends with this Python's stub in python/, built once under work_dir/backends."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    stubs = pytriton / "tritonserver" / "python_backend_stubs"
    stub = stubs / python / STUB
    if not stub.is_file():
        have = sorted(p.name for p in stubs.iterdir()) if stubs.is_dir() else []
        raise MissingTool(f"nvidia-pytriton {_pytriton_version()} has no python backend stub for Python "
                          f"{python} (it has: {', '.join(have) or 'none'}): run navbuild with one of those")
    final = work_dir / "backends" / f"pytriton-{_pytriton_version()}-py{python}"
    if (final / "python" / STUB).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the final folder and rename: the rename is atomic, so a folder that exists
    # is complete, and of two processes racing here the loser just drops its copy.
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        shutil.copytree(pytriton / "tritonserver" / "backends", tmp, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(stub, tmp / "python" / STUB)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "python" / STUB).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _library_path(pytriton: Path | None, link_dir: Path) -> tuple[Path, ...]:
    """Every folder LD_LIBRARY_PATH needs: libpython, pytriton's libraries, the CUDA runtime, links."""
    folders: list[Path] = []
    # The stub needs the libpython of *this* Python; without its folder first the loader may
    # pick a system libpython of the same soname (another patch release, another stdlib).
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if libdir and soname and (Path(libdir) / soname).is_file():
        folders.append(Path(libdir))
    bundled = pytriton.parent / "nvidia_pytriton.libs" if pytriton is not None else None
    if bundled is not None and bundled.is_dir():
        # A copied backend's RPATH ($ORIGIN/../../../../nvidia_pytriton.libs) no longer points here.
        folders.append(bundled)
    cudart = _cuda_runtime_lib()
    if cudart is not None:
        folders.append(cudart)
    # perf_analyzer asks for libb64.so.0d (and libcudart.so.12); pytriton bundles both under
    # renamed files, so links with the expected names make them loadable.
    if bundled is not None and bundled.is_dir():
        wanted = {"libb64.so.0d": "libb64-*.so.0d"}
        if cudart is None:
            wanted["libcudart.so.12"] = "libcudart-*.so.12*"
        linked = False
        for name, pattern in wanted.items():
            target = next(iter(sorted(bundled.glob(pattern))), None)
            if target is not None:
                _link(link_dir / name, target)
                linked = True
        if linked:
            folders.append(link_dir)
    return tuple(folders)


def _cuda_runtime_lib() -> Path | None:
    """nvidia-cuda-runtime-cu12's lib folder, if that package is installed."""
    try:
        spec = importlib.util.find_spec("nvidia.cuda_runtime")
    except ModuleNotFoundError:
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / "lib" / "libcudart.so.12").exists():
            return Path(location) / "lib"
    return None


def _link(link: Path, target: Path) -> None:
    """Make ``link`` a symlink to ``target``, atomically (a temp link renamed over it)."""
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.{threading.get_ident()}")  # unique per thread
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def _python_path() -> tuple[Path, ...]:
    """navbuild's parent folder (a source checkout wins over an installed copy), then site-packages."""
    paths = [Path(__file__).resolve().parents[2]]  # navbuild/triton/stack.py -> the folder holding navbuild
    for key in ("purelib", "platlib"):
        paths.append(Path(sysconfig.get_paths()[key]))
    return tuple(dict.fromkeys(paths))


def _find_command(name: str) -> Path | None:
    """``name`` installed beside this Python (same environment as its package) or else on PATH."""
    here = Path(sys.executable).parent / name
    if _is_executable(here):
        return here
    found = shutil.which(name)
    return Path(found) if found else None


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _system_has(library: str) -> bool:
    """Whether the dynamic loader knows ``library`` from its cache (a system package)."""
    import ctypes.util

    return ctypes.util.find_library(library.removeprefix("lib").split(".so")[0]) == library


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _join(first: Iterable[Path], rest: str | None) -> str:
    """A ':'-joined search path: ``first`` then the existing entries, without repeats."""
    entries = [str(p) for p in first] + [e for e in (rest or "").split(os.pathsep) if e]
    return os.pathsep.join(dict.fromkeys(entries))
