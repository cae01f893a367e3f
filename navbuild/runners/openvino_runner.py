"""Running an OpenVINO IR model (model.xml + model.bin) on the CPU plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from navbuild.lazy import lazy_import
from navbuild.runtime import RuntimeOptions

np = lazy_import("numpy")

#: the IR file inside a target folder written by the OpenVINO steps
MODEL_XML = "model.xml"
#: runtime mode -> CPU inference precision hint; "" keeps full f32 so results match the source
PRECISION_HINTS: dict[str, str] = {"": "f32", "bf16": "bf16"}


def model_xml(path: Path) -> Path:
    """The IR file of ``path``: the path itself when it is a file, else ``path/model.xml``."""
    path = Path(path)
    return path if path.is_file() else path / MODEL_XML


def read_model(path: Path) -> Any:
    """Read the IR at ``path`` (a folder with model.xml, or the .xml itself) as an ``openvino.Model``."""
    import openvino as ov

    xml = model_xml(path)
    if not xml.is_file():
        raise FileNotFoundError(f"no OpenVINO IR at {xml}; expected model.xml beside model.bin")
    return ov.Core().read_model(str(xml))


def numpy_dtype(element_type: Any) -> np.dtype | None:
    """The numpy dtype of an OpenVINO element type, or None where it is dynamic or has none."""
    try:
        return np.dtype(element_type.to_dtype())
    except Exception:  # noqa: BLE001 - dynamic / undefined element types have no numpy dtype
        return None


def port_name(port: Any, fallback: str) -> str:
    """The first tensor name of a model input/output, or ``fallback`` when it has none."""
    names = port.get_names()
    return port.get_any_name() if names else fallback


def stable_names(model: Any) -> None:
    """Rename nodes that have only OpenVINO's auto-generated name to ``<Type>_<ordinal>``.

    An unnamed node is called ``<Type>_<process-wide counter>``, so the same conversion saved
    twice in one process would differ in bytes; renaming in topological order makes the IR
    depend only on the graph, so a byte-identical rebuild does not cascade downstream.
    """
    ops = list(model.get_ordered_ops())
    taken = {op.get_friendly_name() for op in ops}
    ordinal = 0
    for op in ops:
        # an explicit friendly name differs from the unique name; only the rest are renamed
        if op.get_friendly_name() != op.get_name():
            continue
        while True:
            name = f"{op.get_type_name()}_nb{ordinal}"
            ordinal += 1
            if name not in taken:  # NNCF keys nodes by name: keep names unique
                break
        taken.add(name)
        op.set_friendly_name(name)


def save_ir(model: Any, out: Path, compress_to_fp16: bool = False) -> Path:
    """Save ``model`` as ``out/model.xml`` + ``model.bin`` with stable node names; returns the xml path.

    ``compress_to_fp16`` defaults to False (save_model's own default is True) because a
    variant must only change what its own step says it changes.
    """
    import openvino as ov

    xml = out / MODEL_XML
    stable_names(model)
    ov.save_model(model, str(xml), compress_to_fp16=compress_to_fp16)
    return xml


def ir_size(out: Path) -> int:
    """Bytes of the IR files (model.xml + model.bin) in ``out``."""
    return sum((out / n).stat().st_size for n in (MODEL_XML, "model.bin") if (out / n).exists())


def compile_config(options: RuntimeOptions, core: Any) -> dict[str, str]:
    """The CPU compile properties for ``options``; ValueError for an unknown or unsupported mode."""
    if options.mode not in PRECISION_HINTS:
        raise ValueError(f"OpenVINO has no runtime mode '{options.mode}' "
                         f"(known: {', '.join(repr(m) for m in PRECISION_HINTS)})")
    if options.mode == "bf16":
        capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if "BF16" not in capabilities:
            raise ValueError("OpenVINO mode 'bf16' needs a CPU with native bf16 (AVX512_BF16 or AMX); "
                             f"this CPU offers {', '.join(capabilities)}; drop the bf16 variant here")
    return {
        "INFERENCE_NUM_THREADS": str(int(options.intra_op_threads)),
        "INFERENCE_PRECISION_HINT": PRECISION_HINTS[options.mode],
        # one stream, latency hint: a single request at a time, like the other runners
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
    }


#: compiled shape specializations kept per runner (one per batch size a check or profile uses)
MAX_SHAPES = 8


class OpenVinoRunner:
    """A CPU model compiled for each input shape it meets, with one reused infer request each.

    OpenVINO's CPU plugin runs a model reshaped to static dims faster than the same model
    with dynamic dims (measured on MiniLM int8, batch 8, seq 128: ~10% less latency), so each
    new shape gets its own compiled copy; a profile at one batch size then runs static code.
    """

    def __init__(self, path: Path, options: RuntimeOptions) -> None:
        import openvino as ov

        self.core = ov.Core()
        self.config = compile_config(options, self.core)  # checks the mode before the model is read
        self.path = model_xml(path)
        model = read_model(self.path)
        self.input_names: list[str] = [port_name(p, f"input_{i}") for i, p in enumerate(model.inputs)]
        self.output_names: list[str] = [port_name(p, f"output_{i}") for i, p in enumerate(model.outputs)]
        self._input_dtypes = [numpy_dtype(p.get_element_type()) for p in model.inputs]
        self._requests: dict[tuple, Any] = {}

    def share_cores(self) -> None:
        """Leave thread placement to the OS: for runners in separate processes on one CPU.

        OpenVINO pins a compiled model's threads to the first cores by default, so two
        processes with one thread each both land on core 0 and run at half speed (measured on
        MiniLM int8 at batch 1: 61/s each pinned, 124/s each unpinned). Shapes compiled before
        the call are dropped, so every later run is unpinned.
        """
        self.config["ENABLE_CPU_PINNING"] = "NO"
        self._requests.clear()

    def compiled_for(self, feeds: Mapping[str, np.ndarray]) -> Any:
        """The compiled model used for feeds of these shapes (compiled now if new)."""
        return self._compile(tuple(tuple(np.shape(feeds[n])) for n in self.input_names))[0]

    def _compile(self, shapes: tuple) -> tuple[Any, Any]:
        entry = self._requests.get(shapes)
        if entry is None:
            model = read_model(self.path)
            model.reshape({port: list(shape) for port, shape in zip(model.inputs, shapes)})
            if len(self._requests) >= MAX_SHAPES:
                self._requests.pop(next(iter(self._requests)))
            compiled = self.core.compile_model(model, "CPU", self.config)
            entry = self._requests[shapes] = (compiled, compiled.create_infer_request())
        return entry

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run on ``feeds`` (matched by name; extra names ignored); outputs in the model's order.

        Floating outputs come back as float32 (a bf16 hint never changes the dtype callers see).
        """
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ValueError(f"OpenVINO model {self.path} needs input(s) {', '.join(missing)}; "
                             f"got {', '.join(feeds) or 'none'}")
        inputs = {}
        for i, (name, dtype) in enumerate(zip(self.input_names, self._input_dtypes)):
            arr = np.asarray(feeds[name])
            inputs[i] = np.ascontiguousarray(arr if dtype is None else arr.astype(dtype, copy=False))
        _, request = self._compile(tuple(tuple(a.shape) for _, a in sorted(inputs.items())))
        request.infer(inputs)
        outputs = []
        for i in range(len(self.output_names)):
            data = request.get_output_tensor(i).data
            # copy: the request reuses its output buffers on the next call
            outputs.append(data.astype(np.float32) if np.issubdtype(data.dtype, np.floating)
                           else np.array(data, copy=True))
        return outputs


def make(model_path: Path | None, factory: Any, input_names: Any, options: RuntimeOptions,
         source: Path | None = None) -> OpenVinoRunner:
    """Runner registry entry: an OpenVINO CPU model from ``model_path`` (folder or model.xml)."""
    if model_path is None:
        raise ValueError("an openvino variant needs a model path")
    return OpenVinoRunner(model_path, options)


__all__ = ["OpenVinoRunner", "make", "model_xml", "read_model", "save_ir", "ir_size",
           "compile_config", "numpy_dtype", "port_name", "stable_names", "MODEL_XML", "PRECISION_HINTS"]
