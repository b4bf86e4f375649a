"""Teacher training: a cross-encoder fine-tuned on the pair task, saved so ``CrossEncoder`` loads it.

The shared :mod:`dsembed.training` helper runs the Hugging Face ``Trainer`` (an epoch checkpoint each
epoch, the best dev epoch kept, resume after an interruption); this module adds the tokenised
pairs and the cross-encoder's saved form.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    set_seed,
)

from ..artifacts import MODEL_DIR, TEACHER_INFO
from ..config import TeacherConfig
from ..data import PairDataset
from ..tasks import TaskSpec
from ..training import (
    TrainedModel,
    check_finished_epochs,
    check_run_config,
    fit,
    main_process_writes,
    metrics_function,
    training_arguments,
)
from ..utils import atomic_dir, atomic_write_json

logger = logging.getLogger("dsembed.teacher")

# CrossEncoder applies a sigmoid to 1-label models unless told otherwise; a regression teacher keeps raw scores.
IDENTITY_ACTIVATION = "torch.nn.modules.linear.Identity"


class _EncodedPairs(Dataset):
    """Tokenised (sentence1, sentence2) pairs with labels, for the HF Trainer."""

    def __init__(self, tokenizer: Any, data: PairDataset, task: TaskSpec, max_length: int) -> None:
        enc = tokenizer(data.sentence1, data.sentence2, truncation=True, max_length=max_length)
        self.features = [{k: enc[k][i] for k in enc} for i in range(len(data))]
        if data.labels is not None:
            for feature, label in zip(self.features, data.labels, strict=True):
                feature["labels"] = float(label) if task.kind == "regression" else int(label)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.features[index]


def teacher_run_config(task: TaskSpec, config: TeacherConfig, train: PairDataset,
                       dev: PairDataset) -> dict[str, Any]:
    """What a teacher run depends on; a folder made with anything else is not resumed or reused."""
    train = train.subset(config.max_train_pairs, seed=config.seed)
    return {"stage": "teacher", "task": asdict(task), "recipe": config.resume_key(),
            "max_length": config.max_length or task.max_length, "train": train.fingerprint(),
            "dev": dev.fingerprint()}


def train_teacher(task: TaskSpec, train: PairDataset, dev: PairDataset, output_dir: str | Path,
                  config: TeacherConfig | None = None, resume: bool = True, show_progress_bar: bool = True,
                  extend: bool = True) -> TrainedModel:
    """Fine-tune a cross-encoder and keep the epoch that scores best on ``dev``.

    A finished model for the same settings is reused; checkpoints in ``output_dir/checkpoints``
    let a killed run continue. A finished run asked for more epochs is extended, or refused when
    ``extend`` is False (so that a record never passes one epoch count off as another).
    """
    from ..bases import load_pretrained, resolve_model_path

    config = config or TeacherConfig()
    output_dir = Path(output_dir)
    final = output_dir / MODEL_DIR
    train = train.subset(config.max_train_pairs, seed=config.seed)
    check_run_config(output_dir, teacher_run_config(task, config, train, dev))
    if resume and (final / TEACHER_INFO).is_file():
        info = json.loads((final / TEACHER_INFO).read_text())
        trained = info.get("recipe", {}).get("epochs")
        if float(trained) == float(config.epochs):
            logger.info("teacher %s is finished for these settings: reused", final)
            return TrainedModel(final, info, "reused")
        if not extend:
            check_finished_epochs(output_dir, trained, config.epochs, "dsembed teacher train --epochs N")
    set_seed(config.seed)
    max_length = config.max_length or task.max_length
    base_path = resolve_model_path(config.base)
    tokenizer = load_pretrained(AutoTokenizer, base_path, "teacher base tokenizer")
    model = load_pretrained(
        AutoModelForSequenceClassification, base_path, "teacher base", num_labels=task.num_labels,
        problem_type="regression" if task.kind == "regression" else "single_label_classification")
    args = training_arguments(config, task, output_dir, eval_batch_size=max(32, config.batch_size),
                              show_progress_bar=show_progress_bar,
                              bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    trainer = Trainer(model=model, args=args, train_dataset=_EncodedPairs(tokenizer, train, task, max_length),
                      eval_dataset=_EncodedPairs(tokenizer, dev, task, max_length),
                      data_collator=DataCollatorWithPadding(tokenizer),
                      compute_metrics=metrics_function(task, teacher=True))
    # A sequence-classification head averages its loss over the batch it sees, but its forward takes
    # **kwargs, so the Trainer would treat that mean as a sum over all ranks' items and multiply it by
    # the number of processes under DDP (and skip the gradient-accumulation division): one rank's mean it is.
    trainer.model_accepts_loss_kwargs = False
    outcome = fit(trainer, output_dir, resume=resume)
    info = {"task": task.name, "recipe": asdict(config), "base_path": str(base_path), "max_length": max_length,
            "train_pairs": len(train), "dev_metrics": outcome.dev_metrics, "best_checkpoint": outcome.best_checkpoint,
            "dev_curve": outcome.dev_curve, "train_seconds": outcome.train_seconds,
            "train_attempts": outcome.attempts, "resumed_from": outcome.resumed_from}
    # a distributed launch: rank 0 writes the model, every rank waits for it
    main_process_writes(trainer, lambda: _save_cross_encoder(trainer.model, tokenizer, task, final, info))
    return TrainedModel(final, info, "resumed" if outcome.resumed_from else "trained")


def _save_cross_encoder(model: Any, tokenizer: Any, task: TaskSpec, final: Path, info: dict[str, Any]) -> None:
    """Save so that ``CrossEncoder(final)`` loads it with the task's label names and raw regression scores."""
    with atomic_dir(final) as tmp:
        if task.kind == "regression":
            model.config.sentence_transformers = {"activation_fn": IDENTITY_ACTIVATION}
        model.config.id2label = {i: name for i, name in enumerate(task.labels)} if task.labels else {0: "score"}
        model.config.label2id = {v: k for k, v in model.config.id2label.items()}
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        atomic_write_json(tmp / TEACHER_INFO, info)
