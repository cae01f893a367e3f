"""Recipe pieces that several families' plans and the planner build Params from: the torch factory, the input specs."""

from __future__ import annotations

from typing import Any

from navbuild.model_io import TensorSpec
from navbuild.runtime import SERIALIZED_SOURCE, TorchFactory


def torch_factory(recipe: Any) -> TorchFactory | None:
    """How a step builds the recipe's torch model (None for an ONNX source)."""
    if recipe.source.torchscript:
        return TorchFactory(factory=SERIALIZED_SOURCE, kwargs={})
    if not recipe.source.torch:
        return None
    return TorchFactory(factory=recipe.source.torch, kwargs=dict(recipe.source.kwargs))


def tensor_specs(recipe: Any) -> tuple[TensorSpec, ...]:
    """The recipe's inputs as TensorSpecs."""
    return tuple(TensorSpec(name=i.name, dtype=i.dtype, shape=tuple(i.shape),
                            low=float(i.range[0]), high=float(i.range[1])) for i in recipe.inputs)


def traced_export(recipe: Any) -> dict[str, Any]:
    """The Params every conversion that runs the torch source takes: factory, inputs, axes, seed."""
    return {"factory": torch_factory(recipe), "inputs": tensor_specs(recipe), "axes": dict(recipe.samples.axes),
            "seed": recipe.samples.seed}


__all__ = ["torch_factory", "tensor_specs", "traced_export"]
