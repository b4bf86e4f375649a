"""Metrics (GLUE's, ROC-AUC, fidelity to the teacher), baselines, STS files and plots."""

from .metrics import (
    CosineBaseline,
    compute_metrics,
    cosine_baseline,
    cosine_scores,
    evaluate_sts_file,
    evaluate_student,
    relative_degradation,
    teacher_fidelity,
    tune_threshold,
)

__all__ = ["CosineBaseline", "compute_metrics", "cosine_baseline", "cosine_scores", "evaluate_student",
           "evaluate_sts_file", "relative_degradation", "teacher_fidelity", "tune_threshold"]
