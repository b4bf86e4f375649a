"""kill -9 at chosen and at random moments of distill, teacher train, logits and index build, then re-run.

Each command runs as a real subprocess on the tiny model; a fault (see ``_faulty_cli.py``) SIGKILLs it
while it writes an epoch checkpoint, its final model, a logits chunk or a store chunk, or after a
seeded random delay. Re-running the same command must finish and give exactly what an uninterrupted
run gives. ``DSEMBED_KILL_ROUNDS=N`` adds N more random kills per command (``benchmarks/kill_soak.py``);
``DSEMBED_RELIABILITY_RECORD=FILE`` writes what happened, per command and moment, as JSON.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import MRPC, synthetic_pairs
from dsembed.artifacts import (
    MODEL_DIR,
    STORE_EMBEDDINGS,
    STORE_OFFSETS,
    STORE_PROJECTION,
    STORE_TEXTS,
    STUDENT_HEAD,
    TRAIN_TIME,
    TRAINING_RECORD,
    WEIGHTS,
)

RUNNER = Path(__file__).with_name("_faulty_cli.py")
EXTRA_ROUNDS = int(os.environ.get("DSEMBED_KILL_ROUNDS", "0"))
RECORD = os.environ.get("DSEMBED_RELIABILITY_RECORD")
OUTCOMES: list[dict[str, Any]] = []

# One thread everywhere: the killed run, its re-run and the reference must do the same arithmetic.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
       "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DSEMBED_LOG": "WARNING"}

CHECKPOINT_SAVE = "call:transformers.trainer:Trainer._save_rng_state"  # model + optimizer written, state not yet


def _run(args: list[str], fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**ENV, "DSEMBED_FAULT": fault} if fault else {k: v for k, v in ENV.items() if k != "DSEMBED_FAULT"}
    return subprocess.run([sys.executable, str(RUNNER), *args], env=env, capture_output=True, text=True,
                          timeout=600)


def _write_jsonl(path: Path, n: int, seed: int) -> Path:
    data = synthetic_pairs(MRPC, n, seed=seed)
    with open(path, "w") as handle:
        for a, b, label in zip(data.sentence1, data.sentence2, data.labels, strict=True):
            handle.write(json.dumps({"sentence1": a, "sentence2": b, "label": int(label)}) + "\n")
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, tiny_base: str) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("kill9")
    train, dev = _write_jsonl(root / "train.jsonl", 32, 0), _write_jsonl(root / "dev.jsonl", 16, 1)
    sentences = root / "candidates.txt"
    sentences.write_text("\n".join(f"{a} {b}" for a, b in synthetic_pairs(MRPC, 300, seed=5).pairs()) + "\n")
    yield {"root": root, "base": tiny_base, "train": str(train), "dev": str(dev), "sentences": str(sentences)}
    if RECORD:
        Path(RECORD).parent.mkdir(parents=True, exist_ok=True)
        Path(RECORD).write_text(json.dumps({"kills": OUTCOMES, "extra_random_rounds": EXTRA_ROUNDS}, indent=2) + "\n")


def _tensors(*files: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for file in files:
        out.update({f"{file.name}:{k}": v for k, v in load_file(str(file)).items()})
    return out


def _same_tensors(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _kill_and_resume(command: str, args: list[str], out: Path, moments: list[tuple[str, str]],
                     result_of: Any, reference: Any, after_rerun: Any = None) -> None:
    """For each (moment, fault): a fresh output, a killed run, a re-run; the re-run must match the reference."""
    for moment, fault in moments:
        if out.exists():
            import shutil

            shutil.rmtree(out)
        killed = _run(args, fault)
        finished = _run(args)
        assert finished.returncode == 0, f"{command} after a kill {moment}:\n{finished.stderr[-3000:]}"
        identical = _same_tensors(result_of(), reference) if isinstance(reference, dict) else \
            result_of() == reference
        OUTCOMES.append({"command": command, "moment": moment, "killed": killed.returncode == -9,
                         "rerun_exit_code": finished.returncode, "resumed_identical": identical})
        _assert_fired(command, fault, killed)
        assert identical, f"{command} killed {moment} then re-run differs from an uninterrupted run"
        if after_rerun is not None:
            after_rerun(moment)


def _assert_fired(command: str, fault: str, killed: subprocess.CompletedProcess[str]) -> None:
    """A named moment must be reached; a random one may come after a fast run has already finished."""
    if fault.startswith("time:") and killed.returncode == 0:
        return
    assert killed.returncode == -9, f"{command}: the fault {fault} never fired ({killed.returncode})"


def _random_moments(seconds: float, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [("at a random moment", f"time:{rng.uniform(0.3, 0.9) * seconds:.2f}") for _ in range(1 + EXTRA_ROUNDS)]


def _timed(args: list[str]) -> float:
    start = time.perf_counter()
    done = _run(args)
    assert done.returncode == 0, done.stderr[-3000:]
    return time.perf_counter() - start


def test_distill_survives_kill9(work: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "student"
    args = ["distill", "mrpc", "-o", str(out), "--train", work["train"], "--dev", work["dev"], "--base", work["base"],
            "--alpha", "0", "--epochs", "2", "--batch-size", "8", "--max-length", "32", "--no-progress"]
    seconds = _timed(args)
    weights = lambda: _tensors(out / MODEL_DIR / WEIGHTS, out / MODEL_DIR / STUDENT_HEAD)  # noqa: E731
    reference = weights()
    moments = [("during the epoch-2 checkpoint save", f"{CHECKPOINT_SAVE}:2"),
               ("during the final model save", "call:dsembed.student.model:save_file:1"),
               *_random_moments(seconds, seed=1)]

    def wall_time_adds_up(moment: str) -> None:
        record = json.loads((out / TRAINING_RECORD).read_text())
        if "checkpoint" in moment:  # the killed attempt trained an epoch: its time is in the record
            assert record["train_attempts"] == 2 and record["resumed_from"] == "checkpoint-4"
            assert json.loads((out / TRAIN_TIME).read_text())["attempts"] == 2

    _kill_and_resume("distill", args, out, moments, weights, reference, wall_time_adds_up)


def test_teacher_train_survives_kill9(work: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "teacher"
    args = ["teacher", "train", "mrpc", "-o", str(out), "--train", work["train"], "--dev", work["dev"], "--base",
            work["base"], "--epochs", "2", "--batch-size", "8", "--max-length", "32", "--no-progress"]
    seconds = _timed(args)
    weights = lambda: _tensors(out / MODEL_DIR / WEIGHTS)  # noqa: E731
    reference = weights()
    moments = [("during the epoch-1 checkpoint save", f"{CHECKPOINT_SAVE}:1"),
               ("during the final model save", "call:dsembed.teacher.train:atomic_write_json:1"),
               *_random_moments(seconds, seed=2)]
    _kill_and_resume("teacher train", args, out, moments, weights, reference)
    assert not list(out.glob(f".{MODEL_DIR}.*.tmp"))  # the interrupted final save left nothing behind


def test_logits_survive_kill9(work: dict[str, Any], tmp_path: Path) -> None:
    teacher = tmp_path / "teacher"
    done = _run(["teacher", "train", "mrpc", "-o", str(teacher), "--train", work["train"], "--dev", work["dev"],
                 "--base", work["base"], "--epochs", "1", "--batch-size", "16", "--max-length", "32", "--no-progress"])
    assert done.returncode == 0, done.stderr[-3000:]
    output, cache = tmp_path / "logits.safetensors", tmp_path / "cache"
    args = ["logits", "mrpc", "--teacher", str(teacher / MODEL_DIR), "-o", str(output), "--train", work["train"],
            "--cache", str(cache), "--chunk-size", "8", "--batch-size", "4", "--no-progress"]
    seconds = _timed(args)
    logits = lambda: {"logits": load_file(str(output))["logits"]}  # noqa: E731
    reference = logits()
    moments = [("while committing the 3rd chunk", "call:dsembed.teacher.logits:atomic_write_bytes:3"),
               ("during the final save", "call:dsembed.teacher.logits:save_file:1"),
               *_random_moments(seconds, seed=3)]

    def fresh_cache_then_logits() -> dict[str, np.ndarray]:
        return logits()

    for moment, fault in moments:
        import shutil

        shutil.rmtree(cache, ignore_errors=True)
        output.unlink(missing_ok=True)
        killed = _run(args, fault)
        finished = _run(args)
        assert finished.returncode == 0, finished.stderr[-3000:]
        identical = _same_tensors(fresh_cache_then_logits(), reference)
        OUTCOMES.append({"command": "logits", "moment": moment, "killed": killed.returncode == -9,
                         "rerun_exit_code": finished.returncode, "resumed_identical": identical})
        _assert_fired("logits", fault, killed)
        assert identical, moment


def test_index_build_survives_kill9(work: dict[str, Any], distilled_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    args = ["index", "build", str(distilled_dir / MODEL_DIR), work["sentences"], str(store), "--chunk-size", "32",
            "--ann", "none", "--no-progress"]
    seconds = _timed(args)
    files = (STORE_EMBEDDINGS, STORE_PROJECTION, STORE_TEXTS, STORE_OFFSETS)
    contents = lambda: tuple((store / name).read_bytes() for name in files)  # noqa: E731
    reference = contents()
    moments = [("while committing the 4th chunk", "call:dsembed.retrieval.build:append_rows:4"),
               *_random_moments(seconds, seed=4)]
    _kill_and_resume("index build", args, store, moments, contents, reference)
