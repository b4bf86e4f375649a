"""Ranking quality: MRR@10, nDCG@10 (graded) and Recall@1/10/100 from ranked candidate ids.

Values are kept per query (not only as means) so that seeds can be averaged, spreads shown and two methods
compared query by query on the same queries. nDCG uses linear gains and log2 discounts, exactly what
``sklearn.metrics.ndcg_score`` computes (the tests check the two agree); it is written out here because
sklearn wants a score for every candidate, and a ranking method only returns its top 100.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RANKING_METRICS = ("mrr@10", "ndcg@10", "recall@1", "recall@10", "recall@100")
DEPTH = 100  # the deepest cut-off any metric looks at: how many candidates a method must rank


def _relevant(gains: Mapping[Any, float], relevant_min: float) -> set[Any]:
    return {c for c, g in gains.items() if g >= relevant_min}


def reciprocal_rank(ranked: Sequence[Any], relevant: set[Any], k: int = 10) -> float:
    """1 / rank of the first relevant candidate within the top ``k``; 0 when none is there."""
    for position, candidate in enumerate(ranked[:k], start=1):
        if candidate in relevant:
            return 1.0 / position
    return 0.0


def recall_at(ranked: Sequence[Any], relevant: set[Any], k: int) -> float:
    """Share of the relevant candidates found in the top ``k`` (NaN for a query with nothing relevant)."""
    if not relevant:
        return math.nan
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def ndcg_at(ranked: Sequence[Any], gains: Mapping[Any, float], k: int = 10) -> float:
    """DCG@k / ideal DCG@k with linear gains and 1/log2(rank+1) discounts (sklearn's ``ndcg_score``)."""
    dcg = sum(gains.get(c, 0.0) / math.log2(p + 1) for p, c in enumerate(ranked[:k], start=1))
    ideal = sorted((g for g in gains.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(p + 1) for p, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else math.nan


def query_metrics(ranked: Sequence[Any], gains: Mapping[Any, float], relevant_min: float = 1.0) -> dict[str, float]:
    """Every metric of :data:`RANKING_METRICS` for one query.

    ``gains``: candidate id -> graded gain (unlisted candidates have gain 0); MRR and recall count as
    relevant the candidates whose gain is at least ``relevant_min``, nDCG uses the gains themselves.
    """
    relevant = _relevant(gains, relevant_min)
    return {"mrr@10": reciprocal_rank(ranked, relevant, 10), "ndcg@10": ndcg_at(ranked, gains, 10),
            "recall@1": recall_at(ranked, relevant, 1), "recall@10": recall_at(ranked, relevant, 10),
            "recall@100": recall_at(ranked, relevant, 100)}


@dataclass
class RankingResult:
    """Per-query values of each metric, in query order, and their means."""

    queries: list[int]
    per_query: dict[str, list[float]] = field(default_factory=dict)

    def means(self, subset: Sequence[int] | None = None) -> dict[str, float]:
        """Mean of each metric over all queries, or over the queries listed in ``subset`` (query ids)."""
        keep = None if subset is None else set(subset)
        rows = [i for i, q in enumerate(self.queries) if keep is None or q in keep]
        return {m: float(np.nanmean([v[i] for i in rows])) if rows else math.nan for m, v in self.per_query.items()}

    def to_dict(self, digits: int = 5) -> dict[str, Any]:
        return {"queries": list(self.queries),
                "per_query": {m: [round(x, digits) for x in v] for m, v in self.per_query.items()}}


def ranking_metrics(rankings: Mapping[int, Sequence[Any]], relevance: Mapping[int, Mapping[Any, float]],
                    relevant_min: float = 1.0) -> RankingResult:
    """Metrics of every ranked query (``rankings``: query id -> candidate ids, best first)."""
    queries = sorted(rankings)
    result = RankingResult(queries, {m: [] for m in RANKING_METRICS})
    for q in queries:
        for name, value in query_metrics(rankings[q], relevance[q], relevant_min).items():
            result.per_query[name].append(value)
    return result
