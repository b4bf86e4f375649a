"""The speed benchmark (student vs teacher vs exact head scan vs ANN) and the ranking-quality evaluation.

``run`` runs it and assembles the record, ``measure`` holds the timers, ``report`` turns a record into
verdicts, a plot and tables. The command line entry point is ``dsembed bench``.
``retrieval_eval`` ranks a retrieval set with every method side by side (``dsembed eval-retrieval``), over
``retrieval_methods`` and the pair-hash keyed ``teacher_scores`` cache; ``retrieval_report`` renders it.
"""

from .measure import synthetic_rows
from .report import evaluate_targets, format_summary, plot_speed, render_markdown
from .retrieval_eval import METHOD_FAMILIES, RetrievalEvalConfig, evaluate_retrieval, query_sample
from .retrieval_report import render_retrieval_markdown
from .run import BenchConfig, run_bench
from .teacher_scores import TeacherScoreCache

__all__ = ["METHOD_FAMILIES", "BenchConfig", "RetrievalEvalConfig", "TeacherScoreCache", "evaluate_retrieval",
           "evaluate_targets", "format_summary", "plot_speed", "query_sample", "render_markdown",
           "render_retrieval_markdown", "run_bench", "synthetic_rows"]
