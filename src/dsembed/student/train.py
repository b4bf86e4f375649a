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
from torch.utils.data import Dataset, Sampler, SequentialSampler
from transformers import Trainer, set_seed

from ..artifacts import MODEL_DIR, STUDENT_CONFIG, TRAINING_RECORD
from ..config import StudentConfig
from ..data import PairDataset
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
    world_size,
)
from ..utils import atomic_write_json, load_average, sha256_bytes
from .mined import MinedRows
from .model import DSEModel
from .plan import plan_training
from .stream import EvaluateAtSteps, PairRows

logger = logging.getLogger("dsembed.student")


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
        if "label_mask" in rows[0]:
            batch["label_mask"] = torch.tensor([r["label_mask"] for r in rows], dtype=torch.bool)
        return batch


class DistillationTrainer(Trainer):
    """HF Trainer whose optimiser gives the freshly initialised head its own learning rate.

    Weight decay follows the Trainer's own rule (``get_decay_parameter_names``: no decay on biases
    and norms); only the head/encoder split of the rates is added here.
    """

    def __init__(self, *args: Any, head_learning_rate: float | None = None, ordered_stream: bool = False,
                 **kwargs: Any) -> None:
        self.head_learning_rate = head_learning_rate
        self.ordered_stream = ordered_stream  # the training set is a laid-out stream (student/stream.py)
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, train_dataset: Dataset | None = None) -> Sampler | None:
        if self.ordered_stream:  # read in order: the stream is already shuffled and mixed, and resumes exactly
            return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)
        return super()._get_train_sampler(train_dataset)

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
                       teacher_logits: np.ndarray | None, mined: MinedRows | None = None,
                       schedule: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a student run depends on; a folder made with anything else is not resumed or reused.

    ``mined`` (the mined pairs and their logits, by hash) and ``schedule`` (a step budget and its
    evaluation steps) enter only when used, so folders made without them keep their fingerprint.
    """
    used = teacher_logits is not None and config.alpha > 0 and config.recipe != "augsbert"
    logits_hash = sha256_bytes(np.ascontiguousarray(teacher_logits, np.float32).tobytes()) if used else None
    found: dict[str, Any] = {"stage": "distill", "task": asdict(task), "config": config.resume_key(),
                             "train": train.fingerprint(), "dev": dev.fingerprint(), "teacher_logits": logits_hash}
    if mined is not None:
        found["mined"] = mined.fingerprint()
    if schedule is not None:
        found["schedule"] = schedule
    return found


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
            show_progress_bar: bool = True, device: str | None = None, extend: bool = True,
            mined: MinedRows | None = None) -> TrainedModel:
    """Train a student on ``train`` (with teacher logits aligned to its rows when alpha > 0).

    The evaluation with the best dev-set main metric is saved to ``output_dir/model``. A finished
    student for the same settings is reused; a finished run asked for more epochs is extended, or
    refused when ``extend`` is False.

    ``mined``: teacher-scored extra pairs (no gold labels), mixed into the training stream at
    ``config.mined_ratio`` mined rows per labelled row. Recipe "dse": labelled rows keep
    ``(1-α)·task + α·distill``, mined rows carry ``α·distill`` only -- the task term is the mean over
    the batch's labelled rows, the distillation term the mean over all its rows, so α weighs a mined
    row's teacher term exactly like a labelled row's and adding mined rows never dilutes the labels.
    Recipe "augsbert": the task loss alone, on gold labels and on the teacher's labels of the mined
    pairs. ``config.max_steps`` / ``config.equal_compute`` replace epochs by a step budget.
    """
    config = config or StudentConfig()
    plan = plan_training(task, train, teacher_logits, config, mined, world_size())
    output_dir = Path(output_dir)
    check_run_config(output_dir, distill_run_config(task, config, train, dev, teacher_logits,
                                                    mined if plan.mined is not None else None, plan.schedule()))
    if resume and (done := _finished(output_dir, config, extend)) is not None:
        logger.info("student %s is finished for these settings: reused", done.path)
        return done
    set_seed(config.seed)
    model = DSEModel.from_base(config.base, task, pooling=config.pooling, top_k=config.top_k,
                               head_hidden=config.head_hidden, head_dropout=config.head_dropout,
                               max_seq_length=config.max_length, alpha=plan.loss_alpha, device=device,
                               seed=config.seed)
    model.config.training = {k: v for k, v in asdict(config).items() if k != "extra"}
    args = training_arguments(config, task, output_dir, eval_batch_size=max(64, config.batch_size),
                              show_progress_bar=show_progress_bar, remove_unused_columns=False,
                              label_names=["labels"], use_cpu=device == "cpu", **plan.argument_overrides())
    trainer = DistillationTrainer(model=model, args=args, train_dataset=plan.dataset,
                                  eval_dataset=PairRows(dev, None), data_collator=SiameseCollator(model),
                                  compute_metrics=metrics_function(task), head_learning_rate=config.head_learning_rate,
                                  ordered_stream=plan.ordered)
    if plan.steps is not None:
        trainer.add_callback(EvaluateAtSteps(plan.eval_steps))
    outcome = fit(trainer, output_dir, resume=resume)
    model.config.training.update({"train_pairs": len(train), "dev_metrics": outcome.dev_metrics,
                                  "train_seconds": outcome.train_seconds, "best_checkpoint": outcome.best_checkpoint,
                                  "dev_curve": outcome.dev_curve, "train_attempts": outcome.attempts,
                                  "resumed_from": outcome.resumed_from, "torch_threads": torch.get_num_threads(),
                                  "load_average_after": load_average(), "optimizer_steps": trainer.state.global_step,
                                  "loss": plan.loss, "alpha_ignored": config.recipe == "augsbert",
                                  "mined": plan.mined})
    final = output_dir / MODEL_DIR

    def write() -> None:
        model.save(final)
        atomic_write_json(output_dir / TRAINING_RECORD, model.config.training)

    main_process_writes(trainer, write)  # a distributed launch: rank 0 writes, every rank waits for it
    return TrainedModel(final, model.config.training, "resumed" if outcome.resumed_from else "trained")
