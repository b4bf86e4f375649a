"""Any STS-style file (pairs with a gold similarity): how well a student's head and its cosine correlate."""

from __future__ import annotations

from pathlib import Path

from scipy.stats import pearsonr, spearmanr

from ..data import read_pairs
from ..errors import ConfigError
from ..tasks import custom_task
from .evaluate import cosine_scores


def evaluate_sts_file(model, path: str | Path, batch_size: int = 64, skip_bad: bool = False,  # noqa: ANN001
                      show_progress_bar: bool | None = None) -> dict[str, float]:
    """Spearman/Pearson of the student's pair score and of plain cosine against gold scores in a file."""
    sts = custom_task("sts-file", "regression")
    data = read_pairs(path, sts, skip_bad=skip_bad)
    if len(data) < 2:
        raise ConfigError(f"{path}: need at least 2 scored pairs to correlate, got {len(data)}")
    head = model.predict(data.pairs(), batch_size=batch_size, show_progress_bar=show_progress_bar,
                         apply_activation=False)
    head_score = head[:, -1] if model.task.kind != "multiclass" else head[:, 0]
    cos = cosine_scores(lambda s: model.encode(s, batch_size=batch_size, show_progress_bar=show_progress_bar), data)
    gold = data.labels
    return {
        "pairs": float(len(data)),
        "skipped": float(data.skipped),
        "head_spearman": 100.0 * float(spearmanr(head_score, gold).statistic),
        "head_pearson": 100.0 * float(pearsonr(head_score, gold).statistic),
        "cosine_spearman": 100.0 * float(spearmanr(cos, gold).statistic),
        "cosine_pearson": 100.0 * float(pearsonr(cos, gold).statistic),
    }
