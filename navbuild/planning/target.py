"""Targets and leaves: the frozen nodes of a build graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

# What a target is for; the executor and the reporter treat kinds differently.
SOURCE, REFERENCE, CONVERT, CORRECTNESS, PROFILE = "source", "reference", "convert", "correctness", "profile"
#: an accuracy-aware search's measurement of one trial (figures, no verdict)
ACCURACY = "accuracy"
#: where a reduced-precision variant's error comes from, layer by layer (drift/<variant>)
DRIFT = "drift"


@dataclass(frozen=True)
class Target:
    """One buildable node: a step with its params and named upstream inputs.

    ``inputs`` maps the name the step sees (``"onnx"``, ``"model"``, ``"reference"``) to the
    id of an upstream target or leaf. The id is also the target's output folder under the
    build directory (``onnx``, ``correctness/onnx-opt``, ``profile/torch``).
    """

    id: str
    step: str
    params: Any
    inputs: Mapping[str, str] = field(default_factory=dict)
    kind: str = CONVERT
    variant: str | None = None
    #: why this target cannot be built from this source ("" when it can); not part of its key
    unavailable: str = ""
    #: the GPU it runs on (nvidia-smi's index), None: the CPU; that GPU's fingerprint joins its
    #: key's hardware (navbuild.planning.status.payload_for), not the index itself
    gpu: int | None = None


@dataclass(frozen=True)
class Leaf:
    """An input that is not built: the user's model file, factory module or samples file.

    Its digest is computed from ``files`` (content) and ``facts`` (e.g. package versions);
    ``path`` is what a step receives for it.
    """

    id: str
    path: Path
    files: tuple[Path, ...]
    facts: Mapping[str, str] = field(default_factory=dict)
    kind: str = SOURCE
    #: why its content differs from what was recorded (each file or distribution that changed);
    #: shown as the reason its dependents are stale. Not part of the digest.
    changes: tuple[str, ...] = ()
    #: something the plan should say about it (e.g. its dependencies are not discovered yet)
    note: str = ""
