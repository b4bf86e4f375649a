"""Ranking metrics against values worked out by hand, and nDCG against sklearn's ndcg_score."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from dsembed.evaluation.ranking import RANKING_METRICS, ndcg_at, query_metrics, ranking_metrics


def test_binary_query_by_hand() -> None:
    # relevant: c3 (rank 2) and c9 (rank 12, outside the top 10)
    ranked = ["c1", "c3", "c4", "c5", "c6", "c7", "c8", "c10", "c11", "c12", "c13", "c9"]
    m = query_metrics(ranked, {"c3": 1.0, "c9": 1.0})
    assert m["mrr@10"] == pytest.approx(0.5)
    assert m["recall@1"] == 0.0
    assert m["recall@10"] == pytest.approx(0.5)
    assert m["recall@100"] == pytest.approx(1.0)
    # DCG@10 = 1/log2(3); ideal DCG@10 = 1/log2(2) + 1/log2(3)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))


def test_graded_ndcg_by_hand() -> None:
    # gains 3 at rank 1, 5 at rank 3; ideal order 5, 3
    dcg = 3 / math.log2(2) + 5 / math.log2(4)
    idcg = 5 / math.log2(2) + 3 / math.log2(3)
    assert ndcg_at(["a", "x", "b"], {"a": 3.0, "b": 5.0}) == pytest.approx(dcg / idcg)
    # MRR/recall only count gains at or above relevant_min: "a" (3) is not relevant at 4
    m = query_metrics(["a", "x", "b"], {"a": 3.0, "b": 5.0}, relevant_min=4.0)
    assert m["mrr@10"] == pytest.approx(1 / 3)
    assert m["recall@1"] == 0.0 and m["recall@10"] == 1.0


def test_nothing_found_scores_zero() -> None:
    m = query_metrics(["x", "y"], {"a": 1.0})
    assert m == {"mrr@10": 0.0, "ndcg@10": 0.0, "recall@1": 0.0, "recall@10": 0.0, "recall@100": 0.0}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ndcg_agrees_with_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 40
    gains = rng.choice([0.0, 0.0, 0.0, 1.0, 2.5, 4.0, 5.0], size=n)
    scores = rng.permutation(n).astype(float)  # no ties: sklearn averages tied gains
    ranked = [int(i) for i in np.argsort(-scores)]
    mine = ndcg_at(ranked, {i: float(g) for i, g in enumerate(gains) if g > 0}, k=10)
    assert mine == pytest.approx(ndcg_score(gains[None, :], scores[None, :], k=10))


def test_per_query_values_and_subset_means() -> None:
    rankings = {0: ["a", "b"], 1: ["b", "a"], 2: ["z"]}
    relevance = {0: {"a": 1.0}, 1: {"a": 1.0}, 2: {"a": 1.0}}
    result = ranking_metrics(rankings, relevance)
    assert set(result.per_query) == set(RANKING_METRICS)
    assert result.per_query["mrr@10"] == [1.0, 0.5, 0.0]
    assert result.means()["mrr@10"] == pytest.approx(0.5)
    assert result.means([0, 1])["mrr@10"] == pytest.approx(0.75)
    assert result.to_dict()["queries"] == [0, 1, 2]
