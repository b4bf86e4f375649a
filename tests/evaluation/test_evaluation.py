"""Evaluation: GLUE metrics against sklearn/scipy, threshold tuning, cosine baselines and STS-file scoring."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score

from conftest import MRPC, NLI3, STSB
from dsembed.data import PairDataset
from dsembed.errors import DataFormatError
from dsembed.evaluation import (
    compute_metrics,
    cosine_baseline,
    cosine_scores,
    evaluate_sts_file,
    evaluate_student,
    relative_degradation,
    tune_threshold,
)
from dsembed.student.model import DSEModel
from dsembed.tasks import get_task

RTE = get_task("rte")


def test_binary_metrics_threshold_logit_at_zero() -> None:
    logits = np.array([-2.0, -0.1, 0.0, 0.1, 3.0, -1.0, 0.5, 2.0], dtype=np.float32)
    labels = np.array([0, 1, 0, 1, 1, 0, 0, 1])
    preds = (logits > 0).astype(int)  # 0.0 itself is negative
    got = compute_metrics(MRPC, logits[:, None], labels)
    assert got["accuracy"] == pytest.approx(100 * accuracy_score(labels, preds))
    assert got["f1"] == pytest.approx(100 * f1_score(labels, preds))
    assert got["accuracy"] == pytest.approx(75.0)
    assert compute_metrics(MRPC, logits, labels) == got  # 1-d logits are accepted
    assert set(compute_metrics(RTE, logits, labels)) == {"accuracy", "roc_auc"}


def test_binary_roc_auc_is_threshold_free() -> None:
    from sklearn.metrics import roc_auc_score

    logits = np.array([-2.0, -0.1, 0.0, 0.1, 3.0, -1.0, 0.5, 2.0])
    labels = np.array([0, 1, 0, 1, 1, 0, 0, 1])
    got = compute_metrics(MRPC, logits, labels)
    assert got["roc_auc"] == pytest.approx(100 * roc_auc_score(labels, logits)) == pytest.approx(81.25)
    shifted = compute_metrics(MRPC, logits + 5.0, labels)  # every pair called positive: F1 moves, AUC does not
    assert shifted["roc_auc"] == pytest.approx(got["roc_auc"]) and shifted["accuracy"] == pytest.approx(50.0)
    assert "roc_auc" not in compute_metrics(MRPC, logits, np.ones(8, dtype=int))  # undefined with one class


def test_binary_metrics_from_teacher_logits() -> None:
    teacher = np.array([[0.0, 1.0], [2.0, 1.0], [0.3, 0.2], [-1.0, 1.0], [5.0, 5.5]])
    labels = np.array([1, 0, 1, 1, 0])
    preds = (teacher[:, 1] - teacher[:, 0] > 0).astype(int)  # [1, 0, 0, 1, 1]
    got = compute_metrics(MRPC, teacher, labels, teacher=True)
    assert got["accuracy"] == pytest.approx(100 * accuracy_score(labels, preds)) == pytest.approx(60.0)
    assert got["f1"] == pytest.approx(100 * f1_score(labels, preds))
    assert got["roc_auc"] == pytest.approx(100 * 5 / 6)  # ranked by logit[1] - logit[0]
    # without teacher=True column 0 alone would be read as the student logit: different answer
    assert compute_metrics(MRPC, teacher, labels) != got


def test_multiclass_metrics_argmax() -> None:
    logits = np.array([[3.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 2.0, 1.0], [1.0, 0.0, 0.5]])
    labels = np.array([0, 2, 2, 1])
    got = compute_metrics(NLI3, logits, labels)
    assert got == {"accuracy": pytest.approx(50.0)}
    assert compute_metrics(NLI3, logits, labels, teacher=True) == got  # multiclass teacher logits are used as is


def test_regression_metrics_in_percent() -> None:
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, size=50)
    pred = gold + rng.normal(scale=1.0, size=50)
    got = compute_metrics(STSB, pred[:, None], gold)
    assert got["pearson"] == pytest.approx(100 * pearsonr(pred, gold).statistic)
    assert got["spearman"] == pytest.approx(100 * spearmanr(pred, gold).statistic)
    assert 50 < got["pearson"] < 100
    assert compute_metrics(STSB, (pred ** 3)[:, None], gold)["spearman"] == pytest.approx(got["spearman"])
    assert compute_metrics(STSB, pred[:, None], gold, teacher=True) == got


def test_tune_threshold_separates_separable_data() -> None:
    scores = np.array([0.10, 0.35, 0.20, 0.62, 0.80, 0.70, 0.05, 0.90])
    labels = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    t = tune_threshold(MRPC, scores, labels)
    assert 0.35 <= t < 0.62
    assert compute_metrics(MRPC, (scores - t)[:, None], labels) == {"accuracy": 100.0, "f1": 100.0, "roc_auc": 100.0}
    # accuracy-selected tasks too, with many candidate scores (quantile grid)
    rng = np.random.default_rng(1)
    many = np.concatenate([rng.uniform(0, 0.4, 1500), rng.uniform(0.6, 1.0, 1500)])
    gold = np.array([0] * 1500 + [1] * 1500)
    t = tune_threshold(RTE, many, gold)
    assert compute_metrics(RTE, (many - t)[:, None], gold)["accuracy"] > 99.9


def test_teacher_fidelity_measures_the_distillation_target() -> None:
    from dsembed.evaluation import teacher_fidelity

    teacher = np.array([[0.0, 2.0], [1.0, -1.0], [0.0, 0.5], [3.0, 0.0]])  # binary target: logit[1]-logit[0]
    exact = teacher_fidelity(MRPC, np.array([2.0, -2.0, 0.5, -3.0]), teacher)
    assert exact["logit_mse"] == 0.0 and exact["decision_agreement"] == 100.0
    assert exact["pearson"] == pytest.approx(100.0) and exact["spearman"] == pytest.approx(100.0)
    off = teacher_fidelity(MRPC, np.array([[1.0], [-2.0], [-0.5], [-3.0]]), teacher)
    assert off["logit_mse"] == pytest.approx((1.0 + 0 + 1.0 + 0) / 4) and off["decision_agreement"] == 75.0
    nli = teacher_fidelity(NLI3, np.eye(3)[[0, 1, 1]], np.eye(3)[[0, 1, 2]] * 2)
    assert nli["decision_agreement"] == pytest.approx(200 / 3) and "spearman" not in nli
    assert nli["logit_mse"] == pytest.approx((1.0 + 1.0 + (1 + 4)) / 3)


def test_relative_degradation() -> None:
    assert relative_degradation(80.0, 76.0) == pytest.approx(5.0)
    assert relative_degradation(80.0, 84.0) == pytest.approx(-5.0)
    assert relative_degradation(50.0, 50.0) == 0.0
    assert math.isnan(relative_degradation(0.0, 10.0))


def _fake_encoder(table: dict[str, list[float]]):  # noqa: ANN202
    calls: list[list[str]] = []

    def encode(sentences: list[str]) -> np.ndarray:
        calls.append(list(sentences))
        return np.array([table[s] for s in sentences], dtype=np.float32)

    return encode, calls


def test_cosine_scores_and_baseline() -> None:
    table = {"a": [1.0, 0.0], "b": [2.0, 0.0], "c": [0.0, 3.0], "d": [1.0, 1.0]}
    encode, calls = _fake_encoder(table)
    data = PairDataset(["a", "a", "c", "d"], ["b", "c", "c", "a"], np.array([1, 0, 1, 1], np.float32))
    np.testing.assert_allclose(cosine_scores(encode, data), [1.0, 0.0, 1.0, np.sqrt(0.5)], atol=1e-6)
    assert len(calls) == 1 and sorted(calls[0]) == ["a", "b", "c", "d"]  # each distinct sentence once

    base = cosine_baseline(encode, MRPC, data, data)
    assert base.threshold is not None and 0.0 <= base.threshold < np.sqrt(0.5)
    assert base.metrics["accuracy"] == 100.0
    reg = PairDataset(data.sentence1, data.sentence2, np.array([5.0, 0.0, 5.0, 3.0], np.float32))
    reg_base = cosine_baseline(encode, STSB, None, reg)
    assert reg_base.threshold is None and reg_base.metrics["spearman"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="labelled train pairs"):
        cosine_baseline(encode, MRPC, None, data)
    with pytest.raises(ValueError, match="binary or regression"):
        cosine_baseline(encode, NLI3, data, data)


def test_evaluate_student_uses_raw_logits(student_dir: Path, mrpc_dev: PairDataset) -> None:
    student = DSEModel.load(student_dir, device="cpu")
    metrics, logits = evaluate_student(student, MRPC, mrpc_dev)
    np.testing.assert_allclose(logits, student.predict(mrpc_dev.pairs(), apply_activation=False))
    assert metrics == compute_metrics(MRPC, logits, mrpc_dev.labels)


STS_ROWS = [
    ("A man is playing a guitar.", "A man plays the guitar.", "4.8"),
    ("A woman is slicing onions.", "A cat sleeps on the sofa.", "0.2"),
    ("Two dogs run in a field.", "Dogs are running outside.", "3.9"),
    ("The stock market fell today.", "Shares dropped on Monday.", "3.1"),
    ("A child reads a book.", "A plane lands at the airport.", "0.0"),
    ("He is cooking dinner.", "A man prepares a meal.", "4.0"),
]


def write_sts(path: Path, rows=STS_ROWS, extra: str = "") -> Path:  # noqa: ANN001
    lines = ["sentence1\tsentence2\tlabel", *("\t".join(r) for r in rows)]
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


def test_evaluate_sts_file(student_dir: Path, tmp_path: Path) -> None:
    student = DSEModel.load(student_dir, device="cpu")
    path = write_sts(tmp_path / "sts.tsv", extra="only one column\nx\ty\tnot-a-number\n")
    with pytest.raises(DataFormatError) as info:
        evaluate_sts_file(student, path)
    assert info.value.line == 8 and str(path) in str(info.value)

    result = evaluate_sts_file(student, path, skip_bad=True)
    assert result["pairs"] == len(STS_ROWS) and result["skipped"] == 2
    gold = np.array([float(r[2]) for r in STS_ROWS])
    pairs = [(r[0], r[1]) for r in STS_ROWS]
    head = student.predict(pairs, apply_activation=False)[:, 0]
    emb = student.encode(sorted({s for p in pairs for s in p}))
    lookup = dict(zip(sorted({s for p in pairs for s in p}), emb / np.linalg.norm(emb, axis=1, keepdims=True),
                      strict=True))
    cos = np.array([lookup[a] @ lookup[b] for a, b in pairs])
    assert result["head_spearman"] == pytest.approx(100 * spearmanr(head, gold).statistic, abs=1e-4)
    assert result["head_pearson"] == pytest.approx(100 * pearsonr(head, gold).statistic, abs=1e-3)
    assert result["cosine_spearman"] == pytest.approx(100 * spearmanr(cos, gold).statistic, abs=1e-4)
    assert result["cosine_pearson"] == pytest.approx(100 * pearsonr(cos, gold).statistic, abs=1e-3)
