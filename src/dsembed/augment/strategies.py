"""Where candidate partners come from: random recombination, BM25 neighbours, embedding neighbours, swaps.

Each strategy proposes, for every source sentence of the pool, partners in order of preference (more
than the budget, so that pairs removed by de-duplication can be replaced); :mod:`.mine` keeps the first
``budget`` that survive. Sentences are pool indices throughout; ties are broken by index, so the same
inputs always give the same proposals in the same order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError

logger = logging.getLogger("dsembed.augment")

STRATEGIES = ("random", "bm25", "embedding", "swap")

# (source index, candidate pairs (i, j) of pool indices in order of preference)
Proposals = Iterator[tuple[int, list[tuple[int, int]]]]


def candidates_wanted(budget: int) -> int:
    """How many neighbours to ask for per source: the budget plus room for self and de-duplicated hits."""
    return 2 * budget + 4


def propose_random(n: int, budget: int, seed: int, sources: Sequence[int] | None = None,
                   targets: Sequence[int] | None = None) -> Proposals:
    """Uniformly drawn distinct partners (never the source itself).

    With ``sources`` and ``targets`` (cross pairing) each source draws its partners from ``targets`` only.
    """
    rng = np.random.default_rng([seed, 0])
    if sources is not None and targets is not None:
        target_array = np.asarray(targets, dtype=np.int64)
        draws = min(candidates_wanted(budget), len(target_array))
        for source in sources:
            partners = target_array[rng.choice(len(target_array), size=draws, replace=False)] if draws else []
            yield source, [(source, int(j)) for j in partners if j != source]
        return
    draws = min(candidates_wanted(budget), max(n - 1, 0))
    for source in range(n):
        if draws == 0:
            yield source, []
            continue
        partners = rng.choice(n - 1, size=draws, replace=False)
        partners = partners + (partners >= source)  # skip the source's own index
        yield source, [(source, int(j)) for j in partners]


def _ranked(indices: np.ndarray, scores: np.ndarray, source: int, min_score: float | None) -> list[int]:
    """Neighbours by descending score, ties by index; the source itself and weak hits left out."""
    order = np.lexsort((indices, -scores))
    keep = []
    for position in order:
        j, score = int(indices[position]), float(scores[position])
        if j == source or j < 0 or (min_score is not None and score <= min_score):
            continue
        keep.append(j)
    return keep


def _sides(n: int, sources: Sequence[int] | None, targets: Sequence[int] | None) -> tuple[list[int], list[int]]:
    """The source and target pool indices: every sentence on both sides unless cross pairing names them."""
    if sources is None or targets is None:
        return list(range(n)), list(range(n))
    return list(sources), list(targets)


def propose_bm25(sentences: Sequence[str], budget: int, sources: Sequence[int] | None = None,
                 targets: Sequence[int] | None = None) -> Proposals:
    """BM25 neighbours (``bm25s``, English stop words removed); pairs with no word in common are not neighbours.

    Cross pairing indexes the ``targets`` and queries them with the ``sources``.
    """
    import bm25s

    src, tgt = _sides(len(sentences), sources, targets)
    k = min(candidates_wanted(budget) + 1, len(tgt))
    index_tokens = bm25s.tokenize([sentences[j] for j in tgt], stopwords="en", show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(index_tokens, show_progress=False)
    query_tokens = index_tokens if src == tgt else \
        bm25s.tokenize([sentences[i] for i in src], stopwords="en", show_progress=False)
    hits, scores = retriever.retrieve(query_tokens, k=k, show_progress=False, n_threads=1)
    tgt_array = np.asarray(tgt, dtype=np.int64)
    for row, source in enumerate(src):
        yield source, [(source, j) for j in _ranked(tgt_array[hits[row]], scores[row], source, 0.0)]


def embedding_encoder(encoder: str | None) -> tuple[Callable[[list[str]], np.ndarray], str]:
    """An encode function and its description: a dsembed student folder, or any base (alias, folder, hub id)."""
    from ..artifacts import STUDENT_CONFIG
    from ..bases import default_student_base, explained_load_errors, resolve_model_path

    name = encoder or default_student_base()
    if Path(name).is_dir() and (Path(name) / STUDENT_CONFIG).is_file():
        from ..student import DSEModel

        student = DSEModel.load(name, device="cpu")
        return (lambda texts: student.encode(texts, batch_size=64, show_progress_bar=False,
                                             normalize_embeddings=True)), f"student:{name}"
    from sentence_transformers import SentenceTransformer

    path = resolve_model_path(name)
    with explained_load_errors("embedding encoder", name):
        model = SentenceTransformer(path, device="cpu", local_files_only=True)
    return (lambda texts: model.encode(texts, batch_size=64, show_progress_bar=False,
                                       normalize_embeddings=True)), f"base:{name}"


def propose_embedding(sentences: Sequence[str], budget: int, encode: Callable[[list[str]], np.ndarray],
                      sources: Sequence[int] | None = None, targets: Sequence[int] | None = None) -> Proposals:
    """Nearest neighbours by cosine: FAISS inner product over L2-normalised embeddings (cross: of the targets)."""
    import faiss

    vectors = np.ascontiguousarray(np.asarray(encode(list(sentences)), dtype=np.float32))
    if vectors.ndim != 2 or len(vectors) != len(sentences):
        raise ConfigError(f"the encoder returned shape {vectors.shape} for {len(sentences)} sentences")
    faiss.normalize_L2(vectors)
    src, tgt = _sides(len(sentences), sources, targets)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors[tgt]))
    k = min(candidates_wanted(budget) + 1, len(tgt))
    scores, hits = index.search(np.ascontiguousarray(vectors[src]), k)
    tgt_array = np.asarray(tgt, dtype=np.int64)
    for row, source in enumerate(src):
        found = np.where(hits[row] >= 0, tgt_array[np.maximum(hits[row], 0)], -1)
        yield source, [(source, j) for j in _ranked(found, scores[row], source, None)]


def propose_swap(labelled: Sequence[tuple[int, int]]) -> Proposals:
    """The other order (b, a) of every labelled pair (a, b) whose sentences are both in the pool, grouped by a."""
    by_source: dict[int, list[tuple[int, int]]] = {}
    for a, b in labelled:
        by_source.setdefault(a, []).append((b, a))
    for source in sorted(by_source):
        yield source, by_source[source]
