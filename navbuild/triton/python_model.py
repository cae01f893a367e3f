"""Triton python-backend model serving a navbuild variant with navbuild's own runner (copied as ``model.py``).

Everything it needs comes from the model folder and config.pbtxt ``parameters`` (no absolute
paths), so it still works when Model Analyzer copies the folder under another name. The
stub's interpreter must be able to import navbuild and its runtime (ONNX Runtime, torch...).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

PREFIX = "navbuild_"


def _pb_utils() -> Any:
    # exists only inside the server's python backend stub
    import triton_python_backend_utils as pb_utils

    return pb_utils


def string_parameters(model_config: dict) -> dict[str, str]:
    """The ``parameters`` of a model config (as the backend hands it over, JSON) as plain strings."""
    return {k: str(v.get("string_value", "")) for k, v in model_config.get("parameters", {}).items()}


def runtime_settings(params: dict[str, str]) -> dict[str, str]:
    """The runtime options for this model: ``navbuild_<key>`` parameters, overridden by native
    backend options (e.g. ``intra_op_thread_count``) that a search point sets on the folder."""
    from navbuild.triton.model_config import local_runtime
    from navbuild.triton.repository import RUNTIME_KEYS, backend_for

    settings = {k: params[PREFIX + k] for k in RUNTIME_KEYS if PREFIX + k in params}
    native = backend_for(params.get(PREFIX + "runner", "")) or ""
    settings.update(local_runtime(native, {k: v for k, v in params.items() if not k.startswith(PREFIX)}))
    return settings


def serving_threads(setting: str) -> int:
    """An ``intra_op_threads`` setting as a thread count here, on the machine serving the model:
    0 (repository.EVERY_CORE) is every core of it."""
    return int(setting) or os.cpu_count() or 1


def batch_groups(feeds: Sequence[dict[str, np.ndarray] | None]) -> list[list[int]]:
    """Indices of requests that can run as one batch: same inputs with the same dtypes and
    non-batch shapes. Groups keep request order; None (a request already failed) is skipped."""
    groups: dict[tuple, list[int]] = {}
    for i, feed in enumerate(feeds):
        if feed is None:
            continue
        key = tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(feed.items()))
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def run_batched(run: Any, feeds: Sequence[dict[str, np.ndarray]], n_outputs: int,
                batched: bool = True) -> list[list[np.ndarray]]:
    """Run ``feeds`` (requests with agreeing shapes) concatenated along axis 0 and split the
    outputs back: one list of outputs per request, in order. ``batched=False`` (a model with
    max_batch_size 0) runs a single request as it is."""
    if not batched:
        if len(feeds) != 1:
            raise ValueError("a model without a batch dimension runs one request at a time")
        outputs = [np.asarray(o) for o in run(feeds[0])]
        sizes: list[int] = []
    else:
        sizes = [batch_size(f) for f in feeds]
        merged = feeds[0] if len(feeds) == 1 else {
            n: np.concatenate([f[n] for f in feeds], axis=0) for n in feeds[0]}
        outputs = [np.asarray(o) for o in run(merged)]
    if len(outputs) != n_outputs:
        raise ValueError(f"the model returned {len(outputs)} outputs, the config declares {n_outputs}")
    if not batched:
        return [outputs]
    total = sum(sizes)
    for i, out in enumerate(outputs):
        if out.ndim == 0 or out.shape[0] != total:
            raise ValueError(f"output {i} has shape {list(out.shape)}, expected {total} rows (the batch)")
    cuts = np.cumsum(sizes)[:-1]
    per_output = [np.split(out, cuts, axis=0) for out in outputs]
    return [[parts[r] for parts in per_output] for r in range(len(feeds))]


def batch_size(feed: dict[str, np.ndarray]) -> int:
    """The batch size of one request: dim 0 of its inputs, which must agree."""
    sizes = {n: (a.shape[0] if a.ndim else None) for n, a in feed.items()}
    distinct = set(sizes.values())
    if len(distinct) != 1 or None in distinct:
        raise ValueError(f"inputs disagree on the batch size: {sizes}")
    return distinct.pop()


class TritonPythonModel:
    """Serves ``navbuild_model_file`` with the runner named by ``navbuild_runner``."""

    def initialize(self, args: dict[str, str]) -> None:
        """Build the runner from the model folder and config parameters."""
        pb_utils = _pb_utils()
        config = json.loads(args["model_config"])
        params = string_parameters(config)
        try:
            from navbuild.runners.factory import make_runner
            from navbuild.runtime import RuntimeOptions
        except ImportError as e:
            raise RuntimeError(f"navbuild is not importable in the python backend stub ({e}); start tritonserver "
                               "with navbuild's environment's bin folder first on PATH (the stub takes the Python "
                               "it finds there) or with navbuild and its site-packages on PYTHONPATH") from e
        missing = [PREFIX + k for k in ("runner", "model_file", "output_names") if PREFIX + k not in params]
        if missing:
            raise ValueError(f"config.pbtxt lacks the string parameter(s) {', '.join(missing)}; "
                             "write the model with navbuild.triton.repository.write_local")
        # model_repository is this model's own folder (wherever it was copied to)
        model_dir = Path(args["model_repository"]) / args["model_version"]
        self.max_batch_size = int(config.get("max_batch_size", 0))
        self.input_names = [i["name"] for i in config["input"]]
        runner_outputs = params[PREFIX + "output_names"].split(",")
        #: (name, position in the runner's outputs, numpy dtype) for each output the config declares
        self.outputs: list[tuple[str, int, Any]] = []
        for out in config["output"]:
            if out["name"] not in runner_outputs:
                raise ValueError(f"output '{out['name']}' is not one of the model's outputs "
                                 f"({', '.join(runner_outputs)})")
            try:
                dtype = pb_utils.triton_string_to_numpy(out["data_type"])
            except KeyError:  # TYPE_BF16 has no numpy dtype, and a python model answers with numpy
                raise ValueError(f"output '{out['name']}' is declared {out['data_type']}, which a python-backend "
                                 "model cannot return; declare it float32") from None
            self.outputs.append((out["name"], runner_outputs.index(out["name"]), dtype))
        self.n_runner_outputs = len(runner_outputs)
        settings = runtime_settings(params)
        defaults = RuntimeOptions()
        options = RuntimeOptions(
            intra_op_threads=serving_threads(settings.get("intra_op_threads", str(defaults.intra_op_threads))),
            inter_op_threads=int(settings.get("inter_op_threads", defaults.inter_op_threads)),
            graph_level=settings.get("graph_level", defaults.graph_level),
            mode=settings.get("mode", defaults.mode))
        self.runner = make_runner(params[PREFIX + "runner"], model_dir / params[PREFIX + "model_file"], None,
                                  self.input_names, options)
        # every instance is its own stub process here, where the native openvino backend shares
        # one compiled model between instances: keep the processes from pinning the same cores
        instances = sum(int(g.get("count", 1)) for g in config.get("instance_group", [])) or 1
        if instances > 1 and hasattr(self.runner, "share_cores"):
            self.runner.share_cores()
        try:
            pb_utils.Logger.log_info(f"navbuild: '{args.get('model_name', '?')}' runs "
                                     f"{params[PREFIX + 'model_file']} with the {params[PREFIX + 'runner']} "
                                     f"runner, {options}")
        except AttributeError:  # older stubs have no Logger
            pass

    def _feeds(self, request: Any) -> dict[str, np.ndarray]:
        pb_utils = _pb_utils()
        feeds = {}
        for name in self.input_names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"the request has no input '{name}'")
            feeds[name] = tensor.as_numpy()
        if self.max_batch_size > 0:
            batch_size(feeds)  # fails early when the inputs disagree
        return feeds

    def _response(self, outputs: Sequence[np.ndarray]) -> Any:
        pb_utils = _pb_utils()
        tensors = [pb_utils.Tensor(name, np.ascontiguousarray(np.asarray(outputs[pos]).astype(dtype, copy=False)))
                   for name, pos, dtype in self.outputs]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def _run_group(self, feeds: list[dict[str, np.ndarray]]) -> list[Any]:
        """Outputs (or the exception) of each request of a group, run as one batch."""
        try:
            return run_batched(self.runner.run, feeds, self.n_runner_outputs, self.max_batch_size > 0)
        except Exception as e:  # noqa: BLE001 - reported per request, the model stays up
            if len(feeds) == 1:
                return [e]
        # one bad request must not fail the others batched with it: retry them alone
        return [self._run_group([feed])[0] for feed in feeds]

    def _answer(self, result: Any) -> Any:
        if isinstance(result, BaseException):
            return self._error(result)
        try:
            return self._response(result)
        except Exception as e:  # noqa: BLE001 - e.g. an output that cannot be cast to its declared type
            return self._error(e)

    def _error(self, error: BaseException) -> Any:
        pb_utils = _pb_utils()
        message = f"{type(error).__name__}: {error}"
        return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))

    def execute(self, requests: list) -> list:
        """One response per request, in request order; requests with agreeing shapes run as one batch."""
        responses: list[Any] = [None] * len(requests)
        feeds: list[dict[str, np.ndarray] | None] = []
        for i, request in enumerate(requests):
            try:
                feeds.append(self._feeds(request))
            except Exception as e:  # noqa: BLE001 - a bad request fails alone, the model stays up
                feeds.append(None)
                responses[i] = self._error(e)
        if self.max_batch_size > 0:
            groups = batch_groups(feeds)
        else:  # no batch dim to concatenate on: each request runs alone
            groups = [[i] for i, f in enumerate(feeds) if f is not None]
        for group in groups:
            for i, result in zip(group, self._run_group([feeds[i] for i in group])):
                responses[i] = self._answer(result)
        return responses

    def finalize(self) -> None:
        """Release the runner (its session and threads) before the stub exits."""
        self.runner = None
