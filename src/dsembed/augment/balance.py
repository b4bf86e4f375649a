"""Even out the teacher-score distribution of mined pairs, band by band.

Random recombinations of sentences are almost all unrelated, so a teacher scores nearly every mined
pair as a negative; a student distilled on that mostly learns "no". Balancing keeps at most
``per_band`` pairs from each band of teacher score (P(positive) for binary tasks, the predicted score
for regression), sampled with a seed, in the original row order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import ConfigError
from ..student.loss import logits_to_scores
from ..tasks import TaskSpec
from .score import ScoredPairs


def teacher_scores(scored: ScoredPairs, task: TaskSpec) -> np.ndarray:
    """One score per pair on the student's scale: P(positive) (binary) or the predicted value (regression)."""
    if task.kind not in ("binary", "regression"):
        raise ConfigError(f"balancing by score bands needs a binary or regression task, not {task.kind} ({task.name})")
    if scored.teacher_logits.shape[1] != task.num_labels:
        raise ConfigError(f"the logits have {scored.teacher_logits.shape[1]} columns; task {task.name} has "
                          f"{task.num_labels}")
    student_logits = task.teacher_to_student_logits(scored.teacher_logits)
    return logits_to_scores(task, torch.as_tensor(student_logits)).numpy().astype(np.float64)


def band_edges(scores: np.ndarray, task: TaskSpec, bands: int | Sequence[float]) -> np.ndarray:
    """Band edges: ``bands`` equal-width bands over [0, 1] (binary) or the observed score range (regression)."""
    if not isinstance(bands, int | np.integer):
        edges = np.asarray(list(bands), dtype=np.float64)
        if edges.ndim != 1 or len(edges) < 2 or not np.all(np.diff(edges) > 0) or not np.isfinite(edges).all():
            raise ConfigError(f"band edges must be at least two increasing finite numbers, got {list(bands)}")
        return edges
    if bands < 1:
        raise ConfigError(f"bands must be >= 1, got {bands}")
    if task.kind == "binary":
        return np.linspace(0.0, 1.0, int(bands) + 1)
    low, high = (float(scores.min()), float(scores.max())) if len(scores) else (0.0, 1.0)
    return np.linspace(low, high if high > low else low + 1.0, int(bands) + 1)


def balance_by_bands(scored: ScoredPairs, task: TaskSpec, *, bands: int | Sequence[float] = 5,
                     per_band: int | None = None, seed: int = 42) -> ScoredPairs:
    """At most ``per_band`` rows per teacher-score band (default: the size of the smallest non-empty band).

    Scores outside explicit edges fall into the first or last band. The record gains the edges and the
    counts per band before and after.
    """
    if per_band is not None and per_band < 0:
        raise ConfigError(f"per_band must be >= 0, got {per_band}")
    scores = teacher_scores(scored, task)
    edges = band_edges(scores, task, bands)
    band = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, len(edges) - 2)
    before = np.bincount(band, minlength=len(edges) - 1)
    cap = per_band if per_band is not None else int(before[before > 0].min()) if before.any() else 0
    rng = np.random.default_rng([seed, 2])
    keep: list[np.ndarray] = []
    for b in range(len(edges) - 1):
        rows = np.flatnonzero(band == b)
        keep.append(rows if len(rows) <= cap else rng.choice(rows, size=cap, replace=False))
    kept = np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)
    out = scored.select(kept)
    after = np.bincount(band[kept], minlength=len(edges) - 1)
    out.record = {**scored.record, "balance": {
        "score": "P(positive) from the teacher's logit difference" if task.kind == "binary" else "predicted score",
        "edges": [round(float(e), 6) for e in edges], "per_band": cap, "seed": seed,
        "before": before.tolist(), "after": after.tolist(), "rows_before": len(scored), "rows_after": len(out)}}
    return out
