"""Distillation: the saved student, argument checks, resume/extend, the head learning rate."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import MRPC, NLI3
from dsembed.config import StudentConfig
from dsembed.data import PairDataset
from dsembed.student import DistillationTrainer, distill
from dsembed.student.model import DSEModel

SHORT_PAIRS = [("A man is playing a guitar.", "A man plays guitar."), ("The cat sleeps.", "Stocks fell sharply."),
               ("Two kids run on the beach.", "Children are running.")]


# ---- distillation ---------------------------------------------------------------------------------


def test_distill_saves_student_with_dev_metrics(distilled_dir: Path, mrpc_train: PairDataset,
                                                mrpc_dev: PairDataset) -> None:
    training = json.loads((distilled_dir / "training.json").read_text())
    assert training["alpha"] == 0.5 and training["train_pairs"] == len(mrpc_train)
    assert {"accuracy", "f1", "loss"} <= set(training["dev_metrics"])
    assert 0.0 <= training["dev_metrics"]["accuracy"] <= 100.0
    assert training["best_checkpoint"] == "checkpoint-2"  # 32 pairs / batch 16, one epoch
    student = DSEModel.load(distilled_dir / "model", device="cpu")
    assert student.config.training["dev_metrics"] == training["dev_metrics"]
    assert student.config.pooling == "topk" and student.embedding_dim == 128
    from dsembed.evaluation import evaluate_student

    metrics, logits = evaluate_student(student, MRPC, mrpc_dev)
    assert logits.shape == (len(mrpc_dev), 1)
    # the saved student is the evaluated one: its dev accuracy is what training recorded
    assert metrics["accuracy"] == pytest.approx(training["dev_metrics"]["accuracy"], abs=1e-3)


def test_distill_argument_checks(tiny_base: str, mrpc_train: PairDataset, mrpc_dev: PairDataset,
                                 tmp_path: Path) -> None:
    cfg = StudentConfig(base=tiny_base, alpha=0.5, epochs=1)
    with pytest.raises(ValueError, match="alpha > 0 needs teacher logits"):
        distill(MRPC, mrpc_train, mrpc_dev, tmp_path, None, cfg)
    with pytest.raises(ValueError, match="10 teacher logits for 32 training pairs"):
        distill(MRPC, mrpc_train, mrpc_dev, tmp_path, np.zeros((10, 2), np.float32), cfg)
    unlabelled = PairDataset(mrpc_train.sentence1, mrpc_train.sentence2, None)
    with pytest.raises(ValueError, match="no labels"):
        distill(MRPC, unlabelled, mrpc_dev, tmp_path, np.zeros((32, 2), np.float32), cfg)
    assert not (tmp_path / "model").exists()


def test_distill_resumes_from_checkpoints(tiny_base: str, mrpc_train: PairDataset, mrpc_dev: PairDataset,
                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[int] = []
    real_step = DistillationTrainer.training_step

    def counting_step(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        steps.append(self.state.global_step)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(DistillationTrainer, "training_step", counting_step)
    train = mrpc_train.select(range(16))
    cfg = StudentConfig(base=tiny_base, alpha=0.0, epochs=1, batch_size=8, head_hidden=8, max_length=16, seed=0)
    distill(MRPC, train, mrpc_dev, tmp_path, None, cfg, show_progress_bar=False, device="cpu")
    assert steps == [0, 1]
    assert (tmp_path / "checkpoints" / "checkpoint-2").is_dir()

    # same folder, one more epoch: only the new epoch is trained, starting at step 2
    steps.clear()
    more = replace(cfg, epochs=2)
    distill(MRPC, train, mrpc_dev, tmp_path, None, more, show_progress_bar=False, device="cpu")
    assert steps == [2, 3]
    state = json.loads((tmp_path / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    training = json.loads((tmp_path / "training.json").read_text())
    assert training["epochs"] == 2
    # the resumed run's dev curve still holds the first epoch's evaluation, one row per epoch
    assert [row["epoch"] for row in training["dev_curve"]] == [1.0, 2.0]
    assert {"accuracy", "f1", "loss"} <= set(training["dev_curve"][0])
    from dsembed.training import dev_curve_from_checkpoints

    assert dev_curve_from_checkpoints(tmp_path) == training["dev_curve"]

    # resume=False starts over
    steps.clear()
    distill(MRPC, train, mrpc_dev, tmp_path, None, cfg, resume=False, show_progress_bar=False, device="cpu")
    assert steps == [0, 1]


def test_distill_multiclass_alpha_one_without_labels(tiny_base: str, nli3_train: PairDataset,
                                                     tmp_path: Path) -> None:
    """alpha=1 learns from teacher logits alone; the 3 teacher logits are the student's targets."""
    teacher_logits = np.random.default_rng(0).normal(size=(len(nli3_train), 3)).astype(np.float32)
    unlabelled = PairDataset(nli3_train.sentence1, nli3_train.sentence2, None)
    cfg = StudentConfig(base=tiny_base, alpha=1.0, pooling="mean", epochs=1, batch_size=12, head_hidden=8,
                        max_length=16, seed=0, head_learning_rate=1e-3)
    path = distill(NLI3, unlabelled, nli3_train, tmp_path, teacher_logits, cfg, show_progress_bar=False,
                   device="cpu").path
    student = DSEModel.load(path, device="cpu")
    assert student.task.kind == "multiclass" and student.head.out.out_features == 3
    assert student.predict(nli3_train.pairs()[:2]).shape == (2, 3)


def test_head_learning_rate_groups(tiny_base: str, tmp_path: Path) -> None:
    from transformers import TrainingArguments

    model = DSEModel.from_base(tiny_base, MRPC, head_hidden=8, max_seq_length=16, device="cpu")
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-5, weight_decay=0.01, report_to=[],
                             use_cpu=True)
    trainer = DistillationTrainer(model=model, args=args, head_learning_rate=1e-3)
    optimizer = trainer.create_optimizer()
    head_ids = {id(p) for p in model.head.parameters()}
    seen = 0
    for group in optimizer.param_groups:
        is_head = {id(p) in head_ids for p in group["params"]}
        assert len(is_head) == 1
        assert group["lr"] == (1e-3 if is_head.pop() else 1e-5)
        seen += len(group["params"])
    assert seen == sum(1 for p in model.parameters() if p.requires_grad)

    # None is the official single rate: every parameter at the encoder's
    assert StudentConfig().head_learning_rate == 1e-3  # the default (RESULTS.md, "Student settings tried")
    single = DistillationTrainer(model=model, args=args, head_learning_rate=None).create_optimizer()
    assert {group["lr"] for group in single.param_groups} == {1e-5}
