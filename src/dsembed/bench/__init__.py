"""The speed benchmark: student vs teacher vs exact head scan vs ANN, recorded under results/."""

from .run import BenchConfig, evaluate_targets, format_summary, plot_speed, render_markdown, run_bench

__all__ = ["BenchConfig", "evaluate_targets", "format_summary", "plot_speed", "render_markdown", "run_bench"]
