"""The ranking methods a ranking evaluation compares, each giving every query its top candidates.

First stages (no teacher): a student's head over a candidate store (exact, or FAISS-prefiltered), a
student's or the pretrained encoder's cosine, BM25. Teacher methods: the cross-encoder over every
candidate, and cascades that let the teacher re-rank a first stage's top K. Each method records, per
query, the ranked candidate indices (the query's own sentence never among them), the seconds it took and
how many distinct pairs the teacher had to score for it (cache hits count: the method needed them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..artifacts import RETRIEVAL_STORES_DIR
from ..data.ranking_sets import RankingSet
from ..evaluation.ranking import DEPTH
from ..utils import sha256_bytes
from .teacher_scores import TeacherScoreCache


@dataclass
class MethodRun:
    """What one method did on each query it ran on (keyed by query index)."""

    name: str
    family: str
    rankings: dict[int, list[int]] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)  # own time, without the teacher's
    teacher_calls: dict[int, int] = field(default_factory=dict)
    first_stage: str | None = None
    k: int | None = None

    def time_per_query(self, teacher_seconds_per_pair: float | None) -> dict[int, float | None]:
        """Seconds per query, the teacher's share included at its measured time per pair."""
        out: dict[int, float | None] = {}
        for q, own in self.seconds.items():
            calls = self.teacher_calls.get(q, 0)
            out[q] = own if not calls else (None if teacher_seconds_per_pair is None
                                            else own + calls * teacher_seconds_per_pair)
        return out


def top_candidates(scores: np.ndarray, exclude: int, depth: int = DEPTH) -> list[int]:
    """Indices of the ``depth`` best scores (ties: lower index first), never ``exclude``."""
    scores = np.asarray(scores, dtype=np.float64).copy()
    if exclude >= 0:
        scores[exclude] = -np.inf
    order = np.argsort(-scores, kind="stable")
    return [int(i) for i in order[: depth + 1] if i != exclude][:depth]


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(min=1e-12)


def score_method(name: str, family: str, rset: RankingSet, queries: Sequence[int],
                 scores_of: Callable[[str], np.ndarray]) -> MethodRun:
    """A method that scores every candidate for a query text (cosine, BM25); timed per query."""
    run = MethodRun(name, family)
    for q in queries:
        start = time.perf_counter()
        ranked = top_candidates(scores_of(rset.queries[q]), rset.exclude[q])
        run.seconds[q] = time.perf_counter() - start
        run.rankings[q] = ranked
    return run


def cosine_method(name: str, family: str, rset: RankingSet, queries: Sequence[int], candidate_embeddings: np.ndarray,
                  encode_one: Callable[[str], np.ndarray]) -> MethodRun:
    """Cosine against precomputed candidate embeddings; the query's encoding is part of its time."""
    cand = _normalised(candidate_embeddings)
    return score_method(name, family, rset, queries, lambda text: cand @ _normalised(encode_one(text)))


def bm25_method(rset: RankingSet, queries: Sequence[int]) -> MethodRun:
    """BM25 (bm25s, Lucene variant, English stopwords, no stemming) over the candidate texts."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(rset.candidates, return_ids=False, show_progress=False), show_progress=False)
    vocab = retriever.vocab_dict
    zeros = np.zeros(len(rset.candidates), dtype=np.float32)

    def scores_of(text: str) -> np.ndarray:
        tokens = [t for t in bm25s.tokenize([text], return_ids=False, show_progress=False)[0] if t in vocab]
        return retriever.get_scores(tokens) if tokens else zeros

    return score_method("bm25", "bm25", rset, queries, scores_of)


def student_store(model, rset: RankingSet, work_dir: Path, ann: bool, batch_size: int = 64):  # noqa: ANN001, ANN201
    """The student's candidate store of this set (built once, resumed after a kill; cosine FAISS index if asked)."""
    from ..retrieval import build_store, model_fingerprint, sentences_fingerprint

    key = sha256_bytes(f"{model_fingerprint(model)}\n{sentences_fingerprint(rset.candidates, None)}".encode())[:24]
    return build_store(model, rset.candidates, work_dir / RETRIEVAL_STORES_DIR / key, batch_size=batch_size,
                       source=rset.name, show_progress_bar=False, ann="Flat" if ann else None, ann_kinds=("cosine",))


def head_method(name: str, model, store, rset: RankingSet, queries: Sequence[int],  # noqa: ANN001
                prefilter: int | None = None) -> MethodRun:
    """The student's head through :func:`dsembed.retrieval.rank`: exact, or FAISS top-``prefilter`` then the head."""
    from ..retrieval import rank

    run = MethodRun(name, "head-ann" if prefilter else "head")
    depth = min(DEPTH + 1, len(rset.candidates))
    for q in queries:
        start = time.perf_counter()
        hits = rank(model, rset.queries[q], store, depth, prefilter=prefilter,
                    prefilter_kind="cosine" if prefilter else "auto")
        run.seconds[q] = time.perf_counter() - start
        run.rankings[q] = [int(h.id) for h in hits if int(h.id) != rset.exclude[q]][:DEPTH]
    return run


def teacher_method(rset: RankingSet, queries: Sequence[int], cache: TeacherScoreCache) -> MethodRun:
    """The cross-encoder over every candidate of each query (all N - 1 pairs are teacher calls)."""
    run = MethodRun("teacher", "teacher")
    for q in queries:
        rows = [c for c in range(len(rset.candidates)) if c != rset.exclude[q]]
        scores = cache.score([(rset.queries[q], rset.candidates[c]) for c in rows])
        full = np.full(len(rset.candidates), -np.inf)
        full[rows] = scores
        run.rankings[q] = top_candidates(full, rset.exclude[q])
        run.seconds[q] = 0.0  # all of its time is the teacher's: calls x measured seconds per pair
        run.teacher_calls[q] = len(rows)
    return run


def cascade_method(first: MethodRun, k: int, rset: RankingSet, queries: Sequence[int],
                   cache: TeacherScoreCache) -> MethodRun:
    """The teacher re-ranks the first stage's top ``k``; the rest of the first stage's list follows unchanged."""
    run = MethodRun(f"{first.name}>teacher@{k}", "cascade", first_stage=first.name, k=k)
    for q in queries:
        head, tail = first.rankings[q][:k], first.rankings[q][k:]
        scores = cache.score([(rset.queries[q], rset.candidates[c]) for c in head]) if head else np.zeros(0)
        order = np.argsort(-scores, kind="stable")  # ties keep the first stage's order
        run.rankings[q] = [head[i] for i in order] + tail
        run.seconds[q] = first.seconds[q]
        run.teacher_calls[q] = len(head)
    return run
