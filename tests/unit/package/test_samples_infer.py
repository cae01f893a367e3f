"""Inferring names, dtypes and dynamic axes from the samples a training script has at hand."""

import numpy as np
import pytest

from navbuild.errors import InputError
from navbuild.package.samples_infer import infer_samples


class TwoInputs:
    def forward(self, input_ids, attention_mask):  # names for tuple samples come from here
        return input_ids


def test_dict_batches_are_stacked_with_specs():
    batches = [{"x": np.ones((2, 3), np.float32)}, {"x": np.zeros((4, 3), np.float32)}]
    arrays, specs, axes = infer_samples(batches)
    assert arrays["x"].shape == (6, 3)
    assert specs == [{"name": "x", "dtype": "float32", "shape": ["batch", 3], "range": [0.0, 1.0]}]
    assert axes == {}


def test_tuples_are_named_after_forward_and_varying_dims_are_dynamic():
    batches = [(np.ones((2, 5), np.int64), np.ones((2, 5), np.int64)),
               (np.ones((2, 7), np.int64), np.ones((2, 7), np.int64))]
    arrays, specs, axes = infer_samples(batches, model=TwoInputs())
    assert [s["name"] for s in specs] == ["input_ids", "attention_mask"]
    assert specs[0]["shape"] == ["batch", "input_ids_dim1"]
    assert axes == {"input_ids_dim1": 5, "attention_mask_dim1": 5}
    assert arrays["input_ids"].shape == (2, 5)  # only items of the first item's shape are kept


def test_named_dynamic_axes_and_input_names_override():
    arrays, specs, axes = infer_samples([(np.ones((1, 4), np.float32),)], input_names=["feat"],
                                        dynamic_axes={"feat": {1: "width"}})
    assert specs[0]["name"] == "feat" and specs[0]["shape"] == ["batch", "width"] and axes == {"width": 4}


def test_torch_tensors_a_single_batch_and_a_dataloader():
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    arrays, specs, _ = infer_samples({"x": torch.zeros(3, 2)})
    assert arrays["x"].dtype == np.float32 and arrays["x"].shape == (3, 2)
    loader = DataLoader(TensorDataset(torch.arange(20, dtype=torch.float32).reshape(10, 2)), batch_size=4)
    arrays, specs, _ = infer_samples(loader, input_names=["x"])
    assert arrays["x"].shape == (10, 2) and specs[0]["range"] == [0.0, 19.0]


def test_bad_samples_are_clear():
    with pytest.raises(InputError, match="no samples given"):
        infer_samples([])
    with pytest.raises(InputError, match="scalar"):
        infer_samples([{"x": np.float32(1.0)}])
    with pytest.raises(InputError, match="differ from samples\\[0\\]"):
        infer_samples([{"x": np.ones((1, 2))}, {"y": np.ones((1, 2))}])
    with pytest.raises(InputError, match="changes rank or dtype"):
        infer_samples([{"x": np.ones((1, 2), np.float32)}, {"x": np.ones((1, 2), np.float64)}])
