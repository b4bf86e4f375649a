"""Shared inputs of the retrieval tests: the candidate and query sentences, and the brute-force reference."""

from __future__ import annotations

import numpy as np

from _tiny import sentences

CANDIDATES = sentences(150, seed=1)
QUERIES = ["the dog runs", "a woman reads a book", "the old city river"]


def brute_force(model, query: str, texts: list[str]) -> np.ndarray:  # noqa: ANN001
    """Scores of the plain head on every (query, candidate) pair."""
    return np.asarray(model.predict([(query, t) for t in texts]))
