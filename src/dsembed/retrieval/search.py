"""Exact head ranking of a store against queries: blockwise scan, rescoring, and :func:`rank` on top.

``rank`` scores every candidate in fp32 by default (exact); ``precision="bf16"`` screens with bfloat16 GEMMs
and rescores a shortlist exactly; ``prefilter=M`` asks a FAISS index (:mod:`.ann`) for M candidates and
re-ranks those with the exact head. :func:`ann_recall` measures what a prefilter loses against the exact scan.
``reranker=`` adds a cross-encoder pass over the head's top candidates (:mod:`.rerank`).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..artifacts import STORE_COPIES, STORE_EMBEDDINGS, STORE_PROJECTION, STORE_PROJECTION_BF16
from ..errors import ConfigError, StoreError
from ..student.head import PRECISIONS, HeadScorer
from ..utils import resolve_device
from .ann import AnnIndex, has_ann, load_ann
from .device import DEVICE_BLOCK_ROWS, device_blocks
from .manifest import damaged
from .rerank import PairScorer, check_reranker, depth, rerank_hits
from .scoring import key_to_score, ranking_key, resolve_label, scorer_for
from .store import CandidateStore, open_store

if TYPE_CHECKING:  # pragma: no cover
    from ..student.model import DSEModel


@dataclass
class Hit:
    """One ranked candidate: ``score`` is the head's, ``teacher_score`` the re-ranker's (None without one).

    ``student_rank`` is the candidate's 1-based place in the head's order, so a re-ranked list shows how far
    the cross-encoder moved it.
    """

    row: int
    id: str
    text: str
    score: float
    logits: list[float]
    student_rank: int = 0
    teacher_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "score": self.score, "logits": self.logits, "row": self.row,
                "student_rank": self.student_rank, "teacher_score": self.teacher_score}


@dataclass
class RankTimings:
    """Where the time of one :func:`rank` call went (seconds)."""

    encode: float = 0.0
    scan: float = 0.0
    prefilter: float = 0.0
    rescore: float = 0.0
    fetch: float = 0.0
    rerank: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _as_queries(model: DSEModel, query: str | Sequence[str] | np.ndarray, batch_size: int) -> tuple[np.ndarray, bool]:
    if isinstance(query, str):
        return np.asarray(model.encode([query], batch_size=batch_size, show_progress_bar=False),
                          dtype=np.float32), True
    if isinstance(query, np.ndarray | Tensor):
        arr = np.asarray(query, dtype=np.float32)
        return (arr[None, :], True) if arr.ndim == 1 else (arr, False)
    texts = list(query)
    if not texts:
        raise ConfigError("no queries given")
    return np.asarray(model.encode(texts, batch_size=batch_size, show_progress_bar=False), dtype=np.float32), False


def _damaged_row(store: CandidateStore, row: int, copy: str | None) -> StoreError:
    """The store file whose ``row`` makes a head score NaN or inf (finite rows were all that was written)."""
    emb, proj = store.rows(np.array([row]))
    if not np.isfinite(emb).all():
        file = STORE_EMBEDDINGS
    elif not np.isfinite(proj).all():
        file = STORE_PROJECTION
    else:  # the fp32 rows are fine: the bf16 screen read a low-precision copy
        file = STORE_COPIES[copy] if copy is not None else STORE_PROJECTION_BF16
    return damaged(store.path / file, f"row {row} holds NaN or inf values, so it cannot be ranked")


def _check_finite(store: CandidateStore, key: Tensor, rows: np.ndarray | int, copy: str | None = None) -> None:
    """Refuse to rank when a candidate's score is not finite (a NaN would sort first); cheap: one pass over keys.

    ``rows``: the store rows of ``key``'s columns, or the first row of a contiguous block.
    """
    finite = torch.isfinite(key).all(dim=0)
    if not bool(finite.all()):
        col = int(torch.argmin(finite.to(torch.uint8)))
        row = rows + col if isinstance(rows, int) else int(rows[col])
        raise _damaged_row(store, row, copy)


def _merge_topk(best_key: Tensor, best_idx: Tensor, key: Tensor, offset: int, k: int) -> tuple[Tensor, Tensor]:
    idx = torch.arange(offset, offset + key.shape[1], device=key.device).expand(key.shape[0], -1)
    all_key = torch.cat([best_key, key], dim=1)
    all_idx = torch.cat([best_idx, idx], dim=1)
    top = torch.topk(all_key, min(k, all_key.shape[1]), dim=1)
    return top.values, torch.gather(all_idx, 1, top.indices)


def _block_loader(store: CandidateStore, precision: str, copy: str | None) -> Any:
    """``(lo, hi) -> (v, cand_proj)`` as the scan multiplies them: memory-map views (fp32) or bf16 tensors."""
    def load(lo: int, hi: int) -> tuple[Any, Any]:
        if precision == "bf16":
            v = store.copy_block(copy, lo, hi) if copy is not None else \
                torch.from_numpy(store.embeddings(lo, hi)).to(torch.bfloat16)
            return v, store.cand_proj_bf16(lo, hi)
        return store.embeddings(lo, hi), store.cand_proj(lo, hi)

    return load


def _blocks(store: CandidateStore, precision: str, copy: str | None, block_rows: int,
            device: torch.device) -> Iterator[tuple[int, tuple[Tensor, ...]]]:
    """``(lo, (v, cand_proj))`` per block: the memory maps themselves on the CPU, streamed copies on a GPU."""
    load = _block_loader(store, precision, copy)
    if device.type == "cpu":
        for lo in range(0, store.count, block_rows):
            v, proj = load(lo, min(lo + block_rows, store.count))
            yield lo, (torch.from_numpy(v) if isinstance(v, np.ndarray) else v,
                       torch.from_numpy(proj) if isinstance(proj, np.ndarray) else proj)
        return
    row_bytes = (store.dim + store.hidden) * (2 if precision == "bf16" else 4)
    key = (str(store.path), precision if precision == "fp32" else f"bf16:{copy}")
    yield from device_blocks(key, load, store.count, max(block_rows, DEVICE_BLOCK_ROWS), row_bytes, device)


def scan_topk(scorer: HeadScorer, store: CandidateStore, u: np.ndarray, k: int, *, kind: str, label: int = 0,
              precision: str = "fp32", block_rows: int = 4096, copy: str | None = None,
              show_progress_bar: bool = False,
              device: str | torch.device | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows by head score for each query over the whole store, blockwise (bounded memory).

    ``device``: where the head runs (default the CPU). On a GPU the store's blocks are streamed to it, at least
    :data:`~.device.DEVICE_BLOCK_ROWS` rows at a time, and kept there when they fit (see :mod:`.device`).
    """
    device = torch.device(device or "cpu")
    scorer = scorer.to(device)
    ut = torch.from_numpy(np.ascontiguousarray(u, dtype=np.float32)).to(device)
    queries = ut.shape[0]
    best_key = torch.full((queries, 0), -math.inf, device=device)
    best_idx = torch.zeros((queries, 0), dtype=torch.long, device=device)
    if precision == "bf16" and copy is None:
        copy = next((c for c in ("bfloat16", "float16", "int8") if c in store.copies), None)
    total = math.ceil(store.count / (block_rows if device.type == "cpu" else max(block_rows, DEVICE_BLOCK_ROWS)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for lo, (v, proj) in tqdm(_blocks(store, precision, copy, block_rows, device), total=total, desc="scan",
                                  unit="block", disable=not show_progress_bar):
            key = ranking_key(scorer.block_logits(ut, v, proj, precision), kind, label)
            _check_finite(store, key, lo, copy if precision == "bf16" else None)
            best_key, best_idx = _merge_topk(best_key, best_idx, key, lo, k)
    return best_key.cpu().numpy(), best_idx.cpu().numpy()


def _on(device: torch.device, *arrays: np.ndarray) -> list[Tensor]:
    """Host rows as tensors on ``device`` (no copy on the CPU)."""
    return [torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays]


def rescore(scorer: HeadScorer, store: CandidateStore, u: np.ndarray, rows: np.ndarray, k: int, *, kind: str,
            label: int = 0, device: str | torch.device | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact fp32 head scores of candidate ``rows [Q, M]`` (-1 = none) for each query; keep the top ``k``.

    Returns (keys, rows, logits) each ``[Q, k']`` sorted by score, ``k' = min(k, M)``; missing rows get -inf.
    """
    queries, m = rows.shape
    kk = min(k, m)
    keys = np.full((queries, kk), -np.inf, dtype=np.float32)
    out_rows = np.full((queries, kk), -1, dtype=np.int64)
    out_logits = np.zeros((queries, kk, scorer.outputs), dtype=np.float32)
    device = torch.device(device or "cpu")
    scorer = scorer.to(device)
    for q in range(queries):
        valid = rows[q][rows[q] >= 0]
        valid = np.unique(valid)
        if not len(valid):
            continue
        logits = scorer.block_logits(*_on(device, u[q:q + 1], *store.rows(valid)))[0]
        key = ranking_key(logits, kind, label)
        _check_finite(store, key[None, :], valid)
        top = torch.topk(key, min(kk, len(valid)))
        n_top = len(top.indices)
        keys[q, :n_top] = top.values.cpu().numpy()
        out_rows[q, :n_top] = valid[top.indices.cpu().numpy()]
        out_logits[q, :n_top] = logits[top.indices].cpu().numpy()
    return keys, out_rows, out_logits


def screen_rows(scorer: HeadScorer, store: CandidateStore, u: np.ndarray, rows: np.ndarray, k: int, *, kind: str,
                label: int = 0, device: str | torch.device | None = None) -> np.ndarray:
    """The ``k`` best of candidate ``rows [Q, M]`` by a bf16 head pass (for a cheaper exact rescoring after)."""
    out = np.full((len(u), k), -1, dtype=np.int64)
    device = torch.device(device or "cpu")
    scorer = scorer.to(device)
    for q in range(len(u)):
        valid = np.unique(rows[q][rows[q] >= 0])
        if not len(valid):
            continue
        logits = scorer.block_logits(*_on(device, u[q:q + 1], *store.rows(valid)), "bf16")[0]
        key = ranking_key(logits, kind, label)
        _check_finite(store, key[None, :], valid)
        top = torch.topk(key, min(k, len(valid))).indices.cpu().numpy()
        out[q, :len(top)] = valid[top]
    return out


def _check_options(top_k: int, precision: str, block_rows: int, batch_size: int) -> None:
    if top_k < 1:
        raise ConfigError(f"top_k must be >= 1, got {top_k}")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if block_rows < 1 or batch_size < 1:
        raise ConfigError(f"block_rows and batch_size must be >= 1, got {block_rows} and {batch_size}")


def _winner_logits(scorer: HeadScorer, store: CandidateStore, u: np.ndarray, rows: np.ndarray,
                   device: torch.device) -> np.ndarray:
    """fp32 logits of each query's winning rows (cheap: k rows per query)."""
    logits = np.zeros((*rows.shape, scorer.outputs), dtype=np.float32)
    scorer = scorer.to(device)
    for q in range(len(u)):
        logits[q] = scorer.block_logits(*_on(device, u[q:q + 1], *store.rows(rows[q])))[0].cpu().numpy()
    return logits


def _ranked(scorer: HeadScorer, store: CandidateStore, u: np.ndarray, top_k: int, *, kind: str, label: int,
            prefilter: int | None, prefilter_kind: str, nprobe: int | None, precision: str,
            shortlist: int | None, block_rows: int, ann: AnnIndex | None,
            timings: RankTimings, device: torch.device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keys, rows, logits) of each query's top ``k`` by the route :func:`rank` describes; records timings."""
    t1 = time.perf_counter()
    short = shortlist or max(4 * top_k, 64)
    if prefilter is not None:
        if ann is None and prefilter_kind == "auto":
            prefilter_kind = "head" if has_ann(store, "head") else "cosine"
        index = ann or load_ann(store, prefilter_kind)
        cand = index.search(u, prefilter, nprobe=nprobe)
        t2 = time.perf_counter()
        timings.prefilter += t2 - t1
        if precision == "bf16" and prefilter > short:
            cand = screen_rows(scorer, store, u, cand, short, kind=kind, label=label, device=device)
        keys, rows, logits = rescore(scorer, store, u, cand, top_k, kind=kind, label=label, device=device)
    elif precision == "bf16":
        _, cand = scan_topk(scorer, store, u, short, kind=kind, label=label, precision="bf16", block_rows=block_rows,
                            device=device)
        t2 = time.perf_counter()
        timings.scan += t2 - t1
        keys, rows, logits = rescore(scorer, store, u, cand, top_k, kind=kind, label=label, device=device)
    else:
        keys, rows = scan_topk(scorer, store, u, top_k, kind=kind, label=label, precision="fp32",
                               block_rows=block_rows, device=device)
        t2 = time.perf_counter()
        timings.scan += t2 - t1
        logits = _winner_logits(scorer, store, u, rows, device)
    timings.rescore += time.perf_counter() - t2
    return keys, rows, logits


def _hits(store: CandidateStore, keys: np.ndarray, rows: np.ndarray, logits: np.ndarray, kind: str) -> list[list[Hit]]:
    results = []
    for q in range(len(rows)):
        ok = rows[q] >= 0
        recs = store.records(rows[q][ok])
        scores = key_to_score(keys[q][ok].astype(np.float64), kind)
        results.append([Hit(int(r), rid, text, float(s), [float(x) for x in lg], place)
                        for place, (r, (rid, text), s, lg) in
                        enumerate(zip(rows[q][ok], recs, scores, logits[q][ok], strict=True), 1)])
    return results


def _rerank_plan(model: DSEModel, query: Any, reranker: PairScorer | None, rerank_top: int | None,
                 rerank_batch_size: int) -> list[str]:
    """The query texts a re-ranker reads, checked before any work is done (none without a re-ranker)."""
    if reranker is None:
        if rerank_top is not None:
            raise ConfigError("rerank_top needs a reranker")
        return []
    check_reranker(reranker, model.task)
    if rerank_batch_size < 1:
        raise ConfigError(f"rerank_batch_size must be >= 1, got {rerank_batch_size}")
    if isinstance(query, str):
        return [query]
    if isinstance(query, np.ndarray | Tensor) or not all(isinstance(q, str) for q in query):
        raise ConfigError("re-ranking reads the query texts: pass sentences, not embeddings")
    return list(query)


def rank(model: DSEModel, query: str | Sequence[str] | np.ndarray, store: CandidateStore | str | os.PathLike[str],
         top_k: int = 10, *, prefilter: int | None = None, prefilter_kind: str = "auto",
         nprobe: int | None = None, precision: str = "fp32",
         label: int | str | None = None, shortlist: int | None = None, block_rows: int = 4096,
         batch_size: int = 32, timings: RankTimings | None = None,
         ann: AnnIndex | None = None, reranker: PairScorer | None = None, rerank_top: int | None = None,
         rerank_batch_size: int = 64, device: str | torch.device | None = None) -> list[Hit] | list[list[Hit]]:
    """Rank every candidate of ``store`` against ``query`` with the trained head (not cosine).

    ``query``: one sentence (returns a list of hits), a list of sentences or an embedding matrix (returns
    one list per query). Exact by default: every candidate is scored in fp32. ``precision="bf16"`` screens
    all candidates with bfloat16 GEMMs and rescores a shortlist (``shortlist``, default ``max(4 top_k, 64)``)
    exactly. ``prefilter=M`` takes the top ``M`` from the store's FAISS index instead (``prefilter_kind``:
    ``cosine``, ``head`` for the head surrogate, see :class:`~dsembed.retrieval.ann.HeadSurrogate`, or
    ``auto``: head if the store has that index, else cosine) and re-ranks those with the
    exact head (approximate overall: see :func:`ann_recall`); with ``precision="bf16"`` the ``M`` are
    screened in bf16 first and only the shortlist is rescored in fp32. Scores are P(positive) for binary tasks,
    the value for regression, and the probability of class ``label`` for multiclass tasks.

    ``reranker``: a cross-encoder (e.g. ``dsembed.load_teacher(...)``, anything with ``task`` and
    ``predict_logits``) that re-scores the head's top ``max(rerank_top, top_k)`` per query (``rerank_top``
    default 50) in batches of ``rerank_batch_size`` pairs; the ``top_k`` returned are in its order, each hit
    carrying both scores. Needs query texts, not embeddings.

    ``device``: where the head scores (``auto``, ``cpu``, ``cuda``, ``cuda:N``; default the CPU, exactly as
    before). On a GPU the queries, the head and the store's blocks go to it (:mod:`.device`); a FAISS
    prefilter still searches on the CPU and only its candidates' rows are moved.
    """
    timings = timings if timings is not None else RankTimings()
    device = resolve_device(device or "cpu")
    store = open_store(store, model)
    store.require_complete()
    _check_options(top_k, precision, block_rows, batch_size)
    texts, final_k = _rerank_plan(model, query, reranker, rerank_top, rerank_batch_size), top_k
    top_k = depth(top_k, rerank_top) if reranker is not None else top_k
    kind = model.task.kind
    lab = resolve_label(model.task, label)
    scorer = scorer_for(model)
    t0 = time.perf_counter()
    u, single = _as_queries(model, query, batch_size)
    if u.shape[1] != store.dim:
        raise StoreError(f"query embeddings have {u.shape[1]} dims, the store {store.path} {store.dim}")
    if not np.isfinite(u).all():  # else every candidate scores NaN and the store would be blamed
        raise ConfigError(f"query {int(np.argmin(np.isfinite(u).all(axis=1)))}'s embedding has NaN or inf values")
    timings.encode += time.perf_counter() - t0
    if store.count == 0:
        return [] if single else [[] for _ in range(len(u))]
    keys, rows, logits = _ranked(scorer, store, u, top_k, kind=kind, label=lab, prefilter=prefilter,
                                 prefilter_kind=prefilter_kind, nprobe=nprobe, precision=precision,
                                 shortlist=shortlist, block_rows=block_rows, ann=ann, timings=timings,
                                 device=device)
    t3 = time.perf_counter()
    results = _hits(store, keys, rows, logits, kind)
    timings.fetch += time.perf_counter() - t3
    if reranker is not None:
        results = rerank_hits(reranker, texts, results, final_k, label=lab, batch_size=rerank_batch_size,
                              timings=timings)
    return results[0] if single else results


def ann_recall(model: DSEModel, store: CandidateStore, queries: str | Sequence[str] | np.ndarray, *,
               top_k: int = 10, prefilters: Sequence[int] = (50, 100, 200, 500, 1000), kind: str = "cosine",
               nprobe: int | None = None, label: int | str | None = None, precision: str = "fp32",
               exact: list[list[Hit]] | None = None) -> dict[int, dict[str, float]]:
    """recall@``top_k`` of ANN prefilter + exact re-rank against the exact head ranking, per prefilter size.

    Lives here rather than in :mod:`.ann` because it runs :func:`rank`, which itself uses the ANN index.
    """
    u, _ = _as_queries(model, queries, 32)
    exact = exact if exact is not None else rank(model, u, store, top_k, label=label)
    ann = load_ann(store, kind)
    out: dict[int, dict[str, float]] = {}
    for m in prefilters:
        times = []
        hits = 0
        for q in range(len(u)):
            t0 = time.perf_counter()
            got = rank(model, u[q], store, top_k, prefilter=m, nprobe=nprobe, label=label, ann=ann,
                       precision=precision)
            times.append(time.perf_counter() - t0)
            hits += len({h.row for h in got} & {h.row for h in exact[q]})
        total = sum(min(top_k, len(e)) for e in exact)
        out[int(m)] = {"recall": hits / max(total, 1), "median_seconds": float(np.median(times))}
    return out
