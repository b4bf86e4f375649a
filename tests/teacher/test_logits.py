"""The teacher-logits cache: computed once, resumed from chunks, refused when stale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import MRPC, NLI3, synthetic_pairs
from dsembed.data import PairDataset
from dsembed.errors import StaleLogitsError
from dsembed.teacher import Teacher
from dsembed.teacher.logits import TeacherLogits, compute_teacher_logits, logits_cache_path

SHORT_PAIRS = [("A man is playing a guitar.", "A man plays guitar."), ("The cat sleeps.", "Stocks fell sharply."),
               ("Two kids run on the beach.", "Children are running.")]


# ---- teacher logits cache ---------------------------------------------------------------------------


class _Counting:
    """Wraps ``teacher.predict_logits``: counts calls and pairs, optionally fails on the n-th call."""

    def __init__(self, teacher: Teacher, fail_on: int | None = None) -> None:
        self.real = teacher.predict_logits
        self.calls = 0
        self.pairs = 0
        self.fail_on = fail_on

    def __call__(self, pairs, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN204
        self.calls += 1
        if self.fail_on is not None and self.calls == self.fail_on:
            raise KeyboardInterrupt("simulated interruption")
        self.pairs += len(pairs)
        return self.real(pairs, *args, **kwargs)


@pytest.fixture()
def teacher(binary_teacher: Path) -> Teacher:
    return Teacher(binary_teacher, MRPC, device="cpu")


def test_compute_teacher_logits_caches(teacher: Teacher, mrpc_train: PairDataset, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    counter = _Counting(teacher)
    monkeypatch.setattr(teacher, "predict_logits", counter)
    first = compute_teacher_logits(teacher, mrpc_train, cache=tmp_path, show_progress_bar=False)
    assert counter.calls == 1 and counter.pairs == len(mrpc_train)
    np.testing.assert_allclose(first.logits, counter.real(mrpc_train.pairs()), atol=1e-6)
    assert first.teacher_fingerprint == teacher.fingerprint()
    assert first.pairs_fingerprint == mrpc_train.fingerprint()
    np.testing.assert_array_equal(first.pair_hashes, mrpc_train.pair_hashes())
    assert (logits_cache_path(teacher.fingerprint(), mrpc_train, tmp_path) / "logits.safetensors").is_file()

    second = compute_teacher_logits(teacher, mrpc_train, cache=tmp_path, show_progress_bar=False)
    assert counter.calls == 1  # served from the cache
    np.testing.assert_array_equal(second.logits, first.logits)

    compute_teacher_logits(teacher, mrpc_train, cache=tmp_path, show_progress_bar=False, use_cache=False)
    assert counter.calls == 2

    other = mrpc_train.subset(20, seed=5)
    compute_teacher_logits(teacher, other, cache=tmp_path, show_progress_bar=False)
    assert counter.calls == 3 and counter.pairs == 2 * len(mrpc_train) + 20  # other pairs, other cache key


def test_compute_teacher_logits_resumes_from_chunks(teacher: Teacher, mrpc_train: PairDataset, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    expected = teacher.predict_logits(mrpc_train.pairs())
    folder = logits_cache_path(teacher.fingerprint(), mrpc_train, tmp_path)
    failing = _Counting(teacher, fail_on=2)
    monkeypatch.setattr(teacher, "predict_logits", failing)
    with pytest.raises(KeyboardInterrupt):
        compute_teacher_logits(teacher, mrpc_train, cache=tmp_path, chunk_size=8, show_progress_bar=False)
    assert sorted(p.name for p in folder.glob("chunk_*.npy")) == ["chunk_000000_8.npy"]
    assert not (folder / "logits.safetensors").exists()

    resumed = _Counting(teacher)
    monkeypatch.setattr(teacher, "predict_logits", resumed)
    result = compute_teacher_logits(teacher, mrpc_train, cache=tmp_path, chunk_size=8, show_progress_bar=False)
    assert resumed.calls == 3 and resumed.pairs == len(mrpc_train) - 8  # the finished chunk is not redone
    np.testing.assert_allclose(result.logits, expected, atol=1e-5)
    assert not list(folder.glob("chunk_*.npy"))  # chunks are folded into the final file
    assert (folder / "logits.safetensors").is_file()


def test_check_matches_refuses_stale_logits(teacher: Teacher, mrpc_train: PairDataset, tmp_path: Path) -> None:
    stored = compute_teacher_logits(teacher, mrpc_train, cache=tmp_path, show_progress_bar=False)
    stored.check_matches(mrpc_train, teacher.fingerprint())  # fine
    changed = PairDataset(list(mrpc_train.sentence1), list(mrpc_train.sentence2), mrpc_train.labels)
    changed.sentence2[5] = changed.sentence2[5] + " (edited)"
    with pytest.raises(StaleLogitsError, match="1 differ, first at row 5"):
        stored.check_matches(changed)
    swapped = PairDataset(mrpc_train.sentence2, mrpc_train.sentence1, mrpc_train.labels)
    with pytest.raises(StaleLogitsError, match="do not match"):
        stored.check_matches(swapped)
    with pytest.raises(StaleLogitsError, match="cover 32 pairs, the data has 31"):
        stored.check_matches(mrpc_train.select(range(31)))
    with pytest.raises(StaleLogitsError, match="another teacher"):
        stored.check_matches(mrpc_train, teacher_fingerprint="someone-else:len32")
    # labels are not part of the key: relabelled pairs still match
    stored.check_matches(PairDataset(mrpc_train.sentence1, mrpc_train.sentence2, 1 - mrpc_train.labels))


def test_teacher_logits_file_round_trip(tmp_path: Path) -> None:
    data = synthetic_pairs(NLI3, 6)
    logits = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    original = TeacherLogits(logits, data.pair_hashes(), "fp-teacher", data.fingerprint(), "nli3")
    path = tmp_path / "sub" / "logits.safetensors"
    original.save(path)
    loaded = TeacherLogits.load(path)
    np.testing.assert_array_equal(loaded.logits, logits)
    np.testing.assert_array_equal(loaded.pair_hashes, data.pair_hashes())
    assert loaded.pair_hashes.dtype == np.uint64
    assert (loaded.teacher_fingerprint, loaded.pairs_fingerprint, loaded.task) == \
        ("fp-teacher", data.fingerprint(), "nli3")
    loaded.check_matches(data, "fp-teacher")
    assert not list(path.parent.glob(".*tmp"))

    from safetensors.numpy import save_file as save_np

    save_np({"x": np.zeros(2, np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a dsembed teacher-logits file"):
        TeacherLogits.load(tmp_path / "other.safetensors")
