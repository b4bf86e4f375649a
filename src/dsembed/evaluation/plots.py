"""Plots: how closely students track the teacher on the dev set."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..tasks import TaskSpec


def plot_student_vs_teacher(task: TaskSpec, teacher_logits: np.ndarray, students: dict[str, np.ndarray],
                            labels: np.ndarray | None, path: str | Path) -> Path:
    """Scatter of each student's dev logits against the teacher's (student space), coloured by label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(students), figsize=(5 * len(students), 4.5), squeeze=False)
    t = np.asarray(teacher_logits)[:, 0]
    for ax, (name, logits) in zip(axes[0], students.items(), strict=True):
        s = np.asarray(logits)[:, 0]
        colour = labels if labels is not None else "tab:blue"
        sc = ax.scatter(t, s, c=colour, s=8, alpha=0.6, cmap="coolwarm")
        lo, hi = float(min(t.min(), s.min())), float(max(t.max(), s.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
        r = float(np.corrcoef(t, s)[0, 1]) if len(t) > 1 else float("nan")
        ax.set_title(f"{task.name}: {name} (Pearson r={r:.3f})")
        ax.set_xlabel("teacher " + ("logit[1]-logit[0]" if task.kind == "binary" else "output"))
        ax.set_ylabel("student output")
        ax.legend(loc="upper left")
        if labels is not None:
            fig.colorbar(sc, ax=ax, label="gold label")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
