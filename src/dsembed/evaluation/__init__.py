"""Metrics (GLUE's, ROC-AUC, fidelity to the teacher, ranking quality), the cosine baseline, STS files and plots."""

from .evaluate import CosineBaseline, cosine_baseline, cosine_scores, evaluate_student
from .metrics import compute_metrics, relative_degradation, teacher_fidelity, tune_threshold
from .ranking import RANKING_METRICS, RankingResult, query_metrics, ranking_metrics
from .sts import evaluate_sts_file

__all__ = ["RANKING_METRICS", "CosineBaseline", "RankingResult", "compute_metrics", "cosine_baseline", "cosine_scores",
           "evaluate_student", "evaluate_sts_file", "query_metrics", "ranking_metrics", "relative_degradation",
           "teacher_fidelity", "tune_threshold"]
