"""One command, all stages: teacher -> teacher logits -> DSE student -> label-only student -> baselines.

Orchestration only: each stage decides itself whether a finished result in the run folder can be
reused (``train_teacher``, ``compute_teacher_logits`` and ``distill`` all resume or reuse), and the
run writes one JSON record with metrics, wall times, machine and versions. ``run_seeds`` repeats a
run over several seeds and records the seed means with their spread.
"""

from __future__ import annotations

from ..config import PipelineConfig
from .report import format_table, teacher_description
from .run import run_pipeline
from .seeds import format_seed_table, run_seeds, summarise_seeds
from .stages import STUDENT_NAMES, load_pipeline_data, load_test_data, pipeline_task

__all__ = ["PipelineConfig", "STUDENT_NAMES", "format_seed_table", "format_table", "load_pipeline_data",
           "load_test_data", "pipeline_task", "run_pipeline", "run_seeds", "summarise_seeds", "teacher_description"]
