"""Shared inputs of the retrieval tests: the sentences, the reference store, the brute-force scores.

Each test module defines its own module-scoped fixtures from these (a conftest.py here would take
``conftest``'s place in ``sys.modules`` and break the root tests' ``from conftest import ...``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from _tiny import sentences
from dsembed.retrieval import CandidateStore, build_store

CANDIDATES = sentences(150, seed=1)
QUERIES = ["the dog runs", "a woman reads a book", "the old city river"]


def reference_store(model, workdir: Path) -> CandidateStore:  # noqa: ANN001
    """The store the tests share: every candidate, several chunks, all three copies and a cosine index."""
    return build_store(model, CANDIDATES, workdir / "store", chunk_size=40, show_progress_bar=False,
                       copies=("bfloat16", "float16", "int8"), ann="Flat")


def brute_force(model, query: str, texts: list[str]) -> np.ndarray:  # noqa: ANN001
    """Scores of the plain head on every (query, candidate) pair."""
    return np.asarray(model.predict([(query, t) for t in texts]))
