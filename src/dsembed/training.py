"""What teacher and student training share: Trainer arguments, resume, the dev curve, reuse of a finished run.

Both stages run the Hugging Face ``Trainer`` (AdamW, linear warmup/decay, epoch checkpoints, dev-set
selection of the best epoch, multi-GPU through accelerate/torchrun); this module builds its
arguments once and turns a finished ``train()`` into one :class:`TrainingOutcome`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import EvalPrediction, Trainer, TrainerCallback, TrainingArguments

from .artifacts import CHECKPOINTS_DIR, MODEL_DIR, RUN_CONFIG, TRAIN_TIME, TRAINER_STATE
from .config import TrainingSettings
from .errors import RunConfigMismatch
from .evaluation import compute_metrics
from .tasks import TaskSpec
from .utils import atomic_write_json, default_device, recover_atomic_dir

logger = logging.getLogger("dsembed.training")


# --------------------------------------------------------------------------------------------------
# distributed launches (torchrun / accelerate launch): the Trainer runs DDP, rank 0 alone writes files
# --------------------------------------------------------------------------------------------------


def world_size() -> int:
    """Processes of this launch (``WORLD_SIZE``, set by torchrun and accelerate launch); 1 for a plain run."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Whether this process writes the run files (rank 0, or the only process).

    Read from ``RANK`` so that it is known before the Trainer sets up the process group.
    """
    return int(os.environ.get("RANK", "0")) == 0


def main_process_writes(trainer: Trainer, write: Callable[[], None]) -> None:
    """Run ``write`` on the main process only, then hold every process until it is done.

    The other ranks return only once the final model and record exist, so whatever runs after a
    distributed training (on any rank) reads complete files.
    """
    if trainer.is_world_process_zero():
        write()
    trainer.accelerator.wait_for_everyone()


def training_arguments(settings: TrainingSettings, task: TaskSpec, output_dir: str | Path, *, eval_batch_size: int,
                       show_progress_bar: bool, **overrides: Any) -> TrainingArguments:
    """Epoch checkpoints and evaluation, the best dev epoch kept, settings from ``settings``."""
    values: dict[str, Any] = {
        "output_dir": str(Path(output_dir) / CHECKPOINTS_DIR),
        "num_train_epochs": settings.epochs,
        "learning_rate": settings.learning_rate,
        "per_device_train_batch_size": settings.batch_size,
        "per_device_eval_batch_size": eval_batch_size,
        "gradient_accumulation_steps": settings.gradient_accumulation_steps,
        "warmup_steps": settings.warmup_ratio,  # a float < 1 is a ratio of all steps
        "weight_decay": settings.weight_decay,
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "save_total_limit": 2,
        "load_best_model_at_end": True,
        "metric_for_best_model": task.main_metric,
        "greater_is_better": True,
        "logging_steps": 50,
        "report_to": [],
        "seed": settings.seed,
        "disable_tqdm": not show_progress_bar,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": False,
    }
    values.update(overrides)
    if world_size() > 1 and default_device() == "cpu":
        # without this a CPU-only torchrun launch trains one full, independent copy per process
        values["use_cpu"] = True
    return TrainingArguments(**values)


def metrics_function(task: TaskSpec, *, teacher: bool = False) -> Callable[[EvalPrediction], dict[str, float]]:
    """The Trainer's ``compute_metrics``: the task's GLUE metrics on the dev logits."""

    def metrics(pred: EvalPrediction) -> dict[str, float]:
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        return compute_metrics(task, np.asarray(logits), pred.label_ids, teacher=teacher)

    return metrics


@dataclass
class TrainingOutcome:
    """What a finished ``Trainer.train`` produced, for the stage's record."""

    dev_metrics: dict[str, float]
    dev_curve: list[dict[str, float]]
    best_checkpoint: str | None
    train_seconds: float  # summed over every attempt of this run, interrupted ones included
    resumed_from: str | None
    attempts: int = 1


@dataclass
class TrainedModel:
    """A finished training stage: its model folder and training record, and whether it ran now.

    ``source`` is "trained" (from scratch), "resumed" (continued from a checkpoint) or "reused" (a
    finished model for these exact settings was already there). Usable wherever a path is.
    """

    path: Path
    record: dict[str, Any]
    source: str

    def __fspath__(self) -> str:
        return str(self.path)


def _step(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[-1])


def checkpoint_is_complete(checkpoint: Path) -> bool:
    """The Trainer writes a checkpoint's trainer state last: a parseable state for this step means complete."""
    try:
        state = json.loads((checkpoint / TRAINER_STATE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and state.get("global_step") == _step(checkpoint)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest epoch checkpoint of a run folder, None when there is none."""
    folder = Path(output_dir) / CHECKPOINTS_DIR
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.rsplit("-", 1)[-1].isdigit()]
    return max(found, key=_step) if found else None


def prepare_resume(output_dir: str | Path) -> Path | None:
    """Clean what a kill left in a run folder and return the checkpoint to resume from (None: start afresh).

    An interrupted checkpoint save leaves a folder without its trainer state, which the Trainer would
    pick and fail on; it is removed (newest first, down to the first complete one). An interrupted
    final save leaves a temporary model folder, which is removed too.
    """
    for leftover in recover_atomic_dir(Path(output_dir) / MODEL_DIR):
        logger.warning("removed %s, left by an interrupted save", leftover)
    while (checkpoint := latest_checkpoint(output_dir)) is not None and not checkpoint_is_complete(checkpoint):
        logger.warning("removing %s: it was interrupted while being saved", checkpoint)
        shutil.rmtree(checkpoint)
    return checkpoint


class _WallClock(TrainerCallback):
    """Keeps the training wall time of every attempt, a killed one's too, in ``train_time.json``."""

    def __init__(self, path: Path, before: dict[str, Any], every: float = 10.0, enabled: bool = True) -> None:
        self.path, self.every, self.enabled = path, every, enabled
        self.seconds_before = float(before.get("seconds", 0.0))
        self.attempts = int(before.get("attempts", 0)) + 1
        self.start = time.perf_counter()
        self.last_write = -float("inf")

    @property
    def total(self) -> float:
        return self.seconds_before + time.perf_counter() - self.start

    def write(self) -> None:
        if not self.enabled:  # a non-main rank of a distributed run: rank 0 keeps the time
            return
        atomic_write_json(self.path, {"seconds": self.total, "attempts": self.attempts})
        self.last_write = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if time.perf_counter() - self.last_write >= self.every:
            self.write()

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.write()


def fit(trainer: Trainer, output_dir: str | Path, *, resume: bool = True) -> TrainingOutcome:
    """Train (continuing from the newest complete checkpoint when ``resume``), then evaluate the kept best epoch.

    With ``resume`` the wall time adds up every earlier attempt in this run folder; without, it starts at 0.
    In a distributed launch rank 0 alone cleans the folder and keeps the time; every rank then resumes
    from the same checkpoint (the Trainer itself writes checkpoints from rank 0 only).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    main = trainer.is_world_process_zero()
    if main:
        prepare_resume(output_dir)  # cleans a killed run's leftovers either way
    clock_file = output_dir / TRAIN_TIME
    before = json.loads(clock_file.read_text()) if resume and clock_file.is_file() else {}
    trainer.accelerator.wait_for_everyone()
    checkpoint = latest_checkpoint(output_dir) if resume else None
    if checkpoint is not None:
        logger.info("resuming %s from %s (step %d)", output_dir, checkpoint.name, _step(checkpoint))
    clock = _WallClock(clock_file, before, enabled=main)
    trainer.add_callback(clock)
    clock.write()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
    clock.write()
    curve = dev_curve(trainer.state.log_history)  # before the final evaluate() logs one more entry
    dev_metrics = {k.removeprefix("eval_"): v for k, v in trainer.evaluate().items()}
    best = trainer.state.best_model_checkpoint
    return TrainingOutcome(dev_metrics=dev_metrics, dev_curve=curve, best_checkpoint=Path(best).name if best else None,
                           train_seconds=clock.total, resumed_from=checkpoint.name if checkpoint is not None else None,
                           attempts=clock.attempts)


def check_run_config(folder: str | os.PathLike[str], config: dict[str, Any]) -> None:
    """Record the settings of a resumable run, or refuse to resume one made with different settings."""
    path = Path(folder) / RUN_CONFIG
    if path.is_file():
        old = json.loads(path.read_text())
        if old != json.loads(json.dumps(config, sort_keys=True, default=str)):
            changed = sorted(k for k in set(old) | set(config) if old.get(k) != json.loads(
                json.dumps(config.get(k), default=str)))
            raise RunConfigMismatch(f"{folder} was started with other settings (differs in: {', '.join(changed)}); "
                                    "use another output folder or delete this one")
        return
    if is_main_process():  # the other ranks of a distributed launch check against it when it is there
        atomic_write_json(path, config)


def check_finished_epochs(folder: str | Path, trained: float | None, wanted: float, extend_with: str) -> None:
    """Reuse a finished model only for the epoch count it was trained for.

    The run-config guard leaves epochs out so that a run can be extended with more of them; a
    reused 3-epoch model must not pass for an 8-epoch one in a record.
    """
    if trained is not None and float(trained) != float(wanted):
        raise RunConfigMismatch(f"{folder} holds a model trained for {float(trained):g} epochs, this run asks for "
                                f"{float(wanted):g}; use another output folder, or extend that run with "
                                f"`{extend_with}`")


def dev_curve(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """The per-epoch dev evaluations of a HF Trainer run (``state.log_history``), prefix dropped.

    Kept in every training record so that the selected epoch can be judged: still climbing at the
    last epoch means the run wanted more steps.
    """
    curve = []
    for entry in log_history:
        row = {k.removeprefix("eval_"): float(v) for k, v in entry.items()
               if k.startswith("eval_") and not k.endswith(("_runtime", "_per_second"))}
        if row:
            if "epoch" in entry:
                row["epoch"] = float(entry["epoch"])
            if "step" in entry:  # a step-budgeted run evaluates within its single pass: the step places it
                row["step"] = int(entry["step"])
            curve.append(row)
    return curve


def dev_curve_from_checkpoints(output_dir: str | os.PathLike[str]) -> list[dict[str, float]] | None:
    """The dev curve read back from the newest checkpoint's trainer state (runs recorded before the
    curve was part of the training record); None if no checkpoint is left."""
    states = sorted((Path(output_dir) / CHECKPOINTS_DIR).glob(f"checkpoint-*/{TRAINER_STATE}"),
                    key=lambda p: _step(p.parent))
    if not states:
        return None
    return dev_curve(json.loads(states[-1].read_text()).get("log_history", []))
