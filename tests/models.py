"""Tiny torch models for the tests: factories the steps import by "tests.models:<name>"."""

from __future__ import annotations

from typing import Any


def tiny_mlp(in_features: int = 8, hidden: int = 16, out_features: int = 4, seed: int = 0) -> Any:
    """A two-layer GELU MLP with seeded weights: forward(x) -> y."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return _Named(nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(),
                                nn.Linear(hidden, out_features)))


def _Named(body: Any) -> Any:
    """Wrap ``body`` so its forward takes the input by the name ``x`` (runners call model(**feeds))."""
    from torch import nn

    class Named(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = body

        def forward(self, x: Any) -> Any:
            return self.body(x)

    return Named().eval()


def exits_after(calls: int = 0, code: int = 3) -> Any:
    """A tiny MLP whose process exits with ``code`` at its ``calls``-th forward (0: while it is
    being built), as a runtime that crashes in native code would take its process down."""
    import os

    if calls == 0:
        os._exit(code)
    model = tiny_mlp()
    seen = [0]

    def count(*_: Any) -> None:
        seen[0] += 1
        if seen[0] >= calls:
            os._exit(code)

    model.register_forward_pre_hook(count)
    return model


def two_outputs(in_features: int = 8) -> Any:
    """forward(x) -> (x @ W, sum(x)): a tuple of two outputs of different shapes."""
    import torch
    from torch import nn

    class TwoOutputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(1)
            self.lin = nn.Linear(in_features, 3)

        def forward(self, x: Any) -> Any:
            return self.lin(x), x.sum(dim=1, keepdim=True)

    return TwoOutputs().eval()


def dict_outputs(in_features: int = 8) -> Any:
    """forward(x) -> {"logits": ..., "norm": ...}: named outputs as a dict."""
    import torch
    from torch import nn

    class DictOutputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(2)
            self.lin = nn.Linear(in_features, 3)

        def forward(self, x: Any) -> Any:
            return {"logits": self.lin(x), "norm": x.norm(dim=1, keepdim=True)}

    return DictOutputs().eval()


def two_inputs(features: int = 8) -> Any:
    """forward(mask, x) -> x * mask summed over seq: an int input and a float input with a seq axis.

    The forward signature lists ``mask`` before ``x`` on purpose: the exporters must bind inputs
    by name, not by the order the recipe lists them.
    """
    import torch
    from torch import nn

    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(3)
            self.lin = nn.Linear(features, features)

        def forward(self, mask: Any, x: Any) -> Any:
            h = self.lin(x) * mask.unsqueeze(-1).to(x.dtype)
            return h

    return TwoInputs().eval()


def batch_one_only(in_features: int = 8, out_features: int = 4) -> Any:
    """A model whose traced ONNX export is right at batch 1 and 2 but wrong at batch 4.

    ``int(x.shape[0])`` is a Python int at trace time, so the tracer bakes the example batch
    (2) into a Slice: the export keeps at most 2 rows. Eager torch is correct at any batch.
    """
    import torch
    from torch import nn

    class BatchOneOnly(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(4)
            self.lin = nn.Linear(in_features, out_features)

        def forward(self, x: Any) -> Any:
            rows = int(x.shape[0])  # traced as a constant: the bug this model exists to show
            return self.lin(x)[:rows]

    return BatchOneOnly().eval()


def raises_on_input(in_features: int = 8) -> Any:
    """A model whose forward expects 5 features: any 8-feature input makes it raise."""
    import torch
    from torch import nn

    torch.manual_seed(5)
    return _Named(nn.Linear(5, 2))


def not_a_module() -> Any:
    """A factory that returns something other than a torch.nn.Module."""
    return {"not": "a module"}


def tiny_bert(layers: int = 2, hidden: int = 32, heads: int = 2, seed: int = 0) -> Any:
    """A 2-layer BERT with random seeded weights (forward(input_ids, attention_mask) -> hidden states)."""
    from navbuild.examples.models import bert

    return bert(layers=layers, hidden=hidden, heads=heads, seed=seed)


def counting_samples(count: int, seed: int, axes: Any, scale: float = 1.0) -> Any:
    """A sample generator for tests: row i is filled with i * scale (float32, 8 features)."""
    import numpy as np

    return {"x": (np.arange(count, dtype=np.float32)[:, None] * scale).repeat(8, axis=1)}


def wrong_dtype_samples(count: int, seed: int, axes: Any) -> Any:
    """A sample generator that returns float64 where the recipe declares float32."""
    import numpy as np

    return {"x": np.zeros((count, 8), dtype=np.float64)}


def with_diff(in_features: int = 8, **_: Any) -> Any:
    """An MLP whose forward uses ``torch.diff``: the TorchScript ONNX exporter has no
    ``aten::diff`` (verified on torch 2.13), the dynamo exporter decomposes it."""
    import torch

    class WithDiff(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.fc = torch.nn.Linear(in_features - 1, 4)

        def forward(self, x):
            return self.fc(torch.diff(x, dim=1))

    return WithDiff().eval()


def sequential(in_features: int = 8, seed: int = 0, **_: Any) -> Any:
    """An ``nn.Sequential``: its forward takes ``input``, not the recipe's name."""
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(in_features, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 4)).eval()


def onnx_mlp(path: Any, batch: int | str = "batch", ir_version: int = 8, opset: int = 17,
             weights_as_inputs: bool = False) -> Any:
    """A tiny real MLP (x [batch, 8] -> y [batch, 4]) made with onnx.helper.

    ``batch`` an int fixes the batch dim; ``weights_as_inputs`` lists the initializers among the
    graph inputs too, as IR < 4 files do (then ``ir_version`` 3 and ``opset`` 8 make a real one).
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "w1"),
               numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b1"),
               numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 8])]
    if weights_as_inputs:
        inputs += [helper.make_tensor_value_info(w.name, TensorProto.FLOAT, list(w.dims)) for w in weights]
    graph = helper.make_graph(nodes, "mlp", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])],
                              initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    onnx.save(model, str(path))
    return path


#: a user's module whose model returns an output class it registers in torch's pytree, as
#: transformers does with its ModelOutput classes; ``unregistered`` registers it only when called
PYTREE_OUTPUT_MODULE = '''
import collections
import torch
import torch.utils._pytree as pytree


class Out(collections.OrderedDict):
    pass


def _register():
    pytree.register_pytree_node(Out, lambda o: (list(o.values()), list(o.keys())),
                                lambda values, keys: Out(zip(keys, values)),
                                serialized_type_name=f"{__name__}.Out")


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        return Out(y=self.fc(x))


def registered(**_):
    return Model().eval()


def unregistered(**_):
    if Out not in pytree.SUPPORTED_NODES:
        _register()
    return Model().eval()
'''


def baked_seq(features: int = 8, heads: int = 2) -> Any:
    """Attention-like model over x [batch, seq, features] whose traced export bakes the sample's seq.

    ``int(x.shape[1])`` is a Python int at trace time, so the head-splitting reshape holds the
    export's sequence length as a constant while the ONNX axis is declared dynamic: right at
    that length, and a Reshape error at any other. Eager torch is right at any length.
    """
    import torch
    from torch import nn

    class BakedSeq(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(6)
            self.qkv = nn.Linear(features, 3 * features)
            self.out = nn.Linear(features, features)

        def forward(self, x: Any) -> Any:
            seq = int(x.shape[1])  # the bake: a trace-time constant
            q, k, v = self.qkv(x).reshape(x.shape[0], seq, 3, heads, features // heads).unbind(2)
            att = torch.softmax(torch.einsum("bshd,bthd->bhst", q, k), dim=-1)
            h = torch.einsum("bhst,bthd->bshd", att, v).reshape(x.shape[0], seq, features)
            return self.out(h)

    return BakedSeq().eval()


def baked_batch(features: int = 8) -> Any:
    """x [batch, 4, 2] -> y [batch, 4]: the flatten uses ``int(x.shape[0])``, so a trace bakes the
    export's batch (2) into a Reshape; right at batch 2, an error at any other batch."""
    import torch
    from torch import nn

    class BakedBatch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(7)
            self.lin = nn.Linear(features, 4)

        def forward(self, x: Any) -> Any:
            return self.lin(x.reshape(int(x.shape[0]), -1))

    return BakedBatch().eval()


def value_branch(in_features: int = 8) -> Any:
    """forward(x) branches on ``x.sum() > 0``: samples drawn in [0, 1] all take one side, and a
    trace bakes that side in (with a TracerWarning); eager torch takes the other side for negatives."""
    import torch
    from torch import nn

    class ValueBranch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(8)
            self.lin = nn.Linear(in_features, 4)

        def forward(self, x: Any) -> Any:
            if x.sum() > 0:
                return self.lin(x)
            return -self.lin(x)

    return ValueBranch().eval()


def probabilities(in_features: int = 8, classes: int = 1000, distort: float = 0.0) -> Any:
    """Softmax over ``classes`` (each ~1/classes); ``distort`` scales them by (1 + distort): a
    variant whose probabilities are ``distort`` x 100% off, still within an absolute 0.1."""
    import torch
    from torch import nn

    class Probabilities(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(9)
            self.lin = nn.Linear(in_features, classes)

        def forward(self, x: Any) -> Any:
            return torch.softmax(self.lin(x), dim=-1) * (1.0 + distort)

    return Probabilities().eval()


def large_logits(in_features: int = 8, scale: float = 100.0, noise: float = 0.0) -> Any:
    """Logits of range ~``scale``; ``noise`` adds a fixed pattern of that fraction of ``scale``
    (a reduced-precision variant with cosine ~0.999 whose absolute error is far above 0.1)."""
    import torch
    from torch import nn

    class LargeLogits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(10)
            self.lin = nn.Linear(in_features, 16)
            self.register_buffer("pattern", torch.sin(torch.arange(16, dtype=torch.float32)))

        def forward(self, x: Any) -> Any:
            y = self.lin(x) * scale
            return y + self.pattern * (noise * scale)

    return LargeLogits().eval()


def elementwise_only(in_features: int = 8) -> Any:
    """forward(x) = relu(x) * 2 + 1: no MatMul, Gemm or Conv, so an int8 quantizer has nothing to quantize."""
    import torch
    from torch import nn

    class ElementwiseOnly(nn.Module):
        def forward(self, x: Any) -> Any:
            return torch.relu(x) * 2.0 + 1.0

    return ElementwiseOnly().eval()
