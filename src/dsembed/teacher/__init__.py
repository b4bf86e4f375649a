"""The teacher: a fine-tuned cross-encoder (train, inference, ensembles) and its stored logits."""

from .logits import (
    LogitsBundle,
    LogitsCache,
    TeacherLogits,
    cached_teacher_logits,
    compute_teacher_logits,
    load_logits_bundles,
    logits_cache_path,
    open_logits_cache,
    write_logits_bundle,
)
from .model import EnsembleTeacher, Teacher, load_teacher
from .train import train_teacher

__all__ = ["EnsembleTeacher", "LogitsBundle", "LogitsCache", "Teacher", "TeacherLogits", "cached_teacher_logits",
           "compute_teacher_logits", "load_logits_bundles", "load_teacher", "logits_cache_path", "open_logits_cache",
           "train_teacher", "write_logits_bundle"]
