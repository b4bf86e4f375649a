"""Head scores of every pair within one set (dedup, clustering), tile by tile in bounded memory."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..student.head import HeadScorer
from ..utils import resolve_device
from .scoring import key_to_score, ranking_key, resolve_label, scorer_for

if TYPE_CHECKING:  # pragma: no cover
    from ..student.model import DSEModel

SYMMETRIZE = ("mean", "max", "min", "none")


@dataclass
class PairBlock:
    """Matching pairs found in one tile: row indices ``i < j`` (or ordered, unsymmetrised) and scores."""

    i: np.ndarray
    j: np.ndarray
    score: np.ndarray


def _tile_scores(scorer: HeadScorer, emb: np.ndarray, proj: np.ndarray, rows_q: slice, rows_c: slice, kind: str,
                 label: int, precision: str) -> np.ndarray:
    """User-facing scores ``s(i, j)`` of rows ``rows_q`` (first sentence) against ``rows_c``, on the scorer's device."""
    on = scorer.device
    logits = scorer.block_logits(torch.from_numpy(emb[rows_q]).to(on), torch.from_numpy(emb[rows_c]).to(on),
                                 torch.from_numpy(proj[rows_c]).to(on), precision)
    return key_to_score(ranking_key(logits, kind, label).cpu().numpy().astype(np.float64), kind)


def iter_all_pairs(model: DSEModel, sentences: Sequence[str] | np.ndarray, *, threshold: float,
                   symmetrize: str = "mean", tile: int = 512, label: int | str | None = None,
                   precision: str = "fp32", batch_size: int = 32,
                   show_progress_bar: bool = False, device: str | torch.device | None = None) -> Iterator[PairBlock]:
    """Head scores of every pair in a set, tile by tile in bounded memory; yields the pairs ``>= threshold``.

    The head is not symmetric, so ``symmetrize`` combines ``s(i, j)`` and ``s(j, i)`` (``mean``, ``max``,
    ``min``) into one score per unordered pair ``i < j``; ``none`` yields ordered pairs ``i != j``.
    ``device``: where the head scores the tiles (default the CPU); the embeddings stay in host memory.
    """
    if symmetrize not in SYMMETRIZE:
        raise ConfigError(f"symmetrize must be mean, max, min or none, got {symmetrize!r}")
    if tile < 1 or batch_size < 1:
        raise ConfigError(f"tile and batch_size must be >= 1, got {tile} and {batch_size}")
    emb = np.asarray(sentences, dtype=np.float32) if isinstance(sentences, np.ndarray) else \
        np.asarray(model.encode(list(sentences), batch_size=batch_size, show_progress_bar=show_progress_bar),
                   dtype=np.float32)
    kind = model.task.kind
    lab = resolve_label(model.task, label)
    scorer = scorer_for(model)
    proj = scorer.candidate_proj(emb)
    scorer = scorer.to(resolve_device(device or "cpu"))
    n = len(emb)
    starts = list(range(0, n, tile))
    pairs = [(a, b) for ai, a in enumerate(starts) for b in starts[ai:]]
    combine = {"mean": np.add, "max": np.maximum, "min": np.minimum}
    for a, b in tqdm(pairs, desc="all pairs", unit="tile", disable=not show_progress_bar):
        ra, rb = slice(a, min(a + tile, n)), slice(b, min(b + tile, n))
        s_ab = _tile_scores(scorer, emb, proj, ra, rb, kind, lab, precision)  # [|a|, |b|]
        s_ba = s_ab.T if a == b else _tile_scores(scorer, emb, proj, rb, ra, kind, lab, precision).T
        ii, jj = np.meshgrid(np.arange(ra.start, ra.stop), np.arange(rb.start, rb.stop), indexing="ij")
        if symmetrize == "none":
            for scores, (x, y) in ((s_ab, (ii, jj)), (s_ba, (jj, ii))):
                keep = (scores >= threshold) & (x != y)
                if a == b and scores is s_ba:
                    continue
                yield PairBlock(x[keep], y[keep], scores[keep].astype(np.float32))
            continue
        scores = combine[symmetrize](s_ab, s_ba)
        if symmetrize == "mean":
            scores = scores / 2.0
        keep = (scores >= threshold) & (ii < jj)
        yield PairBlock(ii[keep], jj[keep], scores[keep].astype(np.float32))

