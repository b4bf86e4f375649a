"""Plots: how closely students track the teacher on the dev set; ranking quality against teacher cost."""

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
    return _save(fig, path)


def plot_quality_vs_teacher_calls(record: dict, path: str | Path, metric: str = "mrr@10") -> Path:
    """Ranking quality against teacher calls per query (a ranking-evaluation record, on its query sample).

    Each cascade is a line over K from its first stage; every standalone method is a point (the teacher
    at N - 1 calls, first stages at 0). The x axis is symlog so that zero calls still shows.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    methods = record["methods"]
    stages: dict[str, list[tuple[float, float, int]]] = {}
    for m in methods.values():
        if m["family"] == "cascade":
            stages.setdefault(m["first_stage"], []).append(
                (m["teacher_calls_per_query"], m["metrics_sample"][metric], m["k"]))
    for stage, points in stages.items():
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], "-o", label=f"{stage} → teacher (K)")
        for x, y, k in points:
            ax.annotate(str(k), (x, y), textcoords="offset points", xytext=(3, 4), fontsize=7)
    for name, m in methods.items():
        if m["family"] != "cascade":
            ax.scatter([m["teacher_calls_per_query"]], [m["metrics_sample"][metric]], marker="*" if
                       m["family"] == "teacher" else "s", s=80, zorder=3, label=name)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(-0.5, 2 * max([1.0, *(m["teacher_calls_per_query"] for m in methods.values())]))
    sample = record["query_sample"]
    ax.set_xlabel("teacher calls per query")
    ax.set_ylabel(f"{metric} ({sample['size']} of {sample['of']} queries)")
    ax.set_title(f"{record['set']['name']}: {record['set']['candidates']} candidates")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:  # noqa: ANN001
    """Write a figure (its folder made first) and free it: plots run in long jobs, figures must not pile up."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
