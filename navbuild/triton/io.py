"""A model's Triton inputs and outputs (names, dtypes, dims) and perf_analyzer's input data from real samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from navbuild.lazy import lazy_import
from navbuild.model_io import TensorSpec
from navbuild.triton.model_config import TritonTensor

np = lazy_import("numpy")


def triton_io(specs: Sequence[TensorSpec], samples: Mapping[str, np.ndarray],
              outputs: Mapping[str, np.ndarray]) -> tuple[list[Any], list[Any]]:
    """(inputs, outputs) as TritonTensors, dims without the batch axis, -1 where an axis is dynamic.

    Input dims come from the recipe (named axes are dynamic). An output axis is dynamic when
    its size is the size of one of the inputs' dynamic axes in the samples (the sequence axis
    of a transformer's hidden states, say): the reference ran at that size.
    """

    dynamic_sizes: set[int] = set()
    inputs = []
    for spec in specs:
        array = samples[spec.name]
        dims = []
        for axis, dim in enumerate(spec.shape[1:], start=1):
            if isinstance(dim, str):
                dynamic_sizes.add(int(array.shape[axis]))
                dims.append(-1)
            else:
                dims.append(int(dim))
        inputs.append(TritonTensor(spec.name, str(array.dtype), tuple(dims)))
    outs = [TritonTensor(name, str(array.dtype), tuple(-1 if int(d) in dynamic_sizes else int(d)
                                                      for d in array.shape[1:]))
            for name, array in outputs.items()]
    return inputs, outs


def perf_input_data(samples: Mapping[str, np.ndarray], path: Path, limit: int = 64) -> Path:
    """Write perf_analyzer's ``--input-data`` JSON: one entry per sample (batch 1), with its shape.

    perf_analyzer otherwise sends random values, which for token ids may fall outside the
    vocabulary: the recipe's real samples are what gets measured.
    """
    count = min(limit, len(next(iter(samples.values()))))
    data = []
    for i in range(count):
        entry = {}
        for name, array in samples.items():
            row = np.asarray(array[i])
            entry[name] = {"content": row.reshape(-1).tolist(), "shape": list(row.shape)}
        data.append(entry)
    path.write_text(json.dumps({"data": data}))
    return path


def tensors_to_json(tensors: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"name": t.name, "dtype": t.dtype, "dims": list(t.dims)} for t in tensors]


def tensors_from_json(data: Sequence[Mapping[str, Any]]) -> list[Any]:

    return [TritonTensor(d["name"], d["dtype"], tuple(d["dims"])) for d in data]


__all__ = ["triton_io", "perf_input_data", "tensors_to_json", "tensors_from_json"]
