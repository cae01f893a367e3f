"""Where a recipe's models run: the recipe's ``device`` resolved to a CPU or a CUDA GPU, and that GPU's fingerprint.

Light on purpose (``navbuild plan`` imports it): torch is never imported. Whether torch can use a
GPU is read from the machine (an NVIDIA GPU in /proc/driver/nvidia, /dev/nvidia0 or
``nvidia-smi -L``) and from the installed torch's ``torch/version.py`` (its ``cuda`` field), found
through ``importlib.util.find_spec`` without importing it. ``nvidia-smi`` runs at most once per
process; :func:`parse_gpu_query` reads its output and is pure.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from navbuild.errors import RecipeError

CPU, CUDA = "cpu", "cuda"
#: the recipe's ``device`` forms, as its check names them
FORMS = ("auto", "cpu", "cuda", "cuda:N")
_FORM = re.compile(r"^(auto|cpu|cuda)$|^cuda:(\d+)$")

#: what nvidia-smi is asked for; :func:`parse_gpu_query` reads its answer
GPU_QUERY = ("nvidia-smi", "--query-gpu=index,name,compute_cap,memory.total,driver_version",
             "--format=csv,noheader,nounits")
UNKNOWN = "unknown"
_PROC = Path("/proc/driver/nvidia")
_SMI_TIMEOUT_S = 20.0

#: what a child process of a ``cuda:N`` build sees: only GPU N, numbered as nvidia-smi numbers it
VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
ORDER_ENV = "CUDA_DEVICE_ORDER"
#: the variables that pin a process to GPUs (a step's reproduce script keeps them)
PINNING_ENV = (ORDER_ENV, VISIBLE_ENV)


def device_problem(value: object) -> str | None:
    """The recipe check of ``device``: None for ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, else the problem."""
    if isinstance(value, str) and _FORM.match(value.strip()):
        return None
    return f"'{value}' is not a device; write one of {', '.join(FORMS)} (N: the GPU's index as nvidia-smi lists it)"


@dataclass(frozen=True)
class Gpu:
    """One NVIDIA GPU as nvidia-smi (or, without it, /proc/driver/nvidia) describes it."""

    index: int
    name: str
    compute_capability: str = UNKNOWN
    memory_mib: int | str = UNKNOWN
    driver: str = UNKNOWN


@dataclass(frozen=True)
class TorchBuild:
    """The installed torch as its ``torch/version.py`` says (read, not imported)."""

    version: str  # "" when torch is not installed
    cuda: str | None  # the CUDA runtime it was built for; None: a CPU build


@dataclass(frozen=True)
class Machine:
    """What decides where a model can run here: the NVIDIA GPUs, how they were found, the torch build.

    ``evidence`` says where the GPUs were looked for (shown when there are none)."""

    gpus: tuple[Gpu, ...]
    evidence: str
    torch: TorchBuild

    def no_gpu(self) -> str:
        """Why no CUDA target can run here ("" when a GPU is present)."""
        return "" if self.gpus else f"no NVIDIA GPU on this machine ({self.evidence})"

    def torch_cpu_build(self) -> str:
        """Why torch cannot run on a GPU here ("" when it can, or is not installed: that says itself)."""
        if self.torch.version and not self.torch.cuda:
            return f"torch {self.torch.version} is a CPU build"
        return ""


@dataclass(frozen=True)
class Device:
    """The recipe's device, resolved: ``kind`` cpu or cuda, ``index`` the GPU (nvidia-smi's numbering;
    None on cpu), ``why`` in words. ``unusable``: why a cuda device the recipe asked for cannot be
    used on this machine ("" when it can); every GPU target is then unavailable. ``pinned``: the
    recipe named the GPU (``cuda:N``): the processes navbuild starts see only it (:func:`expose`)."""

    kind: str
    index: int | None
    why: str
    unusable: str = ""
    pinned: bool = False

    @property
    def text(self) -> str:
        return CPU if self.kind == CPU else f"{CUDA}:{self.index}"


def resolve(text: str, machine: Machine | None = None, env: Mapping[str, str] | None = None) -> Device:
    """The device the recipe's ``device`` names on this machine (``machine``: its facts; default: read here).

    ``auto``: the first CUDA GPU when there is one that torch can use, else cpu. ``cuda`` /
    ``cuda:N``: that GPU even where none can be used (the recipe asked for it; its targets are then
    unavailable, with the reason); a GPU index the machine does not have is a RecipeError.
    ``env``: the environment whose CUDA_VISIBLE_DEVICES auto and cuda honour (default: this process's).
    """
    if device_problem(text):
        raise RecipeError(f"device: {device_problem(text)}", where="recipe")
    m = machine or read_machine()
    text = text.strip()
    if text == CPU:
        return Device(CPU, None, "cpu: the recipe asks for it")
    if text in ("auto", CUDA) and m.gpus:
        gpu, hidden = _first_visible(m, os.environ if env is None else env)
        if gpu is None:
            if text == CUDA:
                return Device(CUDA, 0, f"cuda: {hidden}: every GPU target is unavailable", unusable=hidden)
            return Device(CPU, None, f"auto: {hidden}")
        if text == CUDA:
            return Device(CUDA, gpu.index, f"cuda: {gpu.name} (GPU {gpu.index}), {_torch_words(m.torch)}")
        if not m.torch.version:
            return Device(CPU, None, f"auto: {gpu.name} (GPU {gpu.index}) present, but torch is not installed")
        if not m.torch.cuda:
            return Device(CPU, None, f"auto: {gpu.name} (GPU {gpu.index}) present, but {m.torch_cpu_build()}")
        return Device(CUDA, gpu.index, f"auto: {gpu.name} (GPU {gpu.index}), {_torch_words(m.torch)}")
    if text == "auto":
        return Device(CPU, None, f"auto: {m.no_gpu()}")
    index = int(text.partition(":")[2] or 0)
    if not m.gpus:
        return Device(CUDA, index, f"{text}: the recipe asks for it, but there is {m.no_gpu()}: "
                                   "every GPU target is unavailable", unusable=m.no_gpu())
    indices = [g.index for g in m.gpus]
    if index not in indices:
        listed = ", ".join(f"{g.index}: {g.name}" for g in m.gpus)
        raise RecipeError(f"device: '{text}' names GPU {index}, but this machine has {len(m.gpus)} "
                          f"({listed}); write cuda:N with one of {', '.join(map(str, indices))}, or auto",
                          where="recipe")
    gpu = m.gpus[indices.index(index)]
    return Device(CUDA, index, f"{text}: {gpu.name} (GPU {index}), {_torch_words(m.torch)}; its steps see only "
                               f"this GPU ({VISIBLE_ENV}={index})", pinned=True)


def _first_visible(m: Machine, env: Mapping[str, str]) -> tuple[Gpu | None, str]:
    """The GPU torch calls cuda:0 under ``env``'s CUDA_VISIBLE_DEVICES (unset: GPU 0), or None and why
    it sees none. A GPU named by UUID or MIG id cannot be matched to nvidia-smi's index here: the first."""
    visible = env.get(VISIBLE_ENV)
    first = "0" if visible is None else visible.split(",")[0].strip()
    if first.isdigit():
        gpu = next((g for g in m.gpus if str(g.index) == first), None)
    else:
        gpu = m.gpus[0] if first and first != "-1" else None
    return gpu, "" if gpu is not None else (f"{VISIBLE_ENV}='{visible}' leaves torch no GPU of the {len(m.gpus)} "
                                            "here; unset it, or write device: cuda:N")


def _torch_words(build: TorchBuild) -> str:
    if not build.version:
        return "torch not installed"
    return f"torch {build.version} built for CUDA {build.cuda}" if build.cuda else f"torch {build.version} (CPU build)"


def gpu_problem(requirements: tuple[str, ...] | list[str], machine: Machine | None = None) -> str:
    """Why a GPU target that needs ``requirements`` cannot run here ("" when it can): no CUDA GPU,
    or (when it runs torch) a torch built without CUDA."""
    m = machine or read_machine()
    if not m.gpus:
        return f"no CUDA GPU ({m.evidence})"
    if "torch" in requirements and m.torch_cpu_build():
        return m.torch_cpu_build()
    return ""


def expose(device: Device) -> str:
    """Make ``cuda:N`` the only GPU the processes navbuild starts see (their device 0, so runners always
    use "cuda"); returns what was set ("" for cpu and plain cuda, where nothing is)."""
    if device.kind != CUDA or not device.pinned or device.unusable or device.index is None:
        return ""
    os.environ[ORDER_ENV] = "PCI_BUS_ID"  # nvidia-smi's numbering, which cuda:N is written in
    os.environ[VISIBLE_ENV] = str(device.index)
    return f"{VISIBLE_ENV}={device.index}"


# ----------------------------------------------------------------------------- GPU fingerprint

def fingerprint_of(gpu: Gpu, torch: TorchBuild) -> dict:
    """The facts about a GPU that change what runs on it and how fast: they join the key's hardware."""
    return {"name": gpu.name, "compute_capability": gpu.compute_capability, "memory_mib": gpu.memory_mib,
            "driver": gpu.driver, "cuda_runtime": torch.cuda or UNKNOWN}


def gpu_fingerprint(index: int) -> dict:
    """The fingerprint of GPU ``index`` (nvidia-smi's numbering) on this machine; fields not known
    without nvidia-smi are "unknown", and a GPU that is not there is all "unknown"."""
    m = read_machine()
    gpu = next((g for g in m.gpus if g.index == index), Gpu(index, UNKNOWN))
    return fingerprint_of(gpu, m.torch)


def parse_gpu_query(text: str) -> tuple[Gpu, ...]:
    """The GPUs in the output of :data:`GPU_QUERY` (one ``index, name, compute_cap, memory.total,
    driver_version`` line per GPU); a field nvidia-smi cannot give ("[N/A]", "") is "unknown"."""
    gpus = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 5 or not fields[0].isdigit():
            continue
        index, name, cap, memory, driver = fields
        known = [UNKNOWN if not f or f.startswith("[") else f for f in (name, cap, memory, driver)]
        mem: int | str = int(known[2]) if known[2].isdigit() else UNKNOWN
        gpus.append(Gpu(int(index), known[0], known[1], mem, known[3]))
    return tuple(gpus)


def parse_proc_gpus(informations: list[str], version: str) -> tuple[Gpu, ...]:
    """The GPUs /proc/driver/nvidia describes: the text of each ``gpus/*/information`` (in bus order)
    and of ``version``; compute capability and memory are not there ("unknown")."""
    match = re.search(r"Kernel Module\s+(?:for\s+\S+\s+)?([0-9][0-9.]*)", version)
    driver = match.group(1) if match else UNKNOWN
    gpus = []
    for i, info in enumerate(informations):
        name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("Model:")),
                    UNKNOWN)
        gpus.append(Gpu(i, name, driver=driver))
    return tuple(gpus)


def read_torch_version(path: Path) -> TorchBuild:
    """``__version__`` and ``cuda`` from a ``torch/version.py``, parsed, never executed."""
    values: dict[str, object] = {}
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError, ValueError):
        return TorchBuild(UNKNOWN, None)
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else \
            node.target if isinstance(node, ast.AnnAssign) else None
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
            values[target.id] = value.value
    cuda = values.get("cuda")
    return TorchBuild(str(values.get("__version__", UNKNOWN)), str(cuda) if cuda else None)


@functools.lru_cache(maxsize=1)
def read_torch_build() -> TorchBuild:
    """The installed torch's build, from its version.py (no import); version "" when torch is absent."""
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        return TorchBuild("", None)
    return read_torch_version(Path(spec.origin).parent / "version.py")


@functools.lru_cache(maxsize=1)
def read_machine() -> Machine:
    """This machine's GPUs and torch build: nvidia-smi once per process when there is one, else /proc."""
    looked: list[str] = []
    proc_gpus = sorted((_PROC / "gpus").glob("*/information")) if (_PROC / "gpus").is_dir() else []
    if not _PROC.is_dir():
        looked.append(f"{_PROC} absent")
    elif not proc_gpus:
        looked.append(f"{_PROC}/gpus lists none")
    if not Path("/dev/nvidia0").exists():
        looked.append("/dev/nvidia0 absent")
    smi = shutil.which("nvidia-smi")
    gpus: tuple[Gpu, ...] = ()
    if smi is None:
        looked.append("nvidia-smi not found")
    else:
        try:
            run = subprocess.run([smi, *GPU_QUERY[1:]], capture_output=True, text=True, timeout=_SMI_TIMEOUT_S,
                                 check=False)
            gpus = parse_gpu_query(run.stdout) if run.returncode == 0 else ()
            if not gpus:
                looked.append(f"nvidia-smi lists none (exit {run.returncode})")
        except (OSError, subprocess.SubprocessError) as exc:
            looked.append(f"nvidia-smi failed: {exc}")
    if not gpus and proc_gpus:
        try:
            version = (_PROC / "version").read_text()
        except OSError:
            version = ""
        gpus = parse_proc_gpus([p.read_text() for p in proc_gpus], version)
    return Machine(gpus, ", ".join(looked) or "nvidia-smi", read_torch_build())


__all__ = ["CPU", "CUDA", "FORMS", "Device", "Gpu", "Machine", "TorchBuild", "device_problem", "resolve", "gpu_problem",
           "expose", "fingerprint_of", "gpu_fingerprint", "parse_gpu_query", "parse_proc_gpus", "read_torch_version",
           "read_torch_build", "read_machine", "GPU_QUERY", "VISIBLE_ENV", "ORDER_ENV", "PINNING_ENV"]
