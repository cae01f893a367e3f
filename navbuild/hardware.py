"""The hardware fingerprint that enters profile keys: CPU model, cores, ISA flags, GPUs."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

# ISA extensions that change which kernels a runtime picks (and so its speed).
_ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
              "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")


TAG_ENV = "NAVBUILD_HARDWARE_TAG"


@functools.lru_cache(maxsize=1)
def fingerprint() -> dict:
    """Facts about this machine that change measured speed; cheap (reads /proc, no subprocess)."""
    cpu_model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model", "cpu model") and not cpu_model:
                cpu_model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    facts = {
        "machine": platform.machine(),
        "cpu_model": cpu_model or platform.processor() or "unknown",
        "cpu_count": os.cpu_count() or 0,
        "usable_cpus": usable,
        "isa": sorted(f for f in _ISA_FLAGS if f in flags),
        "gpus": _gpus(),
    }
    # Machines that look alike from inside (same CPU model, different hosts or power
    # settings) can be told apart by a tag, so that their profiles are never mixed.
    tag = os.environ.get(TAG_ENV, "")
    if tag:
        facts["tag"] = tag
    return facts


def _gpus() -> list[str]:
    """NVIDIA GPU models and driver from /proc (no nvidia-smi call on the hot path)."""
    out = []
    root = Path("/proc/driver/nvidia/gpus")
    version = ""
    try:
        version = Path("/proc/driver/nvidia/version").read_text().split("Kernel Module")[1].split()[0]
    except (OSError, IndexError):
        pass
    if root.is_dir():
        for info in sorted(root.glob("*/information")):
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    out.append(f"{line.split(':', 1)[1].strip()} (driver {version or 'unknown'})")
    return out
