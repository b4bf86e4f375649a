"""Distillation with mined pairs and step budgets on the tiny model: steps, dev selection, resume, the guard."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import MAX_LEN, MRPC, synthetic_pairs
from dsembed.config import StudentConfig
from dsembed.data import PairDataset
from dsembed.errors import RunConfigMismatch
from dsembed.student import DistillationTrainer, MinedRows, distill
from dsembed.student.model import DSEModel


def _mined(n: int = 24, seed: int = 3) -> MinedRows:
    pairs = synthetic_pairs(MRPC, n, seed=seed)
    logits = np.random.default_rng(seed).normal(size=(n, 2)).astype(np.float32)
    return MinedRows(PairDataset(pairs.sentence1, pairs.sentence2, None), logits, ["bm25"] * n)


def _config(tiny_base: str, **values: object) -> StudentConfig:
    base = {"base": tiny_base, "alpha": 0.5, "epochs": 3, "batch_size": 8, "head_hidden": 16,
            "max_length": MAX_LEN, "seed": 0}
    return StudentConfig(**{**base, **values})


def _logits(data: PairDataset) -> np.ndarray:
    return np.stack([[len(a) % 7 - 3.0, len(b) % 5 - 2.0] for a, b in data.pairs()]).astype(np.float32)


def test_max_steps_with_mined_pairs_keeps_the_best_evaluation(tiny_base: str, mrpc_train: PairDataset,
                                                              mrpc_dev: PairDataset, tmp_path: Path) -> None:
    mined = _mined()
    cfg = _config(tiny_base, max_steps=6, mined_ratio=3.0)
    trained = distill(MRPC, mrpc_train, mrpc_dev, tmp_path, _logits(mrpc_train), cfg, show_progress_bar=False,
                      device="cpu", mined=mined)
    record = json.loads((tmp_path / "training.json").read_text())
    assert record["optimizer_steps"] == 6
    curve = record["dev_curve"]
    assert [row["step"] for row in curve] == [2, 4, 6]  # ceil(epochs) = 3 evaluations, spread evenly
    scores = [row[MRPC.main_metric] for row in curve]
    best_step = curve[int(np.argmax(scores))]["step"]  # the first of equal bests, as the Trainer keeps it
    assert record["best_checkpoint"] == f"checkpoint-{best_step}"
    assert record["dev_metrics"][MRPC.main_metric] == pytest.approx(max(scores), abs=1e-6)
    from dsembed.evaluation import evaluate_student

    metrics, _ = evaluate_student(DSEModel.load(trained.path, device="cpu"), MRPC, mrpc_dev)
    assert metrics[MRPC.main_metric] == pytest.approx(max(scores), abs=1e-3)
    assert record["mined"] == {"count": 24, "strategies": {"bm25": 24}, "fingerprint": mined.fingerprint(),
                               "teacher": None, "ratio": 3.0, "sampling": "mixed", "recipe": "dse", "steps": 6}
    card = (trained.path / "README.md").read_text()
    assert "Augmentation: 24 unlabelled pairs mined and scored by the teacher (bm25 24)" in card

    # the guard: another mined set (same pairs, other logits) or another ratio never reuses this folder
    other = MinedRows(mined.pairs, mined.teacher_logits + 1.0, mined.strategy)
    with pytest.raises(RunConfigMismatch, match="mined"):
        distill(MRPC, mrpc_train, mrpc_dev, tmp_path, _logits(mrpc_train), cfg, device="cpu", mined=other)
    with pytest.raises(RunConfigMismatch, match="config"):
        distill(MRPC, mrpc_train, mrpc_dev, tmp_path, _logits(mrpc_train), replace(cfg, mined_ratio=1.0),
                device="cpu", mined=mined)
    with pytest.raises(RunConfigMismatch, match="mined"):
        distill(MRPC, mrpc_train, mrpc_dev, tmp_path, _logits(mrpc_train), cfg, device="cpu")
    again = distill(MRPC, mrpc_train, mrpc_dev, tmp_path, _logits(mrpc_train), cfg, device="cpu", mined=mined)
    assert again.source == "reused"


def test_equal_compute_takes_the_labelled_only_step_count(tiny_base: str, mrpc_train: PairDataset,
                                                          mrpc_dev: PairDataset, tmp_path: Path) -> None:
    plain = distill(MRPC, mrpc_train, mrpc_dev, tmp_path / "plain", None, _config(tiny_base, alpha=0.0, epochs=2),
                    show_progress_bar=False, device="cpu")
    equal = distill(MRPC, mrpc_train, mrpc_dev, tmp_path / "aug", None,
                    _config(tiny_base, epochs=2, recipe="augsbert", mined_ratio=3.0, equal_compute=True),
                    show_progress_bar=False, device="cpu", mined=_mined())
    assert plain.record["optimizer_steps"] == equal.record["optimizer_steps"] == 8  # 32 pairs / 8, 2 epochs
    assert [row["step"] for row in equal.record["dev_curve"]] == [row["step"] for row in plain.record["dev_curve"]]
    assert equal.record["alpha_ignored"] and "AugSBERT" in equal.record["loss"]
    assert equal.record["mined"]["recipe"] == "augsbert" and equal.record["mined"]["steps"] == 8
    card = (equal.path / "README.md").read_text()
    assert "AugSBERT student" in card and "8 optimiser steps" in card and "alpha not used" in card
    assert ", 2 epochs," in (plain.path / "README.md").read_text()


def test_an_interrupted_stream_run_resumes_on_the_same_batches(tiny_base: str, mrpc_train: PairDataset,
                                                              mrpc_dev: PairDataset, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int]] = []
    real_step = DistillationTrainer.training_step
    stop_at: list[int] = []

    def recording_step(self, model, inputs, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if self.state.global_step in stop_at:
            raise KeyboardInterrupt  # a kill between the checkpoint at step 2 and the next one
        seen.append((self.state.global_step, hash(inputs["sentence_a"]["input_ids"].numpy().tobytes())))
        return real_step(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(DistillationTrainer, "training_step", recording_step)
    cfg = _config(tiny_base, max_steps=4, epochs=2, mined_ratio=1.0, mined_sampling="concat")
    args = (MRPC, mrpc_train, mrpc_dev)
    whole = distill(*args, tmp_path / "whole", _logits(mrpc_train), cfg, show_progress_bar=False, device="cpu",
                    mined=_mined())
    reference, seen[:] = list(seen), []
    stop_at.append(3)
    with pytest.raises(KeyboardInterrupt):
        distill(*args, tmp_path / "cut", _logits(mrpc_train), cfg, show_progress_bar=False, device="cpu",
                mined=_mined())
    stop_at.clear()
    resumed = distill(*args, tmp_path / "cut", _logits(mrpc_train), cfg, show_progress_bar=False, device="cpu",
                      mined=_mined())
    assert resumed.source == "resumed"
    assert [s for s, _ in seen] == [0, 1, 2, 2, 3]  # steps 0-2 before the kill, then 2-3 again from checkpoint-2
    assert seen[:3] + seen[4:] == reference  # the resumed run read exactly the batches of the uninterrupted one
    a, b = DSEModel.load(whole.path, device="cpu"), DSEModel.load(resumed.path, device="cpu")
    for (name, p), q in zip(a.head.state_dict().items(), b.head.state_dict().values(), strict=True):
        assert torch.allclose(p, q, atol=1e-6), name
