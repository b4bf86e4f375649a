"""Portable teacher-logits bundles: round trip, ensembles, subsets, incomplete bundles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import MRPC, STSB, HashTeacher, synthetic_pairs
from dsembed.data import PairDataset
from dsembed.errors import StaleLogitsError
from dsembed.teacher import LogitsBundle, Teacher, load_logits_bundles, write_logits_bundle


def test_bundle_round_trip_with_real_teacher(binary_teacher: Path, mrpc_train: PairDataset, mrpc_dev: PairDataset,
                                              tmp_path: Path) -> None:
    teacher = Teacher(binary_teacher, MRPC, device="cpu")
    written = write_logits_bundle(teacher, mrpc_train, mrpc_dev, tmp_path / "b", show_progress_bar=False,
                                  extra_info={"device": "test"})
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["dev.safetensors", "teacher.json",
                                                                  "train.safetensors"]  # no cache left behind
    loaded = LogitsBundle.load(tmp_path / "b")
    np.testing.assert_allclose(loaded.train.logits, teacher.predict_logits(mrpc_train.pairs()), atol=1e-5)
    np.testing.assert_allclose(loaded.dev.logits, written.dev.logits)
    assert loaded.info["teacher_fingerprint"] == teacher.fingerprint() == loaded.train.teacher_fingerprint
    assert loaded.info["device"] == "test" and loaded.info["task"] == "mrpc"
    loaded.check_matches(mrpc_train, mrpc_dev)
    with pytest.raises(StaleLogitsError, match="dev"):
        loaded.check_matches(mrpc_train, mrpc_train)  # dev logits against other pairs


def test_ensemble_of_bundles_is_the_mean_and_checks_its_members(tmp_path: Path) -> None:
    train, dev = synthetic_pairs(MRPC, 12, seed=0), synthetic_pairs(MRPC, 6, seed=1)
    a = write_logits_bundle(HashTeacher(MRPC, 0.0), train, dev, tmp_path / "a", show_progress_bar=False)
    b = write_logits_bundle(HashTeacher(MRPC, 2.0), train, dev, tmp_path / "b", show_progress_bar=False)
    both = load_logits_bundles(f"{tmp_path / 'a'},{tmp_path / 'b'}")
    np.testing.assert_allclose(both.train.logits, (a.train.logits + b.train.logits) / 2)
    np.testing.assert_allclose(both.dev.logits, a.dev.logits + 1.0)
    assert both.train.teacher_fingerprint.startswith("ensemble:")
    assert both.train.teacher_fingerprint == load_logits_bundles(f"{tmp_path / 'b'},{tmp_path / 'a'}").train \
        .teacher_fingerprint  # order does not matter for a mean
    assert len(both.info["members"]) == 2
    both.check_matches(train, dev)

    write_logits_bundle(HashTeacher(MRPC), synthetic_pairs(MRPC, 12, seed=5), dev, tmp_path / "c",
                        show_progress_bar=False)
    with pytest.raises(StaleLogitsError, match="different train pairs"):
        load_logits_bundles(f"{tmp_path / 'a'},{tmp_path / 'c'}")
    stsb = write_logits_bundle(HashTeacher(STSB), synthetic_pairs(STSB, 12, seed=0),
                               synthetic_pairs(STSB, 6, seed=1), tmp_path / "s", show_progress_bar=False)
    assert stsb.train.logits.shape == (12, 1)
    with pytest.raises(ValueError, match="task stsb"):
        load_logits_bundles(f"{tmp_path / 'a'},{tmp_path / 's'}")


def test_bundle_serves_any_subset_of_its_pairs_in_the_data_order(tmp_path: Path) -> None:
    train, dev = synthetic_pairs(MRPC, 30, seed=0), synthetic_pairs(MRPC, 10, seed=1)
    bundle = write_logits_bundle(HashTeacher(MRPC, 1.5), train, dev, tmp_path / "b", show_progress_bar=False)
    rows = np.array([17, 3, 25, 3, 0])  # reordered, with a repeat
    part = train.select(rows, source="part")
    aligned = bundle.aligned_to(part, dev)
    np.testing.assert_array_equal(aligned.train.logits, bundle.train.logits[rows])
    np.testing.assert_array_equal(aligned.train.pair_hashes, part.pair_hashes())
    assert aligned.train.pairs_fingerprint == part.fingerprint()
    assert aligned.train.teacher_fingerprint == bundle.train.teacher_fingerprint
    assert aligned.dev is bundle.dev  # same pairs, same order: nothing copied
    aligned.check_matches(part, dev)

    stranger = synthetic_pairs(MRPC, 3, seed=9)
    mixed = PairDataset([*part.sentence1, *stranger.sentence1], [*part.sentence2, *stranger.sentence2],
                        np.concatenate([part.labels, stranger.labels]))
    with pytest.raises(StaleLogitsError, match="3 of 8 were never scored, first at row 5"):
        bundle.aligned_to(mixed, dev, source="b")


def test_incomplete_bundle_names_what_is_missing(tmp_path: Path) -> None:
    train, dev = synthetic_pairs(MRPC, 8), synthetic_pairs(MRPC, 4, seed=1)
    write_logits_bundle(HashTeacher(MRPC), train, dev, tmp_path / "b", show_progress_bar=False)
    (tmp_path / "b" / "dev.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="missing dev.safetensors"):
        LogitsBundle.load(tmp_path / "b")
    with pytest.raises(ValueError, match="no teacher-logits bundle"):
        load_logits_bundles(" , ")
