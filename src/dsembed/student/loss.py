"""DSE loss: ``(1 - alpha) * task_loss + alpha * mean_i sum_k (student_ik - teacher_ik)^2``.

Batches that mix labelled pairs with teacher-scored mined pairs (no gold label) pass a ``label_mask``:
each term is the mean over the rows that carry it, so mined rows add distillation signal without
shrinking the label term, and a batch of labelled rows only gives exactly the plain DSE loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..tasks import TaskSpec


def task_loss(task: TaskSpec, logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """The supervised loss that fits the task: BCE on the single binary logit, MSE, or CE
    (``reduction="none"``: one value per row, for masking)."""
    if task.kind == "binary":
        return F.binary_cross_entropy_with_logits(logits[:, 0], labels.float(), reduction=reduction)
    if task.kind == "regression":
        return F.mse_loss(logits[:, 0], labels.float(), reduction=reduction)
    return F.cross_entropy(logits, labels.long(), reduction=reduction)


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over the rows where ``mask`` is true (all rows without a mask); 0 when no row is."""
    if mask is None:
        return values.mean()
    weights = mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp(min=1.0)


class DSELoss(nn.Module):
    """Mixes the label loss with squared error to the teacher's logits (alpha=0: labels only)."""

    def __init__(self, task: TaskSpec, alpha: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
        self.task = task
        self.alpha = alpha

    def forward(self, logits: Tensor, labels: Tensor | None = None, teacher_logits: Tensor | None = None,
                label_mask: Tensor | None = None) -> dict[str, Tensor]:
        """``label_mask`` marks the rows whose ``labels`` are gold; the others (mined pairs, whose label
        slot holds a placeholder) carry the distillation term only, weighted by alpha like the labelled rows'.
        """
        parts: dict[str, Tensor] = {}
        total = logits.new_zeros(())
        if labels is not None and (self.alpha < 1.0 or teacher_logits is None):  # eval rows carry no teacher
            parts["task_loss"] = masked_mean(task_loss(self.task, logits, labels, reduction="none"), label_mask)
            total = total + (1.0 - self.alpha) * parts["task_loss"]
        if teacher_logits is not None and self.alpha > 0.0:
            parts["distill_loss"] = ((logits - teacher_logits.to(logits.dtype)) ** 2).sum(dim=-1).mean()
            total = total + self.alpha * parts["distill_loss"]
        if not parts:
            raise ValueError("DSELoss needs labels (alpha < 1) or teacher logits (alpha > 0)")
        parts["loss"] = total
        return parts


def logits_to_scores(task: TaskSpec, logits: torch.Tensor) -> torch.Tensor:
    """Pair scores a user can threshold: P(positive), the regression value, or class probabilities."""
    if task.kind == "binary":
        return torch.sigmoid(logits[:, 0])
    if task.kind == "regression":
        return logits[:, 0]
    return torch.softmax(logits, dim=-1)
