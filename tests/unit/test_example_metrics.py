"""The MiniLM recipe's accuracy metric: pooled sentence-embedding cosine, mask-aware."""

import numpy as np

from navbuild.examples.metrics import pooled_cosine


def test_identical_outputs_score_one_and_padding_is_ignored():
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(3, 5, 4))
    mask = np.array([[1, 1, 1, 0, 0]] * 3)
    noisy = hidden.copy()
    noisy[:, 3:, :] += 100.0  # garbage where the mask is 0 must not matter
    got = pooled_cosine({"last_hidden_state": hidden}, {"last_hidden_state": noisy}, {"attention_mask": mask})
    assert abs(got["pooled_cosine_min"] - 1.0) < 1e-12


def test_a_perturbed_sample_lowers_the_minimum():
    rng = np.random.default_rng(1)
    hidden = rng.normal(size=(2, 4, 8))
    other = hidden.copy()
    other[1] = rng.normal(size=(4, 8))
    got = pooled_cosine({"last_hidden_state": hidden}, {"last_hidden_state": other},
                        {"attention_mask": np.ones((2, 4))})
    assert got["pooled_cosine_min"] < 0.9 < got["pooled_cosine_mean"] + 0.5
    assert got["pooled_cosine_mean"] > got["pooled_cosine_min"]
