"""What one student run trains on: its rows, their targets, the loss recipe and the step budget.

Checked here, before anything is written: the settings that cannot work together (alpha > 0 with
no teacher, mined pairs that would carry no loss, a bundle of another task) are one-line errors.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ..config import StudentConfig
from ..data import PairDataset
from ..errors import ConfigError
from ..tasks import TaskSpec
from .mined import MinedRows, mined_record, teacher_labels
from .stream import (
    PairRows,
    StreamRows,
    evaluation_steps,
    labelled_only_steps,
    steps_per_epoch,
    training_stream,
)

logger = logging.getLogger("dsembed.student")

_LOSS_TEXT = {
    "plain": "(1 - alpha) * task + alpha * distill",
    "dse": "(1 - alpha) * task + alpha * distill on labelled pairs; alpha * distill alone on mined pairs "
           "(each term the mean over the batch rows that carry it)",
    "augsbert": "AugSBERT: task loss alone on gold pairs and on mined pairs labelled by the teacher "
                "(hard label, or its score for regression); no distillation term, alpha ignored",
}


@dataclass
class TrainingPlan:
    """The training dataset and schedule of one run; ``steps`` is None for a plain epoch run."""

    dataset: Dataset
    loss_alpha: float  # the alpha the loss uses (0 for AugSBERT, whatever config.alpha says)
    steps: int | None = None
    eval_steps: list[int] = field(default_factory=list)
    mined: dict[str, Any] | None = None  # the record of the mined pairs used, None without
    loss: str = ""

    @property
    def ordered(self) -> bool:
        """The dataset is the laid-out stream: the Trainer must read it in order, not shuffle it."""
        return self.steps is not None

    def argument_overrides(self) -> dict[str, Any]:
        """TrainingArguments for a step budget: evaluation and saving at ``eval_steps`` (by callback)."""
        if self.steps is None:
            return {}
        return {"max_steps": self.steps, "eval_strategy": "steps", "save_strategy": "steps",
                "eval_steps": self.steps, "save_steps": self.steps}

    def schedule(self) -> dict[str, Any] | None:
        """The step schedule for the run-config fingerprint (None for an epoch run)."""
        return None if self.steps is None else {"steps": self.steps, "eval_steps": self.eval_steps}


def labelled_targets(task: TaskSpec, train: PairDataset, teacher_logits: np.ndarray | None,
                     config: StudentConfig) -> np.ndarray | None:
    """The teacher's logits on the student's scale, one row per training pair (None for label-only)."""
    if config.recipe == "augsbert":
        if train.labels is None:
            raise ConfigError("recipe augsbert trains on gold labels: the training pairs have none")
        return None
    if config.alpha > 0 and teacher_logits is None:
        raise ConfigError("alpha > 0 needs teacher logits (compute them with `dsembed logits`)")
    if train.labels is None and config.alpha < 1:
        raise ConfigError("training pairs have no labels; use alpha=1 to learn from the teacher alone")
    if teacher_logits is None or config.alpha == 0:
        return None
    if len(teacher_logits) != len(train):
        raise ConfigError(f"{len(teacher_logits)} teacher logits for {len(train)} training pairs")
    return np.asarray(task.teacher_to_student_logits(np.asarray(teacher_logits)), dtype=np.float32)


def used_mined(task: TaskSpec, config: StudentConfig, mined: MinedRows | None) -> MinedRows | None:
    """The mined pairs this run trains on: None when none are given or ``mined_ratio`` is 0 (off)."""
    if mined is None:
        if config.recipe == "augsbert":
            raise ConfigError("recipe augsbert needs mined pairs (`--mined BUNDLE`); without them it is the "
                              "label-only student (alpha=0)")
        return None
    mined.check_task(task)
    if config.mined_ratio == 0:
        logger.info("mined_ratio is 0: the %d mined pairs are not used", len(mined))
        return None
    if config.recipe == "dse" and config.alpha == 0:
        raise ConfigError("mined pairs carry only the distillation term, which alpha=0 switches off; use "
                          "alpha > 0, or recipe augsbert to train on the teacher's labels")
    return mined


def _combined_rows(task: TaskSpec, train: PairDataset, targets: np.ndarray | None, mined: MinedRows,
                   config: StudentConfig) -> PairRows:
    """Labelled rows then mined rows, with the labels, targets and gold-label mask each recipe needs."""
    pairs = PairDataset(train.sentence1 + mined.pairs.sentence1, train.sentence2 + mined.pairs.sentence2, None)
    if config.recipe == "augsbert":
        pairs.labels = np.concatenate([train.labels, teacher_labels(task, mined.teacher_logits)])
        return PairRows(pairs, None)
    mined_targets = np.asarray(task.teacher_to_student_logits(mined.teacher_logits), dtype=np.float32)
    if targets is None:  # alpha > 0 was checked: labelled targets exist whenever mined rows are used
        raise ConfigError("mined pairs need teacher logits for the labelled pairs too")
    mask = None
    if train.labels is not None:
        pairs.labels = np.concatenate([train.labels, np.zeros(len(mined), np.float32)])  # placeholders, masked
        mask = np.concatenate([np.ones(len(train), bool), np.zeros(len(mined), bool)])
    return PairRows(pairs, np.concatenate([targets, mined_targets]), mask)


def _steps(n_labelled: int, config: StudentConfig, mined: MinedRows | None, world: int) -> int | None:
    if config.max_steps is not None:
        return config.max_steps
    if config.equal_compute:
        return labelled_only_steps(n_labelled, config, world)
    if mined is not None:  # epochs over the labelled pairs, each carrying its share of mined rows
        return math.ceil(config.epochs * steps_per_epoch(n_labelled + round(config.mined_ratio * n_labelled),
                                                         config, world))
    return None


def plan_training(task: TaskSpec, train: PairDataset, teacher_logits: np.ndarray | None, config: StudentConfig,
                  mined: MinedRows | None = None, world: int = 1) -> TrainingPlan:
    """Check the settings against the data and lay out the run (``world``: processes of the launch)."""
    targets = labelled_targets(task, train, teacher_logits, config)
    mined = used_mined(task, config, mined)
    loss_alpha = 0.0 if config.recipe == "augsbert" else config.alpha
    rows = PairRows(train, targets) if mined is None else _combined_rows(task, train, targets, mined, config)
    steps = _steps(len(train), config, mined, world)
    if steps is None:
        return TrainingPlan(rows, loss_alpha, loss=_LOSS_TEXT["plain"])
    batch_rows = config.batch_size
    total_rows = steps * batch_rows * config.gradient_accumulation_steps * world
    order = training_stream(len(train), 0 if mined is None else len(mined), config.mined_ratio,
                            config.mined_sampling, batch_rows, total_rows, config.seed)
    record = None if mined is None else mined_record(mined, config.mined_ratio, config.mined_sampling,
                                                     config.recipe, steps)
    loss = _LOSS_TEXT[config.recipe if mined is not None else "plain"]
    return TrainingPlan(StreamRows(rows, order), loss_alpha, steps, evaluation_steps(steps, config.epochs), record,
                        loss)
