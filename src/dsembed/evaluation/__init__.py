"""Metrics (GLUE's, ROC-AUC, fidelity to the teacher), the cosine baseline, STS files and plots."""

from .evaluate import CosineBaseline, cosine_baseline, cosine_scores, evaluate_student
from .metrics import compute_metrics, relative_degradation, teacher_fidelity, tune_threshold
from .sts import evaluate_sts_file

__all__ = ["CosineBaseline", "compute_metrics", "cosine_baseline", "cosine_scores", "evaluate_student",
           "evaluate_sts_file", "relative_degradation", "teacher_fidelity", "tune_threshold"]
