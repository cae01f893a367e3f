"""DiscoverSourceDependencies: build the torch source once and record what defines it (a depfile).

Like a compiler's depfile for ninja, the source's identity is what building it actually read,
not what the recipe declared: every module of the user's code it imported, every file it opened
or mapped (checkpoints, configs, tokenizers), and the versions of the installed distributions
whose code the model's classes come from or whose files it read.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping

from navbuild.model_io import TensorSpec
from navbuild.runners.torch_runner import TorchRunner, load_torch_model
from navbuild.runtime import TorchFactory
from navbuild.samples import generate_samples
from navbuild.steps.base import Step, StepContext
from navbuild.steps.common import first_line

#: where each kind of finding goes in the step's result (and in the store's source record)
FILES, MODULES, DISTRIBUTIONS = "files", "modules", "distributions"

_NAVBUILD_DIR = Path(__file__).resolve().parent.parent
#: system folders whose files are the machine's, not the model's (libraries, devices, settings)
_SYSTEM_DIRS = ("/proc", "/sys", "/dev", "/etc", "/usr", "/lib", "/lib64", "/bin", "/sbin", "/run", "/var/run")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _installed_dirs() -> tuple[str, ...]:
    """Folders of the standard library and installed distributions."""
    paths = sysconfig.get_paths()
    dirs = {paths.get(k, "") for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs |= set(site.getsitepackages()) | {site.getusersitepackages()}
    dirs |= {sys.prefix, sys.base_prefix, sys.exec_prefix}
    return tuple(sorted(os.path.realpath(d) for d in dirs if d))


def _site_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths.get("purelib", ""), paths.get("platlib", "")} | set(site.getsitepackages())
    return tuple(sorted(os.path.realpath(d) for d in dirs if d))


def _under(path: str, folders: Iterable[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


class DependencyRecorder:
    """Records the files a process opens for reading while active (a ``sys.addaudithook`` hook).

    Audit hooks cannot be removed, so one hook is installed per process and only records while
    a recorder is active. Files read by native code without Python's ``open`` (safetensors,
    ONNX Runtime) are found afterwards in ``/proc/self/maps`` when they are memory-mapped.
    """

    _active: "DependencyRecorder | None" = None
    _hooked = False

    def __init__(self, ignore: Iterable[Path] = ()) -> None:
        self.opened: set[str] = set()
        self.ignore = tuple(os.path.realpath(p) for p in ignore)

    def __enter__(self) -> "DependencyRecorder":
        if not DependencyRecorder._hooked:
            sys.addaudithook(_audit)
            DependencyRecorder._hooked = True
        DependencyRecorder._active = self
        return self

    def __exit__(self, *exc: Any) -> None:
        DependencyRecorder._active = None
        self.opened |= _mapped_files()

    def findings(self, model: Any = None) -> dict[str, Any]:
        """What the model's definition depends on: user files and modules, distributions."""
        installed, site_dirs = _installed_dirs(), _site_dirs()
        excluded = (*installed, str(_NAVBUILD_DIR), *self.ignore)
        files: set[str] = set()
        dists: dict[str, str] = {}
        for path in self.opened:
            if _under(path, site_dirs):
                if not _is_code(path):  # data a distribution ships (weights, configs), not its code
                    _add_distribution_of(path, site_dirs, dists)
            elif not _under(path, excluded) and not _under(path, _SYSTEM_DIRS) and _is_data_file(path):
                files.add(path)
        modules: set[str] = set()
        for module in list(sys.modules.values()):
            origin = getattr(module, "__file__", None)
            if not origin:
                continue
            real = os.path.realpath(origin)
            if real.endswith(".pyc"):
                continue
            if not _under(real, excluded) and not _under(real, _SYSTEM_DIRS) and os.path.isfile(real):
                modules.add(real)
        for cls in _model_classes(model):
            origin = getattr(sys.modules.get(cls.__module__), "__file__", None)
            if origin and _under(os.path.realpath(origin), site_dirs):
                _add_distribution_of(os.path.realpath(origin), site_dirs, dists)
        return {FILES: sorted(files - modules), MODULES: sorted(modules), DISTRIBUTIONS: dict(sorted(dists.items()))}


def _audit(event: str, args: tuple) -> None:
    recorder = DependencyRecorder._active
    if recorder is None or event != "open":
        return
    path, mode = args[0], args[1]
    flags = args[2] if len(args) > 2 else 0
    if not isinstance(path, (str, bytes, os.PathLike)):
        return  # an open file descriptor
    if isinstance(mode, str):
        if any(c in mode for c in "wax+"):
            return
    elif isinstance(flags, int) and flags & _WRITE_FLAGS:
        return
    try:
        recorder.opened.add(os.path.realpath(os.fsdecode(path)))
    except (TypeError, ValueError):
        pass


def _mapped_files() -> set[str]:
    """Regular files mapped into this process (native readers such as safetensors mmap them)."""
    found: set[str] = set()
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].startswith("/"):
                    found.add(os.path.realpath(parts[5].strip().removesuffix(" (deleted)")))
    except OSError:
        pass
    return found


def _is_data_file(path: str) -> bool:
    """A regular file that still exists and is not Python bytecode (modules are found by import)."""
    return os.path.isfile(path) and not path.endswith(".pyc") and "/__pycache__/" not in path


def _is_code(path: str) -> bool:
    """Importing a package reads its code and metadata; only its data defines a model."""
    name = os.path.basename(path)
    return (name.endswith((".py", ".pyc", ".pyi", ".so", ".pyd", ".pth", ".typed")) or ".so." in name
            or "/__pycache__/" in path or ".dist-info/" in path or ".egg-info/" in path)


def _add_distribution_of(path: str, site_dirs: tuple[str, ...], dists: dict[str, str]) -> None:
    """Record the installed distribution that owns ``path`` (a file under site-packages)."""
    from importlib import metadata

    base = next(d for d in site_dirs if _under(path, (d,)))
    top = Path(os.path.relpath(path, base)).parts[0]
    top = top.removesuffix(".py") if top.endswith(".py") else top.split(".")[0]
    for name in _packages_distributions().get(top, ()):
        try:
            dists[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue


_PACKAGES: dict[str, list[str]] | None = None


def _packages_distributions() -> Mapping[str, list[str]]:
    global _PACKAGES
    if _PACKAGES is None:
        from importlib import metadata

        _PACKAGES = dict(metadata.packages_distributions())
    return _PACKAGES


def _model_classes(model: Any) -> list[type]:
    """Every class of the model's submodules (and their bases): the code that defines it."""
    modules = getattr(model, "modules", None)
    if not callable(modules):
        return []
    seen: dict[type, None] = {}
    try:
        for m in modules():
            for cls in type(m).__mro__:
                seen.setdefault(cls, None)
    except Exception:  # noqa: BLE001 - a model that cannot list its modules still has its files
        return []
    return list(seen)


@dataclass(frozen=True)
class DiscoverParams:
    factory: TorchFactory
    inputs: tuple[TensorSpec, ...]
    axes: Mapping[str, int]
    seed: int


class DiscoverSourceDependencies(Step):
    """Build the torch source and run it once on a generated row, recording what that read.

    Not a cached target: its result is the source record that keys every target, kept by the
    store and re-discovered whenever a recorded dependency changed (a module may now import
    another one).
    """

    name: ClassVar[str] = "DiscoverSourceDependencies"
    version: ClassVar[int] = 1
    Params: ClassVar[type] = DiscoverParams
    requires: ClassVar[tuple[str, ...]] = ("torch",)

    def run(self, params: DiscoverParams, ctx: StepContext) -> dict:

        model = None
        with DependencyRecorder(ignore=[ctx.out.parent, *ctx.inputs.values()]) as recorder:
            model = load_torch_model(params.factory, ctx.inputs.get("source"))
            try:  # a forward may import or read lazily; its failure is the reference step's to report
                feeds = generate_samples(params.inputs, 1, params.seed, params.axes)
                TorchRunner(model, [s.name for s in params.inputs], 1).run(feeds)
            except Exception as e:  # noqa: BLE001
                print(f"forward on a generated row failed ({type(e).__name__}: {first_line(e)}); "
                      "recording what building the model read", flush=True)
        found = recorder.findings(model)
        for kind in (MODULES, FILES):
            for path in found[kind]:
                print(f"{kind[:-1]}: {path}", flush=True)
        for name, version in found[DISTRIBUTIONS].items():
            print(f"distribution: {name} {version}", flush=True)
        return found


__all__ = ["DependencyRecorder", "DiscoverSourceDependencies", "DiscoverParams", "FILES", "MODULES",
           "DISTRIBUTIONS"]
