"""Writing a Triton model repository on disk: native-backend models and their locally served equivalents."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from navbuild import formats
from navbuild.triton.model_config import (RESERVED_PREFIX, ModelConfig, TritonTensor, backends,
                                          check_backend_parameters, config_text)

#: the version folder navbuild writes (Triton serves the highest numeric version by default)
VERSION = "1"

#: the template copied as ``<model>/1/model.py`` into python-backend models
PYTHON_MODEL_TEMPLATE = Path(__file__).with_name("python_model.py")

#: runtime options a local model reads, by their ``RuntimeOptions`` field names
RUNTIME_KEYS: tuple[str, ...] = ("intra_op_threads", "inter_op_threads", "graph_level", "mode")
#: ``intra_op_threads`` of a local model that runs as a native backend left at its default does:
#: on every core of the machine that serves it, counted there by model.py (a native backend reads
#: a count of 0 so too). Counted where the model is written, a model folder or package moved to
#: another machine would carry the first machine's count.
EVERY_CORE = "0"


def backend_for(runner: str) -> str | None:
    """The native Triton backend for a runner format, as the runner's format family declares it
    (navbuild/formats); None where Triton has
    none ("torch", "torch-export")."""
    serving = formats.triton_serving(runner)
    return serving.backend.name if serving is not None else None


def _onnx_external_files(model: Path) -> list[str]:
    """Relative locations of the external data files an ONNX model refers to (none when inline)."""
    try:
        import onnx
    except ImportError:
        # without onnx the references cannot be read: take the conventional sibling name
        return [p.name for p in (model.with_name(model.name + ".data"),) if p.is_file()]
    proto = onnx.load(str(model), load_external_data=False)
    locations: list[str] = []
    tensors = list(proto.graph.initializer)
    tensors += [a.t for node in proto.graph.node for a in node.attribute if a.HasField("t")]
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location" and entry.value not in locations:
                    locations.append(entry.value)
    return locations


def _companions(dest_name: str, source: Path) -> dict[str, Path]:
    """Files that must travel with ``source``: ONNX external data, the ``.bin`` of an OpenVINO ``.xml``.

    Keys are destination names relative to the version folder; the ONNX file keeps the
    location it records for its data, so the data keeps its own name.
    """
    extra: dict[str, Path] = {}
    if source.suffix == ".onnx":
        for location in _onnx_external_files(source):
            data = source.parent / location
            if not data.is_file():
                raise FileNotFoundError(f"{source} keeps its weights in '{location}', which is not beside it")
            extra[location] = data
    elif source.suffix == ".xml" and source.with_suffix(".bin").is_file():
        extra[str(Path(dest_name).with_suffix(".bin"))] = source.with_suffix(".bin")
    return extra


def _publish(repo: Path, name: str, config: str, files: Mapping[str, Path]) -> Path:
    """Write ``repo/name`` (config.pbtxt + ``1/<files>``) in a temp folder, then swap it in.

    A server polling the repository, or a run killed halfway, never sees a half-written model.
    """
    repo = Path(repo)
    repo.mkdir(parents=True, exist_ok=True)
    # beside the repository (same filesystem, so the rename is atomic) but not inside it,
    # where Triton would take the temp folder for a model
    tmp = Path(tempfile.mkdtemp(prefix=f".{repo.name}-{name}-", dir=repo.parent))
    try:
        version = tmp / VERSION
        version.mkdir()
        for dest, source in files.items():
            target = version / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        (tmp / "config.pbtxt").write_text(config)
        final = repo / name
        if final.exists():
            # move the old model out of the repository first (rename cannot replace a folder)
            final.rename(tmp.with_name(tmp.name + ".old"))
            shutil.rmtree(tmp.with_name(tmp.name + ".old"), ignore_errors=True)
        tmp.rename(final)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _all_files(model_files: Mapping[str, Path]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for dest, source in model_files.items():
        source = Path(source)
        if not source.is_file():
            raise FileNotFoundError(f"model file {source} (for {dest}) does not exist")
        files[dest] = source
    for dest, source in list(files.items()):
        for extra_dest, extra_source in _companions(dest, source).items():
            files.setdefault(extra_dest, extra_source)
    return files


def write_native(repo: Path, name: str, backend: str, model_files: Mapping[str, Path],
                 inputs: Sequence[TritonTensor], outputs: Sequence[TritonTensor], config: ModelConfig) -> Path:
    """Write ``repo/<name>/config.pbtxt`` and ``repo/<name>/1/<files>`` for a native Triton backend.

    ``model_files`` maps destination file name -> source path, e.g. ``{"model.onnx": path}``;
    an ONNX model's external data files and an OpenVINO ``.xml``'s ``.bin`` come along.
    Replaces an existing model of that name; returns the model folder.
    """
    known = backends()
    if backend not in known:
        raise ValueError(f"unknown Triton backend '{backend}' (known: {', '.join(known)})")
    text = config_text(name, backend, inputs, outputs, config)
    return _publish(Path(repo), name, text, _all_files(model_files))


def write_local(repo: Path, name: str, runner: str, model_files: Mapping[str, Path],
                inputs: Sequence[TritonTensor], outputs: Sequence[TritonTensor], config: ModelConfig,
                runtime: Mapping[str, str]) -> Path:
    """Write the locally served equivalent of a native model: a python-backend model running navbuild's runner.

    Same inputs, outputs, batching and instances as the native model; ``1/model.py`` is the
    navbuild template, the model files sit beside it, and ``config.pbtxt`` carries string
    parameters ``navbuild_runner``, ``navbuild_model_file``, ``navbuild_output_names`` and
    ``navbuild_<key>`` for each ``runtime`` key (intra_op_threads, inter_op_threads,
    graph_level, mode). ``config.backend_parameters`` use the native backend's option names
    (the same search point); they are written as python parameters too, and model.py maps
    those it can emulate (thread counts, graph level, bf16) onto the runtime options.

    A GPU execution accelerator of the native configuration (ONNX Runtime's TensorRT) is left
    out: the twin has no such backend.

    Model Analyzer copies the folder and rewrites instance_group/dynamic_batching/
    max_batch_size, so everything model.py needs is in the folder or in ``parameters``.
    """
    native = backend_for(runner)
    if native is None:
        raise ValueError(f"runner '{runner}' has no Triton backend to emulate "
                         f"(known: {', '.join(formats.native_backends())})")
    problems = check_backend_parameters(native, config.backend_parameters)
    unknown = sorted(set(runtime) - set(RUNTIME_KEYS))
    if unknown:
        problems.append(f"unknown runtime option(s) {', '.join(unknown)} (known: {', '.join(RUNTIME_KEYS)})")
    if "model.py" in model_files:
        problems.append("model_files must not contain model.py: it is navbuild's template")
    if not model_files:
        problems.append("model_files is empty")
    if problems:
        raise ValueError(f"cannot write local model '{name}': " + "; ".join(problems))
    main = next((f for f in backends()[native].model_files if f in model_files), next(iter(model_files)))
    parameters = {
        f"{RESERVED_PREFIX}runner": runner,
        f"{RESERVED_PREFIX}model_file": main,
        f"{RESERVED_PREFIX}output_names": ",".join(t.name for t in outputs),
        **{f"{RESERVED_PREFIX}{k}": str(v) for k, v in sorted(runtime.items())},
    }
    files = {**_all_files(model_files), "model.py": PYTHON_MODEL_TEMPLATE}
    # a GPU execution accelerator (ONNX Runtime's TensorRT) lives in the native backend only: the
    # twin runs navbuild's runner, so it serves the configuration without it
    twin = dataclasses.replace(config, accelerator="", accelerator_parameters=())
    text = config_text(name, "python", inputs, outputs, twin, parameters)
    return _publish(Path(repo), name, text, files)


__all__ = ["VERSION", "PYTHON_MODEL_TEMPLATE", "RUNTIME_KEYS", "EVERY_CORE", "backend_for",
           "write_native", "write_local"]
