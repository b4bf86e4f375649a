"""DSE loss: ``(1 - alpha) * task_loss + alpha * mean_i sum_k (student_ik - teacher_ik)^2``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..tasks import TaskSpec


def task_loss(task: TaskSpec, logits: Tensor, labels: Tensor) -> Tensor:
    """The supervised loss that fits the task: BCE on the single binary logit, MSE, or CE."""
    if task.kind == "binary":
        return F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())
    if task.kind == "regression":
        return F.mse_loss(logits[:, 0], labels.float())
    return F.cross_entropy(logits, labels.long())


class DSELoss(nn.Module):
    """Mixes the label loss with squared error to the teacher's logits (alpha=0: labels only)."""

    def __init__(self, task: TaskSpec, alpha: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
        self.task = task
        self.alpha = alpha

    def forward(self, logits: Tensor, labels: Tensor | None = None,
                teacher_logits: Tensor | None = None) -> dict[str, Tensor]:
        parts: dict[str, Tensor] = {}
        total = logits.new_zeros(())
        if labels is not None and (self.alpha < 1.0 or teacher_logits is None):  # eval rows carry no teacher
            parts["task_loss"] = task_loss(self.task, logits, labels)
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
