"""dsembed: Distilled Sentence Embedding (Barkan et al., AAAI 2020).

The public surface, one import away (``from dsembed import distill, DSEModel``); each name is
loaded on first use so that ``import dsembed`` stays cheap for the command line.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    # tasks and data
    "TaskSpec": "tasks", "get_task": "tasks", "custom_task": "tasks",
    "PairDataset": "data", "read_pairs": "data", "read_sentences": "data", "load_glue": "data",
    "load_hf_pairs": "data", "qnli_halves": "data", "load_ranking_set": "data",
    # settings and errors
    "TeacherConfig": "config", "StudentConfig": "config", "PipelineConfig": "config", "DsembedError": "errors",
    # teacher
    "train_teacher": "teacher", "Teacher": "teacher", "EnsembleTeacher": "teacher", "load_teacher": "teacher",
    "compute_teacher_logits": "teacher", "TeacherLogits": "teacher", "LogitsBundle": "teacher",
    "write_logits_bundle": "teacher", "load_logits_bundles": "teacher",
    # student
    "DSEModel": "student", "distill": "student", "DistillationTrainer": "student", "MinedRows": "student",
    "load_mined_rows": "augment",
    # evaluation
    "compute_metrics": "evaluation", "evaluate_student": "evaluation", "evaluate_sts_file": "evaluation",
    # retrieval
    "CandidateStore": "retrieval", "build_store": "retrieval", "open_store": "retrieval", "rank": "retrieval",
    # the whole job
    "run_pipeline": "pipeline",
}

__all__ = ["__version__", *sorted(_PUBLIC)]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dsembed' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
