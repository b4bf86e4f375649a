"""Scoring a model on labelled pairs: a student's metrics, and the pretrained-encoder cosine baseline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..data import PairDataset
from ..errors import ConfigError
from ..tasks import TaskSpec
from .metrics import compute_metrics, tune_threshold


def evaluate_student(model, task: TaskSpec, data: PairDataset, batch_size: int = 64,  # noqa: ANN001
                     show_progress_bar: bool | None = None) -> tuple[dict[str, float], np.ndarray]:
    """Metrics of a DSE student on labelled pairs, plus its raw logits for plots."""
    logits = model.predict(data.pairs(), batch_size=batch_size, show_progress_bar=show_progress_bar,
                           apply_activation=False)
    return compute_metrics(task, logits, data.labels), logits


def cosine_scores(encode: Callable[[list[str]], np.ndarray], data: PairDataset) -> np.ndarray:
    """Cosine similarity of each pair, encoding every distinct sentence once."""
    unique = list(dict.fromkeys(data.sentence1 + data.sentence2))
    index = {s: i for i, s in enumerate(unique)}
    emb = np.asarray(encode(unique), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True).clip(min=1e-12)
    a = emb[[index[s] for s in data.sentence1]]
    b = emb[[index[s] for s in data.sentence2]]
    return (a * b).sum(axis=1)


@dataclass
class CosineBaseline:
    """Untouched pretrained encoder + cosine: the baseline a student must beat."""

    metrics: dict[str, float]
    threshold: float | None
    dev_scores: np.ndarray


def cosine_baseline(encode: Callable[[list[str]], np.ndarray], task: TaskSpec, train: PairDataset | None,
                    dev: PairDataset) -> CosineBaseline:
    """Regression: correlations of cosine; binary: threshold tuned on ``train``, applied to ``dev``."""
    dev_scores = cosine_scores(encode, dev)
    if task.kind == "regression":
        return CosineBaseline(compute_metrics(task, dev_scores[:, None], dev.labels), None, dev_scores)
    if task.kind != "binary":
        raise ConfigError(f"the cosine baseline needs a binary or regression task, not {task.kind}")
    if train is None or train.labels is None:
        raise ConfigError("a binary cosine baseline needs labelled train pairs to tune its threshold")
    threshold = tune_threshold(task, cosine_scores(encode, train), train.labels)
    return CosineBaseline(compute_metrics(task, (dev_scores - threshold)[:, None], dev.labels), threshold, dev_scores)
