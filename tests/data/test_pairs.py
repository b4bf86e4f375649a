"""Tests for dsembed.data.pairs: PairDataset validation, fingerprint, per-pair hashes and subsets."""

from __future__ import annotations

import numpy as np
import pytest

from dsembed.data import PairDataset
from dsembed.errors import ConfigError


def make(n: int = 50) -> PairDataset:
    return PairDataset([f"first {i}" for i in range(n)], [f"second {i}" for i in range(n)],
                       np.arange(n, dtype=np.float32) % 2, source="mem")


def test_fingerprint() -> None:
    a, b = make(), make()
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 64
    b.sentence2[17] = "second 17 "
    assert a.fingerprint() != b.fingerprint()
    c = make()
    c.labels = np.zeros(len(c), dtype=np.float32)
    assert c.fingerprint() == a.fingerprint()  # labels are not part of it
    # boundaries between fields are unambiguous
    ab = PairDataset(["ab"], ["c"], None)
    a_bc = PairDataset(["a"], ["bc"], None)
    assert ab.fingerprint() != a_bc.fingerprint()
    assert PairDataset(["a", "b"], ["c", "d"], None).fingerprint() != \
        PairDataset(["b", "a"], ["d", "c"], None).fingerprint()
    assert PairDataset([], [], None).fingerprint() != PairDataset([""], [""], None).fingerprint()


def test_pair_hashes() -> None:
    a, b = make(), make()
    ha = a.pair_hashes()
    assert ha.dtype == np.uint64
    assert ha.shape == (len(a),)
    assert len(set(ha.tolist())) == len(a)
    b.sentence1[3] = "changed"
    diff = np.nonzero(ha != b.pair_hashes())[0].tolist()
    assert diff == [3]
    left, right = PairDataset(["ab"], ["c"], None), PairDataset(["a"], ["bc"], None)
    assert left.pair_hashes()[0] != right.pair_hashes()[0]


def test_subset() -> None:
    ds = make(50)
    assert ds.subset(None) is ds
    assert ds.subset(50) is ds
    assert ds.subset(80) is ds
    s1, s2 = ds.subset(10, seed=3), ds.subset(10, seed=3)
    assert len(s1) == 10
    assert s1.pairs() == s2.pairs()
    assert s1.fingerprint() == s2.fingerprint()
    assert ds.subset(10, seed=4).pairs() != s1.pairs()
    idx = [int(s.split()[1]) for s in s1.sentence1]
    assert idx == sorted(idx)  # file order kept
    assert [int(s.split()[1]) for s in s1.sentence2] == idx
    assert s1.labels.tolist() == [float(i % 2) for i in idx]
    assert len(ds.subset(0)) == 0
    with pytest.raises(ValueError) as info:
        ds.subset(-1)
    assert isinstance(info.value, ConfigError)


def test_pair_dataset_validation_and_pairs() -> None:
    with pytest.raises(ValueError) as info:
        PairDataset(["a"], ["b", "c"], None)
    assert isinstance(info.value, ConfigError)
    with pytest.raises(ValueError) as info:
        PairDataset(["a"], ["b"], np.zeros(2))
    assert isinstance(info.value, ConfigError)
    ds = PairDataset(["a"], ["b"], [1])  # type: ignore[arg-type]
    assert ds.labels.dtype == np.float32
    assert ds.pairs() == [("a", "b")]
    assert len(ds) == 1
