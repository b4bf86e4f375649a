"""Tiny students of every pooling (and of all three head kinds) for the ONNX export tests."""

from __future__ import annotations

from pathlib import Path

import torch

from conftest import MAX_LEN, MRPC, NLI3, STSB
from dsembed.student.model import DSEModel

# pooling -> task: together they cover the top-k concatenation, mean, cls and 1-, 1- and 3-output heads
POOLINGS = {"topk": MRPC, "mean": STSB, "cls": NLI3}

SENTENCES = [
    "A man is playing a guitar on the stage.",
    "the cat",
    "Two dogs run through a field of tall grass near the river while children watch them play.",
    "music",
    "The city train leaves at noon and the old horse sleeps in the red house by the tree. " * 4,  # truncated
    "a small blue car",
    "Is the new book about a child who sings, or about a woman who reads?",
]


def make_student(tiny_base: str, folder: Path, pooling: str) -> Path:
    model = DSEModel.from_base(tiny_base, POOLINGS[pooling], pooling=pooling, top_k=4, head_hidden=16,
                               max_seq_length=MAX_LEN, device="cpu", seed=0)
    with torch.no_grad():  # a head with a real spread of logits (the default init is nearly flat)
        gen = torch.Generator().manual_seed(1)
        for p in model.head.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    path = folder / f"student-{pooling}"
    model.save(path)
    return path
