"""Retrieve, then re-rank: the head's top candidates scored again by a cross-encoder (the teacher).

The head is fast because it never reads a query and a candidate together; a cross-encoder does, and scores
pairs better, but costs a transformer pass per pair. The cascade spends that pass only on the head's top
``rerank_top`` per query. Retrieval does not import the teacher room: anything with the teacher's pair
protocol (:class:`PairScorer`) re-ranks, and the command line and the service load the teacher and pass it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch

from ..errors import ConfigError
from ..student.loss import logits_to_scores

if TYPE_CHECKING:  # pragma: no cover
    from .search import Hit, RankTimings

DEFAULT_RERANK_TOP = 50


@runtime_checkable
class PairScorer(Protocol):
    """What a re-ranker needs: a task and raw pair logits ``[n, task.num_labels]`` (as ``dsembed.Teacher``)."""

    task: Any

    def predict_logits(self, pairs: list[tuple[str, str]], batch_size: int = 64,
                       show_progress_bar: bool | None = None) -> np.ndarray: ...


def check_reranker(reranker: Any, task: Any) -> None:
    """Refuse a re-ranker whose task differs in kind or outputs from the student's (its scores would not mean
    what the student's do)."""
    if not isinstance(reranker, PairScorer):
        raise ConfigError(f"a re-ranker needs 'task' and 'predict_logits' (like dsembed.Teacher); "
                          f"got {type(reranker).__name__}")
    theirs = reranker.task
    if (theirs.kind, theirs.num_labels) != (task.kind, task.num_labels):
        raise ConfigError(f"the re-ranker scores a {theirs.kind} task with {theirs.num_labels} outputs "
                          f"({theirs.name}), the student a {task.kind} task with {task.num_labels} ({task.name})")


def depth(top_k: int, rerank_top: int | None) -> int:
    """How many head candidates per query the re-ranker sees: ``max(rerank_top, top_k)``."""
    top = DEFAULT_RERANK_TOP if rerank_top is None else rerank_top
    if top < 1:
        raise ConfigError(f"rerank_top must be >= 1, got {top}")
    return max(top, top_k)


def teacher_scores(reranker: PairScorer, pairs: list[tuple[str, str]], label: int,
                   batch_size: int = 64) -> np.ndarray:
    """Scores on the student's scale, the teacher room's conversion (``_PairScorer.predict``): P(positive) from
    logit[1] - logit[0] for binary tasks, the value for regression, P(``label``) for multiclass."""
    task = reranker.task
    logits = np.asarray(reranker.predict_logits(pairs, batch_size, False), dtype=np.float32)
    if logits.shape != (len(pairs), task.num_labels):
        raise ConfigError(f"the re-ranker gave logits of shape {logits.shape} for {len(pairs)} pairs, "
                          f"expected ({len(pairs)}, {task.num_labels})")
    scores = logits_to_scores(task, torch.as_tensor(task.teacher_to_student_logits(logits))).numpy()
    scores = scores[:, label] if task.kind == "multiclass" else scores.reshape(-1)
    return scores.astype(np.float64)


def rerank_hits(reranker: PairScorer, queries: Sequence[str], hits: Sequence[Sequence[Hit]], top_k: int, *,
                label: int = 0, batch_size: int = 64, timings: RankTimings | None = None) -> list[list[Hit]]:
    """Each query's ``hits`` re-ordered by the re-ranker's score, the best ``top_k`` kept.

    All (query, candidate) pairs of all queries go to the re-ranker in one call (it batches them); ties keep
    the head's order. Each hit keeps its head ``score`` and ``student_rank`` and gains ``teacher_score``.
    """
    if len(queries) != len(hits):
        raise ConfigError(f"{len(queries)} query texts for {len(hits)} result lists")
    if batch_size < 1:
        raise ConfigError(f"rerank_batch_size must be >= 1, got {batch_size}")
    start = time.perf_counter()
    pairs = [(q, h.text) for q, found in zip(queries, hits, strict=True) for h in found]
    scores = teacher_scores(reranker, pairs, label, batch_size) if pairs else np.zeros(0)
    bad = np.flatnonzero(~np.isfinite(scores))
    if len(bad):
        raise ConfigError(f"the re-ranker scored pair {int(bad[0])} ({pairs[int(bad[0])][1]!r}) as "
                          f"{scores[bad[0]]}, so it cannot rank")
    out, at = [], 0
    for found in hits:
        own = scores[at:at + len(found)]
        at += len(found)
        order = np.argsort(-own, kind="stable")[:top_k]
        out.append([replace(found[i], teacher_score=float(own[i])) for i in order])
    if timings is not None:
        timings.rerank += time.perf_counter() - start
        timings.extra["rerank_pairs"] = timings.extra.get("rerank_pairs", 0) + len(pairs)
    return out


class TurnTakingScorer:
    """A re-ranker that holds ``lock`` one batch of pairs at a time (the service's encoder discipline).

    Fast tokenizers are not thread-safe and the CPU is shared with the encoder, so the service runs the
    teacher under the encoder's fair lock; taking it per batch lets small requests in between.
    """

    def __init__(self, scorer: PairScorer, lock: Any, turn: int) -> None:
        if turn < 1:
            raise ConfigError(f"rerank batch must be >= 1, got {turn}")
        self.scorer, self.lock, self.turn = scorer, lock, turn
        self.task = scorer.task

    def predict_logits(self, pairs: list[tuple[str, str]], batch_size: int = 64,
                       show_progress_bar: bool | None = None) -> np.ndarray:
        parts = []
        for lo in range(0, len(pairs), self.turn):
            with self.lock:
                parts.append(np.asarray(self.scorer.predict_logits(pairs[lo:lo + self.turn],
                                                                   min(batch_size, self.turn), False)))
        return np.concatenate(parts) if parts else np.zeros((0, self.task.num_labels), dtype=np.float32)


def serving_reranker(reranker: PairScorer | None, task: Any, rerank_top: int | None, max_rerank_top: int,
                     lock: Any, turn: int) -> tuple[TurnTakingScorer | None, int | None]:
    """A service's re-ranker behind ``lock`` and its default depth; a bad setting is refused at start-up."""
    if reranker is None:
        if rerank_top is not None:
            raise ConfigError("rerank_top needs a reranker")
        return None, None
    check_reranker(reranker, task)
    top = depth(1, rerank_top)
    if top > max_rerank_top:
        raise ConfigError(f"rerank_top {top} is over the service's limit max_rerank_top {max_rerank_top}")
    return TurnTakingScorer(reranker, lock, turn), top
