"""Distillation: fit the siamese student to the labels and to the stored teacher logits.

The shared :mod:`dsembed.training` helper runs the Hugging Face ``Trainer``; this module adds what
is the student's own: a collator that tokenises the two sentences of each pair separately (the
student never sees them together) and a trainer hook giving the fresh head its own learning rate.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import Trainer, set_seed

from ..artifacts import MODEL_DIR, STUDENT_CONFIG, TRAINING_RECORD
from ..config import StudentConfig
from ..data import PairDataset
from ..errors import ConfigError
from ..tasks import TaskSpec
from ..training import (
    TrainedModel,
    check_finished_epochs,
    check_run_config,
    dev_curve_from_checkpoints,
    fit,
    main_process_writes,
    metrics_function,
    training_arguments,
)
from ..utils import atomic_write_json, load_average, sha256_bytes
from .model import DSEModel

logger = logging.getLogger("dsembed.student")


class _PairRows(Dataset):
    def __init__(self, data: PairDataset, targets: np.ndarray | None) -> None:
        self.data = data
        self.targets = targets

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row: dict[str, Any] = {"a": self.data.sentence1[i], "b": self.data.sentence2[i]}
        if self.data.labels is not None:
            row["labels"] = float(self.data.labels[i])
        if self.targets is not None:
            row["teacher_logits"] = self.targets[i]
        return row


class SiameseCollator:
    """Tokenises sentence A and sentence B of each pair separately (shared tokenizer)."""

    def __init__(self, model: DSEModel) -> None:
        self.model = model

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {
            "sentence_a": self.model.tokenize([r["a"] for r in rows]),
            "sentence_b": self.model.tokenize([r["b"] for r in rows]),
        }
        if "labels" in rows[0]:
            batch["labels"] = torch.tensor([r["labels"] for r in rows], dtype=torch.float32)
        if "teacher_logits" in rows[0]:
            batch["teacher_logits"] = torch.tensor(np.stack([r["teacher_logits"] for r in rows]), dtype=torch.float32)
        return batch


class DistillationTrainer(Trainer):
    """HF Trainer whose optimiser gives the freshly initialised head its own learning rate.

    Weight decay follows the Trainer's own rule (``get_decay_parameter_names``: no decay on biases
    and norms); only the head/encoder split of the rates is added here.
    """

    def __init__(self, *args: Any, head_learning_rate: float | None = None, **kwargs: Any) -> None:
        self.head_learning_rate = head_learning_rate
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:  # type: ignore[override]
        if self.optimizer is None and self.head_learning_rate is not None:
            decay = set(self.get_decay_parameter_names(self.model))
            head = {id(p) for p in self.model.head.parameters()}
            wd, rates = self.args.weight_decay, {False: self.args.learning_rate, True: self.head_learning_rate}
            groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
            for name, param in self.model.named_parameters():
                if param.requires_grad:
                    groups.setdefault((id(param) in head, name in decay), []).append(param)
            order = [(False, True), (False, False), (True, True), (True, False)]  # encoder, then head; decay first
            self.optimizer = torch.optim.AdamW(
                [{"params": groups[key], "weight_decay": wd if key[1] else 0.0, "lr": rates[key[0]]}
                 for key in order if groups.get(key)], lr=self.args.learning_rate)
            return self.optimizer
        return super().create_optimizer()


def distill_run_config(task: TaskSpec, config: StudentConfig, train: PairDataset, dev: PairDataset,
                       teacher_logits: np.ndarray | None) -> dict[str, Any]:
    """What a student run depends on; a folder made with anything else is not resumed or reused."""
    used = teacher_logits is not None and config.alpha > 0
    logits_hash = sha256_bytes(np.ascontiguousarray(teacher_logits, np.float32).tobytes()) if used else None
    return {"stage": "distill", "task": asdict(task), "config": config.resume_key(), "train": train.fingerprint(),
            "dev": dev.fingerprint(), "teacher_logits": logits_hash}


def _targets(task: TaskSpec, train: PairDataset, teacher_logits: np.ndarray | None,
             config: StudentConfig) -> np.ndarray | None:
    """The teacher's logits on the student's scale, one row per training pair (None for label-only)."""
    if config.alpha > 0 and teacher_logits is None:
        raise ConfigError("alpha > 0 needs teacher logits (compute them with `dsembed logits`)")
    if train.labels is None and config.alpha < 1:
        raise ConfigError("training pairs have no labels; use alpha=1 to learn from the teacher alone")
    if teacher_logits is None or config.alpha == 0:
        return None
    if len(teacher_logits) != len(train):
        raise ConfigError(f"{len(teacher_logits)} teacher logits for {len(train)} training pairs")
    return np.asarray(task.teacher_to_student_logits(np.asarray(teacher_logits)), dtype=np.float32)


def _finished(output_dir: Path, config: StudentConfig, extend: bool) -> TrainedModel | None:
    """The finished student in ``output_dir`` when it was trained for ``config.epochs``, else None."""
    final, record_file = output_dir / MODEL_DIR, output_dir / TRAINING_RECORD
    if not ((final / STUDENT_CONFIG).is_file() and record_file.is_file()):
        return None
    record = json.loads(record_file.read_text())
    if float(record.get("epochs", config.epochs)) != float(config.epochs):
        if not extend:
            check_finished_epochs(output_dir, record.get("epochs"), config.epochs, "dsembed distill --epochs N")
        return None
    if "dev_curve" not in record:  # recorded before curves were kept: read it back from the checkpoints
        curve = dev_curve_from_checkpoints(output_dir)
        if curve is not None:
            record["dev_curve"] = curve
    return TrainedModel(final, record, "reused")


def distill(task: TaskSpec, train: PairDataset, dev: PairDataset, output_dir: str | Path,
            teacher_logits: np.ndarray | None = None, config: StudentConfig | None = None, resume: bool = True,
            show_progress_bar: bool = True, device: str | None = None, extend: bool = True) -> TrainedModel:
    """Train a student on ``train`` (with teacher logits aligned to its rows when alpha > 0).

    The epoch with the best dev-set main metric is saved to ``output_dir/model``. A finished student
    for the same settings is reused; a finished run asked for more epochs is extended, or refused
    when ``extend`` is False.
    """
    config = config or StudentConfig()
    targets = _targets(task, train, teacher_logits, config)
    output_dir = Path(output_dir)
    check_run_config(output_dir, distill_run_config(task, config, train, dev, teacher_logits))
    if resume and (done := _finished(output_dir, config, extend)) is not None:
        logger.info("student %s is finished for these settings: reused", done.path)
        return done
    set_seed(config.seed)
    model = DSEModel.from_base(config.base, task, pooling=config.pooling, top_k=config.top_k,
                               head_hidden=config.head_hidden, head_dropout=config.head_dropout,
                               max_seq_length=config.max_length, alpha=config.alpha, device=device,
                               seed=config.seed)
    model.config.training = {k: v for k, v in asdict(config).items() if k != "extra"}
    args = training_arguments(config, task, output_dir, eval_batch_size=max(64, config.batch_size),
                              show_progress_bar=show_progress_bar, remove_unused_columns=False,
                              label_names=["labels"], use_cpu=device == "cpu")
    trainer = DistillationTrainer(model=model, args=args, train_dataset=_PairRows(train, targets),
                                  eval_dataset=_PairRows(dev, None), data_collator=SiameseCollator(model),
                                  compute_metrics=metrics_function(task), head_learning_rate=config.head_learning_rate)
    outcome = fit(trainer, output_dir, resume=resume)
    model.config.training.update({"train_pairs": len(train), "dev_metrics": outcome.dev_metrics,
                                  "train_seconds": outcome.train_seconds, "best_checkpoint": outcome.best_checkpoint,
                                  "dev_curve": outcome.dev_curve, "train_attempts": outcome.attempts,
                                  "resumed_from": outcome.resumed_from, "torch_threads": torch.get_num_threads(),
                                  "load_average_after": load_average()})
    final = output_dir / MODEL_DIR

    def write() -> None:
        model.save(final)
        atomic_write_json(output_dir / TRAINING_RECORD, model.config.training)

    main_process_writes(trainer, write)  # a distributed launch: rank 0 writes, every rank waits for it
    return TrainedModel(final, model.config.training, "resumed" if outcome.resumed_from else "trained")
