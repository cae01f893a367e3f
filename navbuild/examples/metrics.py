"""Example accuracy metrics for recipes: what users of sentence encoders actually compare."""

from __future__ import annotations

from typing import Mapping

import numpy as np


def pooled_cosine(reference_outputs: Mapping[str, np.ndarray], variant_outputs: Mapping[str, np.ndarray],
                  inputs: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Cosine similarity of mask-aware mean-pooled, L2-normalized sentence embeddings.

    This is how sentence-transformers turns MiniLM's hidden states into an embedding, so it is
    the accuracy a user of the model sees (raw hidden states can differ more than the
    embeddings built from them). Returns the minimum and mean over the samples.
    """
    ref = _pool(np.asarray(reference_outputs["last_hidden_state"], dtype=np.float64), inputs)
    got = _pool(np.asarray(variant_outputs["last_hidden_state"], dtype=np.float64), inputs)
    cos = (ref * got).sum(axis=1)
    return {"pooled_cosine_min": float(cos.min()), "pooled_cosine_mean": float(cos.mean())}


def _pool(hidden: np.ndarray, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    mask = np.asarray(inputs.get("attention_mask", np.ones(hidden.shape[:2])), dtype=np.float64)[..., None]
    pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
