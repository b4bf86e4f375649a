"""The speed benchmark: student vs teacher vs exact head scan vs ANN, recorded under results/.

``run`` runs it and assembles the record, ``measure`` holds the timers, ``report`` turns a record into
verdicts, a plot and tables. The command line entry point is ``dsembed bench``.
"""

from .measure import synthetic_rows
from .report import evaluate_targets, format_summary, plot_speed, render_markdown
from .run import BenchConfig, run_bench

__all__ = ["BenchConfig", "evaluate_targets", "format_summary", "plot_speed", "render_markdown", "run_bench",
           "synthetic_rows"]
