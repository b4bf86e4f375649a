"""Teacher fine-tuning and inference: cross-encoder folders, fingerprints, batching."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file
from sentence_transformers import CrossEncoder

from conftest import MAX_LEN, MRPC, NLI3, STSB
from dsembed.artifacts import TEACHER_INFO
from dsembed.config import TeacherConfig
from dsembed.data import PairDataset
from dsembed.teacher import Teacher, train_teacher
from dsembed.teacher.train import IDENTITY_ACTIVATION

SHORT_PAIRS = [("A man is playing a guitar.", "A man plays guitar."), ("The cat sleeps.", "Stocks fell sharply."),
               ("Two kids run on the beach.", "Children are running.")]


# ---- teacher --------------------------------------------------------------------------------------


def test_binary_teacher_folder_loads_in_cross_encoder(binary_teacher: Path, mrpc_train: PairDataset) -> None:
    info = json.loads((binary_teacher / TEACHER_INFO).read_text())
    assert info["task"] == "mrpc" and info["train_pairs"] == len(mrpc_train) == 32
    assert {"accuracy", "f1"} <= set(info["dev_metrics"])
    assert info["max_length"] == MAX_LEN
    assert info["best_checkpoint"] is not None
    assert len(info["dev_curve"]) == 1 and info["dev_curve"][0]["epoch"] == 1.0
    assert info["dev_curve"][0]["f1"] == pytest.approx(info["dev_metrics"]["f1"])  # one epoch: it is the best
    ce = CrossEncoder(str(binary_teacher), device="cpu")
    scores = ce.predict(SHORT_PAIRS)
    assert scores.shape == (3, 2) and np.all(np.isfinite(scores))
    teacher = Teacher(binary_teacher, MRPC, device="cpu")
    np.testing.assert_allclose(scores, teacher.predict_logits(SHORT_PAIRS), atol=1e-5)
    # the student-scale score is P(positive) from logit1 - logit0
    logits = teacher.predict_logits(SHORT_PAIRS)
    np.testing.assert_allclose(teacher.predict(SHORT_PAIRS), 1 / (1 + np.exp(-(logits[:, 1] - logits[:, 0]))),
                               atol=1e-6)


def test_regression_teacher_cross_encoder_is_identity(tiny_base: str, stsb_train: PairDataset,
                                                      stsb_dev: PairDataset, tmp_path: Path) -> None:
    recipe = TeacherConfig(base=tiny_base, epochs=1, batch_size=16, max_length=MAX_LEN, seed=0, max_train_pairs=16)
    path = train_teacher(STSB, stsb_train, stsb_dev, tmp_path / "teacher", recipe, show_progress_bar=False).path
    config = json.loads((path / "config.json").read_text())
    assert config["sentence_transformers"]["activation_fn"] == IDENTITY_ACTIVATION
    assert json.loads((path / TEACHER_INFO).read_text())["train_pairs"] == 16
    teacher = Teacher(path, STSB, device="cpu")
    logits = teacher.predict_logits(SHORT_PAIRS)
    assert logits.shape == (3, 1)
    ce = CrossEncoder(str(path), device="cpu")
    np.testing.assert_allclose(ce.predict(SHORT_PAIRS), logits[:, 0], atol=1e-5)
    np.testing.assert_allclose(teacher.predict(SHORT_PAIRS), logits[:, 0], atol=1e-6)


def test_teacher_rejects_wrong_task(binary_teacher: Path) -> None:
    with pytest.raises(ValueError, match="has 2 outputs"):
        Teacher(binary_teacher, NLI3, device="cpu")


def test_predict_logits_order_is_independent_of_batching(binary_teacher: Path, mrpc_train: PairDataset) -> None:
    teacher = Teacher(binary_teacher, MRPC, device="cpu")
    pairs = mrpc_train.pairs()[:10]
    batched = teacher.predict_logits(pairs, batch_size=3)
    one_by_one = np.concatenate([teacher.predict_logits([p]) for p in pairs])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert teacher.predict_logits([]).shape == (0, 2)


def test_teacher_fingerprint_tracks_weights_and_length(binary_teacher: Path, tmp_path: Path) -> None:
    original = Teacher(binary_teacher, MRPC, device="cpu")
    copy = tmp_path / "copy"
    shutil.copytree(binary_teacher, copy)
    assert Teacher(copy, MRPC, device="cpu").fingerprint() == original.fingerprint()  # content, not location
    assert Teacher(copy, MRPC, max_length=64, device="cpu").fingerprint() != original.fingerprint()
    weights = load_file(str(copy / "model.safetensors"))
    name = next(k for k in weights if k.startswith("classifier"))
    weights[name] = weights[name] + 1.0
    save_file(weights, str(copy / "model.safetensors"), metadata={"format": "pt"})
    assert Teacher(copy, MRPC, device="cpu").fingerprint() != original.fingerprint()
