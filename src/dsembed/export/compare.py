"""Side-by-side measures of two backends of one student: how far apart their outputs are, and how fast each is.

Used by the export's own check, the parity tests and ``benchmarks/export_bench.py``, so that every number
about the ONNX graphs is computed one way.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
from scipy.stats import spearmanr


def compare_models(reference: Any, other: Any, sentences: list[str], pairs: list[tuple[str, str]] | None = None,
                   batch_size: int = 32) -> dict[str, Any]:
    """Embedding and head-logit differences of ``other`` against ``reference`` on the same inputs."""
    a = reference.encode(sentences, batch_size=batch_size, show_progress_bar=False)
    b = other.encode(sentences, batch_size=batch_size, show_progress_bar=False)
    la = lb = None
    if pairs:
        la = reference.predict(pairs, batch_size=batch_size, apply_activation=False)
        lb = other.predict(pairs, batch_size=batch_size, apply_activation=False)
    return differences(a, b, la, lb)


def differences(a: np.ndarray, b: np.ndarray, logits_a: np.ndarray | None = None,
                logits_b: np.ndarray | None = None) -> dict[str, Any]:
    """How far embeddings ``b`` (and pair logits) are from the reference ``a``, row for row.

    Besides the largest absolute differences it reports what a user of the scores sees: the smallest cosine
    between the two embeddings of a sentence, whether each sentence keeps its nearest neighbour, and the
    Spearman correlation of the pair logits (rank agreement).
    """
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    out: dict[str, Any] = {
        "sentences": len(a),
        "max_abs_embedding_diff": float(np.abs(a - b).max()),
        "max_relative_embedding_diff": float((np.linalg.norm(a - b, axis=1) / np.linalg.norm(a, axis=1)).max()),
        "min_cosine": float(((a * b).sum(axis=1) / np.maximum(norms, 1e-12)).min()),
        "nearest_neighbour_agreement": _neighbour_agreement(a, b),
    }
    if logits_a is not None and logits_b is not None:
        la, lb = np.asarray(logits_a, dtype=np.float32), np.asarray(logits_b, dtype=np.float32)
        out["pairs"] = len(la)
        out["max_abs_logit_diff"] = float(np.abs(la - lb).max())
        out["logit_spearman"] = float(spearmanr(la.reshape(-1), lb.reshape(-1)).statistic) if len(la) > 2 else 1.0
    return out


def _neighbour_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of sentences whose cosine nearest neighbour (among the others) is the same in ``a`` and ``b``."""
    if len(a) < 3:
        return 1.0

    def nearest(x: np.ndarray) -> np.ndarray:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        sim = x @ x.T
        np.fill_diagonal(sim, -np.inf)
        return sim.argmax(axis=1)

    return float((nearest(a) == nearest(b)).mean())


def time_encoders(models: dict[str, Any], sentences: list[str], batch_size: int = 32, repeats: int = 5,
                  warmup: int = 64) -> dict[str, dict[str, Any]]:
    """Sentences/s of each model's ``encode`` on the same sentences and batch size; medians over repeats.

    The backends take turns within every repeat (A B C, A B C, ...) so that a change in the machine's load
    during the run falls on all of them alike; each is warmed up on ``warmup`` sentences first.
    """
    for model in models.values():
        model.encode(sentences[:warmup], batch_size=batch_size, show_progress_bar=False)
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            t0 = time.perf_counter()
            model.encode(sentences, batch_size=batch_size, show_progress_bar=False)
            seconds[name].append(time.perf_counter() - t0)
    return {name: {"sentences": len(sentences), "batch_size": batch_size, "repeats": repeats,
                   "sentences_per_s_median": len(sentences) / statistics.median(times),
                   "sentences_per_s": [round(len(sentences) / t, 2) for t in times],
                   "seconds": [round(t, 4) for t in times]}
            for name, times in seconds.items()}
