"""The DSE student: shared encoder + pooling, the pair head, the distillation loss and trainer, the model card."""

from .card import update_model_card
from .head import HeadScorer, PairHead
from .loss import DSELoss, logits_to_scores, task_loss
from .mined import MinedRows, teacher_labels
from .model import DSEConfig, DSEModel, build_encoder
from .train import DistillationTrainer, distill

__all__ = ["DSEConfig", "DSELoss", "DSEModel", "DistillationTrainer", "HeadScorer", "MinedRows", "PairHead",
           "build_encoder", "distill", "logits_to_scores", "task_loss", "teacher_labels",
           "update_model_card"]
