"""A TensorRT engine on its CUDA GPU (runner ``tensorrt``): Polygraphy's TrtRunner over ``model.plan``, choosing
the optimization profile that covers each feed, timing itself with CUDA events (``bind``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from navbuild.formats.tensorrt_profiles import EngineProfile, ShapeRange, profile_for
from navbuild.lazy import lazy_import
from navbuild.model_io import model_file
from navbuild.runners.device_timing import Bound, device_used_mb, grown_mb, timer
from navbuild.runtime import RuntimeOptions

np = lazy_import("numpy")

#: the files of a TensorRtFromOnnx output this runner reads (navbuild.steps.tensorrt_from_onnx writes them)
PLAN_FILE = "model.plan"
ENGINE_FILE = "engine.json"


def write_engine_facts(folder: Path, inputs: Sequence[str], outputs: Sequence[str], precision: str,
                       profiles: Sequence[EngineProfile]) -> None:
    """Write ``engine.json``: what the runner needs besides the engine (the ONNX model's input and output
    order, the profiles it picks from), written by the step that builds the engine."""
    facts = {"inputs": list(inputs), "outputs": list(outputs), "precision": precision,
             "profiles": [dataclasses.asdict(p) for p in profiles]}
    (Path(folder) / ENGINE_FILE).write_text(json.dumps(facts, indent=2))


def read_engine_facts(folder: Path) -> tuple[list[str], list[str], tuple[EngineProfile, ...]]:
    """The engine's input and output names (the ONNX model's order) and its profiles, from ``engine.json``."""
    facts = json.loads((Path(folder) / ENGINE_FILE).read_text())
    profiles = tuple(EngineProfile(tuple(ShapeRange(r["name"], tuple(r["min"]), tuple(r["opt"]), tuple(r["max"]))
                                         for r in p["inputs"])) for p in facts["profiles"])
    return list(facts["inputs"]), list(facts["outputs"]), profiles


class TensorRtRunner:
    """A deserialized engine in an active TrtRunner on ``device`` (the process's GPU 0).

    ``run(feeds)`` takes and returns numpy arrays; ``bind(feeds)`` puts the inputs on the GPU once
    (torch tensors, which TrtRunner reads in place) and leaves the outputs there.
    """

    def __init__(self, folder: Path, device: str = "cuda") -> None:
        from polygraphy.backend.common import BytesFromPath
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner

        self.device = device
        self.input_names, self.output_names, self.profiles = read_engine_facts(folder)
        self._baseline_mb = device_used_mb(device)
        self._runner = TrtRunner(EngineFromBytes(BytesFromPath(str(model_file(folder, PLAN_FILE)))))
        self._runner.activate()
        self._profile = 0

    def _select(self, feeds: Mapping[str, Any]) -> None:
        index = profile_for(self.profiles, {n: tuple(feeds[n].shape) for n in self.input_names if n in feeds})
        if index != self._profile:
            self._runner.set_profile(index)
            self._profile = index

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        arrays = {n: np.ascontiguousarray(feeds[n]) for n in self.input_names}
        self._select(arrays)
        out = self._runner.infer(arrays)
        return [np.asarray(out[n]) for n in self.output_names]

    def bind(self, feeds: Mapping[str, np.ndarray]) -> Bound:
        """The engine bound to ``feeds`` copied to the GPU once; outputs stay on the GPU."""
        import torch

        tensors = {n: torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device) for n in self.input_names}
        self._select(tensors)
        last: list[Any] = [None]

        def call() -> None:
            last[0] = self._runner.infer(tensors, copy_outputs_to_host=False)

        return Bound(call, lambda: [last[0][n].cpu().numpy() for n in self.output_names], timer(self.device),
                     inputs=tensors)

    def peak_memory_mb(self) -> float | None:
        """GPU memory in use now beyond what was in use before the engine was loaded, in MiB: TensorRT
        allocates its activations itself, which torch's counters do not see (read from the driver)."""
        return grown_mb(self.device, self._baseline_mb)

    def close(self) -> None:
        """Free the engine's execution context."""
        if self._runner.is_active:
            self._runner.deactivate()


def make(model_path: Path | None, factory: Any, input_names: Any, options: RuntimeOptions,
         source: Path | None = None) -> TensorRtRunner:
    """Runner registry entry: the engine in the TensorRtFromOnnx output ``model_path`` on the GPU."""
    if model_path is None:
        raise ValueError("a tensorrt variant needs a model path (a TensorRtFromOnnx output)")
    if options.mode:
        raise ValueError(f"the tensorrt runner has no runtime mode '{options.mode}' (only '')")
    folder = Path(model_path)
    return TensorRtRunner(folder if folder.is_dir() else folder.parent, "cuda")


__all__ = ["TensorRtRunner", "make", "write_engine_facts", "read_engine_facts", "PLAN_FILE", "ENGINE_FILE"]
