"""Mined pairs in the loss, the training stream and the AugSBERT labels (no training here: fast)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import MRPC, NLI3, STSB, synthetic_pairs
from dsembed.config import StudentConfig
from dsembed.errors import ConfigError
from dsembed.student import MinedRows, teacher_labels
from dsembed.student.loss import DSELoss, task_loss
from dsembed.student.plan import plan_training
from dsembed.student.stream import (
    evaluation_steps,
    labelled_only_steps,
    mined_per_batch,
    training_stream,
)


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 1, generator=gen, requires_grad=True)
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 0.0])  # rows 3..5 are mined: their labels are placeholders
    teacher = torch.randn(6, 1, generator=gen)
    mask = torch.tensor([True, True, True, False, False, False])
    return logits, labels, teacher, mask


def test_masked_loss_value_is_label_mean_plus_distill_mean() -> None:
    logits, labels, teacher, mask = _batch()
    parts = DSELoss(MRPC, alpha=0.3)(logits, labels, teacher, mask)
    task = task_loss(MRPC, logits[:3], labels[:3])  # the labelled rows only
    distill = ((logits - teacher) ** 2).sum(-1).mean()  # every row
    assert parts["task_loss"].item() == pytest.approx(task.item(), rel=1e-6)
    assert parts["loss"].item() == pytest.approx((0.7 * task + 0.3 * distill).item(), rel=1e-6)


def test_mined_rows_get_only_the_distillation_gradient() -> None:
    logits, labels, teacher, mask = _batch()
    DSELoss(MRPC, alpha=0.3)(logits, labels, teacher, mask)["loss"].backward()
    grad = logits.grad.clone()
    expected_mined = 0.3 * 2 * (logits[3:] - teacher[3:]) / 6  # d/ds of alpha * mean_i (s_i - t_i)^2
    assert torch.allclose(grad[3:], expected_mined.detach(), atol=1e-7)
    # a mined row's placeholder label changes nothing
    other = labels.clone()
    other[3:] = 1.0
    logits.grad = None
    DSELoss(MRPC, alpha=0.3)(logits, other, teacher, mask)["loss"].backward()
    assert torch.equal(logits.grad, grad)
    # labelled rows: the task gradient (mean over the 3 labelled rows) plus their distillation gradient
    sig = torch.sigmoid(logits[:3].detach())
    expected_labelled = 0.7 * (sig - labels[:3, None]) / 3 + 0.3 * 2 * (logits[:3] - teacher[:3]).detach() / 6
    assert torch.allclose(grad[:3], expected_labelled, atol=1e-6)


def test_all_labelled_mask_is_the_plain_dse_loss() -> None:
    logits, labels, teacher, _ = _batch(1)
    plain = DSELoss(STSB, alpha=0.5)(logits, labels, teacher)["loss"]
    masked = DSELoss(STSB, alpha=0.5)(logits, labels, teacher, torch.ones(6, dtype=torch.bool))["loss"]
    assert masked.item() == pytest.approx(plain.item(), rel=1e-7)
    none_labelled = DSELoss(STSB, alpha=0.5)(logits, labels, teacher, torch.zeros(6, dtype=torch.bool))
    assert none_labelled["task_loss"].item() == 0.0  # a batch of mined rows only: no task term, no NaN


def test_mixed_stream_holds_the_ratio_in_every_batch_and_is_deterministic() -> None:
    order = training_stream(40, 100, 3.0, "mixed", batch_rows=8, total_rows=8 * 20, seed=5)
    batches = order.reshape(20, 8)
    assert ((batches >= 40).sum(axis=1) == 6).all()  # 3 mined per labelled row: 6 of 8
    assert np.array_equal(order, training_stream(40, 100, 3.0, "mixed", 8, 160, seed=5))
    assert not np.array_equal(order, training_stream(40, 100, 3.0, "mixed", 8, 160, seed=6))
    labelled = order[order < 40]
    assert sorted(labelled[:40]) == list(range(40))  # every labelled pair once per pass
    mined = order[order >= 40] - 40
    assert sorted(mined[:100]) == list(range(100))  # the mined set is cycled pass by pass
    # a ratio that does not divide the batch: per batch within one row, exact over the run
    counts = mined_per_batch(50, 32, 0.5)
    assert set(counts) <= {10, 11} and abs(counts.sum() - 50 * 32 / 3) <= 0.5


def test_concat_stream_is_one_shuffled_pass_of_labelled_and_mined_rows() -> None:
    order = training_stream(30, 1000, 2.0, "concat", batch_rows=8, total_rows=90, seed=0)
    assert sorted(order[order < 30]) == list(range(30))
    assert (order >= 30).sum() == 60 and len(set(order[order >= 30])) == 60  # subsampled, no repeats
    assert not np.array_equal(order[:30], np.sort(order[:30]))
    assert np.array_equal(order, training_stream(30, 1000, 2.0, "concat", 8, 90, seed=0))


def test_evaluation_steps_match_the_epoch_run() -> None:
    config = StudentConfig(batch_size=16, epochs=8)
    steps = labelled_only_steps(1000, config)
    assert steps == 8 * 63
    assert evaluation_steps(steps, config.epochs) == [63 * k for k in range(1, 9)]  # the epoch ends
    assert evaluation_steps(10, 8.0) == [1, 2, 4, 5, 6, 8, 9, 10]
    assert evaluation_steps(3, 8.0) == [1, 2, 3]


def test_teacher_labels_for_augsbert() -> None:
    binary = np.array([[0.2, 0.9], [1.5, -0.3], [0.0, 0.0]], np.float32)
    assert teacher_labels(MRPC, binary).tolist() == [1.0, 0.0, 0.0]  # logit[1] - logit[0] > 0
    assert teacher_labels(STSB, np.array([[3.25], [0.5]], np.float32)).tolist() == [3.25, 0.5]
    assert teacher_labels(NLI3, np.array([[0, 2, 1], [5, 0, 0]], np.float32)).tolist() == [1.0, 0.0]


def _mined(n: int = 12, seed: int = 3) -> MinedRows:
    pairs = synthetic_pairs(MRPC, n, seed=seed)
    pairs.labels = None
    logits = np.random.default_rng(seed).normal(size=(n, 2)).astype(np.float32)
    return MinedRows(pairs, logits, ["bm25"] * (n // 2) + ["random"] * (n - n // 2))


def test_augsbert_plan_trains_on_teacher_labels_without_targets() -> None:
    train, mined = synthetic_pairs(MRPC, 8), _mined()
    plan = plan_training(MRPC, train, None, StudentConfig(recipe="augsbert", batch_size=4, epochs=1), mined)
    rows = [plan.dataset[i] for i in range(len(plan.dataset))]
    assert plan.loss_alpha == 0.0 and all("teacher_logits" not in r and "label_mask" not in r for r in rows)
    hard = dict(zip(zip(mined.pairs.sentence1, mined.pairs.sentence2, strict=True),
                    teacher_labels(MRPC, mined.teacher_logits), strict=True))
    mined_rows = [r for r in rows if (r["a"], r["b"]) in hard]
    assert mined_rows and all(r["labels"] == hard[(r["a"], r["b"])] for r in mined_rows)
    assert plan.steps == 4 and plan.mined["strategies"] == {"bm25": 6, "random": 6}  # (8 + 8) rows / batch 4


def test_dse_plan_masks_mined_rows_and_refuses_what_cannot_work() -> None:
    train, mined = synthetic_pairs(MRPC, 8), _mined()
    logits = np.zeros((8, 2), np.float32)
    plan = plan_training(MRPC, train, logits, StudentConfig(batch_size=4, epochs=1, mined_ratio=1.0), mined)
    rows = [plan.dataset[i] for i in range(len(plan.dataset))]
    gold = set(zip(train.sentence1, train.sentence2, strict=True))
    assert all(r["label_mask"] == ((r["a"], r["b"]) in gold) for r in rows)
    assert all("teacher_logits" in r for r in rows)
    with pytest.raises(ConfigError, match="alpha=0"):
        plan_training(MRPC, train, logits, StudentConfig(alpha=0.0), mined)
    with pytest.raises(ConfigError, match="needs mined pairs"):
        plan_training(MRPC, train, logits, StudentConfig(recipe="augsbert"))
    with pytest.raises(ConfigError, match="task 'stsb' has 1"):
        plan_training(STSB, synthetic_pairs(STSB, 8), np.zeros((8, 1), np.float32), StudentConfig(), mined)
    with pytest.raises(ConfigError, match="not finite"):
        MinedRows(mined.pairs, np.full((12, 2), np.nan, np.float32))
    with pytest.raises(ConfigError, match="unknown mined_sampling"):
        StudentConfig(mined_sampling="zip")
    with pytest.raises(ConfigError, match="not both"):
        StudentConfig(max_steps=3, equal_compute=True)
    off = plan_training(MRPC, train, logits, StudentConfig(mined_ratio=0.0), mined)
    assert off.mined is None and off.steps is None  # ratio 0: the plain run


def test_resume_key_is_unchanged_for_default_settings() -> None:
    key = StudentConfig().resume_key()
    assert not {"mined_ratio", "mined_sampling", "recipe", "max_steps", "equal_compute"} & set(key)
    assert StudentConfig(mined_ratio=3.0, recipe="augsbert").resume_key()["mined_ratio"] == 3.0
