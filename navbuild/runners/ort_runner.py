"""Running an ONNX model with ONNX Runtime: its CPU execution provider, or (runtime mode
``openvino-ep``) OpenVINO's execution provider from the ``onnxruntime-openvino`` wheel."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from navbuild.lazy import lazy_import
from navbuild.model_io import model_file
from navbuild.runtime import GRAPH_LEVELS, RuntimeOptions

np = lazy_import("numpy")


def graph_optimization_level(name: str) -> Any:
    """The ``onnxruntime.GraphOptimizationLevel`` for a recipe level name."""
    import onnxruntime as ort

    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if name not in levels:
        raise ValueError(f"graph level '{name}' is not one of {', '.join(GRAPH_LEVELS)}")
    return levels[name]


def session_options(options: RuntimeOptions) -> Any:
    """SessionOptions with the thread counts, graph level and denormal handling of ``options``; warnings silenced."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(options.intra_op_threads)
    so.inter_op_num_threads = int(options.inter_op_threads)
    so.graph_optimization_level = graph_optimization_level(options.graph_level)
    if options.flush_denormals:
        so.add_session_config_entry("session.set_denormal_as_zero", "1")
    # 3 = errors only: ORT's warnings about unused initializers etc. drown the step log
    so.log_severity_level = 3
    return so


#: ONNX Runtime runtime modes: "" = the CPU execution provider; "openvino-ep" = OpenVINO's.
ORT_MODES: tuple[str, ...] = ("", "openvino-ep")
OPENVINO_EP = "OpenVINOExecutionProvider"
#: the wheel that carries OPENVINO_EP (it replaces the plain onnxruntime wheel)
OPENVINO_EP_PACKAGE = "onnxruntime-openvino"


def providers(options: RuntimeOptions) -> list[Any]:
    """The session's execution providers for ``options.mode``. OpenVINO's runs on the CPU at
    f32 with the variant's thread count; ORT's CPU provider takes any node it does not."""
    if options.mode == "openvino-ep":
        import onnxruntime as ort

        if OPENVINO_EP not in ort.get_available_providers():
            raise RuntimeError(f"this onnxruntime ({ort.__version__}) has no {OPENVINO_EP}: "
                               f"install {OPENVINO_EP_PACKAGE} in place of onnxruntime")
        return [(OPENVINO_EP, {"device_type": "CPU", "precision": "FP32",
                               "num_of_threads": str(int(options.intra_op_threads))}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OrtRunner:
    """An ONNX Runtime session over one model file.

    ``providers_``: the session's execution providers instead of those of ``options.mode``
    (a runner for another device, navbuild/runners/ort_cuda_runner.py)."""

    def __init__(self, path: Path, options: RuntimeOptions, providers_: list[Any] | None = None) -> None:
        import onnxruntime as ort

        if providers_ is None and options.mode not in ORT_MODES:
            raise ValueError(f"ONNX Runtime has no runtime mode '{options.mode}' (known: "
                             + ", ".join(repr(m) for m in ORT_MODES) + ")")
        self.path = Path(path)
        self.session = ort.InferenceSession(str(self.path), sess_options=session_options(options),
                                            providers=providers(options) if providers_ is None else providers_)
        self.input_names: list[str] = [i.name for i in self.session.get_inputs()]
        self.output_names: list[str] = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run the model on ``feeds`` (extra names are ignored: the model may have pruned inputs)."""
        inputs = {n: feeds[n] for n in self.input_names if n in feeds}
        return list(self.session.run(None, inputs))


__all__ = ["ORT_MODES", "OPENVINO_EP", "OPENVINO_EP_PACKAGE", "OrtRunner", "providers", "session_options",
           "graph_optimization_level"]


def make(model_path: Path | None, factory: Any, input_names: Any, options: RuntimeOptions,
         source: Path | None = None) -> "OrtRunner":
    """Runner registry entry: an ONNX Runtime session on ``model_path``."""
    if model_path is None:
        raise ValueError("an onnx variant needs a model path")

    return OrtRunner(model_file(Path(model_path)), options)
