"""Teacher: a cross-encoder fine-tuned on the pair task, saved so ``CrossEncoder`` loads it.

Training uses the Hugging Face ``Trainer`` (checkpoint every epoch, dev-set selection of the best
epoch, resume after an interruption). Any ready-made sequence-classification folder or hub id
can be a teacher too; :class:`Teacher` wraps inference for both.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EvalPrediction,
    Trainer,
    TrainingArguments,
)

from ..artifacts import TEACHER_INFO
from ..data import PairDataset
from ..evaluation import compute_metrics
from ..tasks import TaskSpec
from ..utils import (
    atomic_dir,
    atomic_write_json,
    check_run_config,
    dev_curve,
    set_seed,
)

logger = logging.getLogger("dsembed.teacher")


IDENTITY_ACTIVATION = "torch.nn.modules.linear.Identity"


@dataclass
class TeacherRecipe:
    """Fine-tuning hyper-parameters (the defaults are the plain recipe of the reference runs)."""

    base: str = "all-MiniLM-L6-v2"
    epochs: float = 3.0
    learning_rate: float = 3e-5
    batch_size: int = 16
    gradient_accumulation_steps: int = 1
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_length: int | None = None  # None: the task's default
    seed: int = 42
    max_train_pairs: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


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


def _problem_type(task: TaskSpec) -> str:
    return "regression" if task.kind == "regression" else "single_label_classification"


def teacher_run_config(task: TaskSpec, recipe: TeacherRecipe, train: PairDataset,
                       dev: PairDataset) -> dict[str, Any]:
    """What a teacher run depends on; a folder made with anything else is not resumed or reused."""
    train = train.subset(recipe.max_train_pairs, seed=recipe.seed)
    # epochs may change: resuming with more epochs extends a finished run
    settings = {k: v for k, v in asdict(recipe).items() if k != "epochs"}
    return {"stage": "teacher", "task": asdict(task), "recipe": settings,
            "max_length": recipe.max_length or task.max_length, "train": train.fingerprint(),
            "dev": dev.fingerprint()}


def train_teacher(task: TaskSpec, train: PairDataset, dev: PairDataset, output_dir: str | Path,
                  recipe: TeacherRecipe | None = None, resume: bool = True, show_progress_bar: bool = True) -> Path:
    """Fine-tune a cross-encoder; keeps the epoch that scores best on ``dev``; returns the saved folder.

    Epoch checkpoints live in ``output_dir/checkpoints`` so a killed run continues where it was.
    """
    from ..bases import resolve_model_path

    recipe = recipe or TeacherRecipe()
    output_dir = Path(output_dir)
    set_seed(recipe.seed)
    train = train.subset(recipe.max_train_pairs, seed=recipe.seed)
    max_length = recipe.max_length or task.max_length
    base_path = resolve_model_path(recipe.base)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    model = AutoModelForSequenceClassification.from_pretrained(
        base_path, num_labels=task.num_labels, problem_type=_problem_type(task))
    check_run_config(output_dir, teacher_run_config(task, recipe, train, dev))
    train_ds = _EncodedPairs(tokenizer, train, task, max_length)
    dev_ds = _EncodedPairs(tokenizer, dev, task, max_length)

    def metrics(pred: EvalPrediction) -> dict[str, float]:
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        return compute_metrics(task, np.asarray(logits), pred.label_ids, teacher=True)

    checkpoints = output_dir / "checkpoints"
    args = TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=recipe.epochs,
        learning_rate=recipe.learning_rate,
        per_device_train_batch_size=recipe.batch_size,
        per_device_eval_batch_size=max(32, recipe.batch_size),
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        warmup_steps=recipe.warmup_ratio,  # a float < 1 is a ratio of all steps
        weight_decay=recipe.weight_decay,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model=task.main_metric,
        greater_is_better=True,
        logging_steps=50,
        report_to=[],
        seed=recipe.seed,
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        disable_tqdm=not show_progress_bar,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=dev_ds,
                      data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=metrics)
    has_checkpoint = resume and checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=True if has_checkpoint else None)
    train_seconds = time.perf_counter() - start
    curve = dev_curve(trainer.state.log_history)  # before the final evaluate() logs one more entry
    dev_metrics = trainer.evaluate()
    best = trainer.state.best_model_checkpoint

    final = output_dir / "model"
    with atomic_dir(final) as tmp:
        model = trainer.model
        if task.kind == "regression":
            # CrossEncoder applies a sigmoid to 1-label models unless told otherwise; keep raw scores.
            model.config.sentence_transformers = {"activation_fn": IDENTITY_ACTIVATION}
        model.config.id2label = {i: name for i, name in enumerate(task.labels)} if task.labels else {0: "score"}
        model.config.label2id = {v: k for k, v in model.config.id2label.items()}
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        info = {
            "task": task.name,
            "recipe": asdict(recipe),
            "base_path": str(base_path),
            "max_length": max_length,
            "train_pairs": len(train),
            "dev_metrics": {k.removeprefix("eval_"): v for k, v in dev_metrics.items()},
            "best_checkpoint": Path(best).name if best else None,
            "dev_curve": curve,
            "train_seconds": train_seconds,
        }
        atomic_write_json(tmp / TEACHER_INFO, info)
    return final
