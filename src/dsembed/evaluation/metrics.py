"""Metric arithmetic: GLUE metrics and ROC-AUC, fidelity to the teacher, relative degradation, thresholds."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from ..tasks import TaskSpec


def compute_metrics(task: TaskSpec, logits: np.ndarray, labels: np.ndarray, teacher: bool = False) -> dict[str, float]:
    """GLUE metrics (in %, like the GLUE tables) from logits, plus ROC-AUC for binary tasks.

    ``teacher=True`` takes teacher-space logits.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 1:
        logits = logits[:, None]
    if teacher:
        logits = task.teacher_to_student_logits(logits)
    labels = np.asarray(labels).reshape(-1)
    out: dict[str, float] = {}
    if task.kind == "regression":
        scores = logits[:, 0]
        if "pearson" in task.metrics:
            out["pearson"] = 100.0 * float(pearsonr(scores, labels).statistic)
        if "spearman" in task.metrics:
            out["spearman"] = 100.0 * float(spearmanr(scores, labels).statistic)
        return out
    preds = (logits[:, 0] > 0).astype(int) if task.kind == "binary" else logits.argmax(axis=1)
    gold = labels.astype(int)
    if "accuracy" in task.metrics:
        out["accuracy"] = 100.0 * float(accuracy_score(gold, preds))
    if "f1" in task.metrics:
        out["f1"] = 100.0 * float(f1_score(gold, preds, zero_division=0))
    if task.kind == "binary" and len(np.unique(gold)) == 2:
        # Beyond GLUE: threshold-free ranking quality, what search and dedup use. Accuracy and F1 judge only
        # the sign of the logit, so a model that ranks pairs better can still lose them through a shifted
        # decision threshold; this column tells the two apart.
        out["roc_auc"] = 100.0 * float(roc_auc_score(gold, logits[:, 0]))
    return out


def teacher_fidelity(task: TaskSpec, student_logits: np.ndarray, teacher_logits: np.ndarray) -> dict[str, float]:
    """How closely a student reproduces its teacher on held-out pairs: the quantity distillation aims at.

    ``teacher_logits`` are raw (teacher space). Returns the mean squared logit error (the DSE loss term),
    Pearson/Spearman between the two scores (single-output tasks) and, for classification, how often the
    student's decision equals the teacher's (in %).
    """
    student = np.asarray(student_logits, dtype=np.float64).reshape(len(student_logits), -1)
    target = np.asarray(task.teacher_to_student_logits(np.asarray(teacher_logits, dtype=np.float64)))
    target = target.reshape(len(target), -1)
    out = {"logit_mse": float(((student - target) ** 2).sum(axis=1).mean())}
    if student.shape[1] == 1 and len(student) > 1:
        out["pearson"] = 100.0 * float(pearsonr(student[:, 0], target[:, 0]).statistic)
        out["spearman"] = 100.0 * float(spearmanr(student[:, 0], target[:, 0]).statistic)
    if task.kind == "binary":
        out["decision_agreement"] = 100.0 * float(((student[:, 0] > 0) == (target[:, 0] > 0)).mean())
    elif task.kind == "multiclass":
        out["decision_agreement"] = 100.0 * float((student.argmax(axis=1) == target.argmax(axis=1)).mean())
    return out


def relative_degradation(teacher_score: float, student_score: float) -> float:
    """(teacher - student) / teacher, in % — the paper's per-task degradation figure (NaN if teacher is 0)."""
    if teacher_score == 0:
        return float("nan")  # undefined; a collapsed teacher (e.g. F1 = 0) must not crash a finished run
    return 100.0 * (teacher_score - student_score) / teacher_score


def tune_threshold(task: TaskSpec, scores: np.ndarray, labels: np.ndarray) -> float:
    """The cut on a similarity score that maximises the task's main metric on the given (train) pairs."""
    candidates = np.unique(scores)
    if len(candidates) > 2000:
        candidates = np.quantile(scores, np.linspace(0, 1, 2001))
    best_t, best = float(candidates[0]), -np.inf
    for t in candidates:
        value = compute_metrics(task, (scores - t)[:, None], labels)[task.main_metric]
        if value > best:
            best_t, best = float(t), value
    return best_t
