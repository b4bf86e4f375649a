"""Teacher scoring of mined pairs: the per-chunk store (resume, superset reuse), bundles, balancing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import MRPC, STSB, HashTeacher, synthetic_pairs
from dsembed.artifacts import MINED_INFO, MINED_PAIRS
from dsembed.augment import (
    MinedPairs,
    ScoredPairs,
    balance_by_bands,
    load_mined_bundle,
    mine_pairs,
    score_mined,
    unscored_pairs,
    write_mined_bundle,
)
from dsembed.errors import ConfigError, StaleLogitsError


class CountingTeacher(HashTeacher):
    """The conftest stand-in teacher, counting the pairs it is asked to score."""

    def __init__(self, task, offset: float = 0.0) -> None:  # noqa: ANN001
        super().__init__(task, offset)
        self.scored = 0

    def predict_logits(self, pairs, batch_size: int = 64, show_progress_bar=None) -> np.ndarray:  # noqa: ANN001
        self.scored += len(pairs)
        return super().predict_logits(pairs, batch_size, show_progress_bar)


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def mined() -> MinedPairs:
    return mine_pairs(synthetic_pairs(MRPC, 30, seed=5), strategies=["random", "bm25", "swap"], per_sentence=2)


def _expected(mined: MinedPairs, task=MRPC) -> np.ndarray:  # noqa: ANN001
    return HashTeacher(task).predict_logits(mined.pairs.pairs())


def test_scoring_gives_the_teachers_logits_row_by_row(mined: MinedPairs, tmp_path: Path) -> None:
    scored = score_mined(HashTeacher(MRPC), mined, cache=tmp_path, chunk_size=16)
    np.testing.assert_array_equal(scored.teacher_logits, _expected(mined))
    assert scored.teacher_logits.shape == (len(mined), MRPC.num_labels) and scored.strategy == mined.strategy
    assert scored.record["scoring"]["scored_now"] == len(mined)


def test_an_interrupted_scoring_resumes_from_its_committed_chunks(mined: MinedPairs, tmp_path: Path) -> None:
    teacher = CountingTeacher(MRPC)

    def stop_after_two(done: int, total: int) -> None:
        if done == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        score_mined(teacher, mined, cache=tmp_path, chunk_size=16, on_chunk=stop_after_two)
    assert teacher.scored == 32
    assert len(unscored_pairs(teacher.fingerprint(), mined, cache=tmp_path)) == len(mined) - 32
    again = CountingTeacher(MRPC)
    scored = score_mined(again, mined, cache=tmp_path, chunk_size=16)
    assert again.scored == len(mined) - 32  # the two committed chunks were not scored again
    assert scored.record["scoring"]["reused_from_store"] == 32
    np.testing.assert_array_equal(scored.teacher_logits, _expected(mined))


def test_a_superset_scores_only_the_new_pairs_and_another_teacher_scores_all(mined: MinedPairs,
                                                                            tmp_path: Path) -> None:
    first_half = mined.select(np.arange(len(mined) // 2))
    score_mined(HashTeacher(MRPC), first_half, cache=tmp_path)
    teacher = CountingTeacher(MRPC)
    scored = score_mined(teacher, mined, cache=tmp_path)
    assert teacher.scored == len(mined) - len(first_half)
    np.testing.assert_array_equal(scored.teacher_logits, _expected(mined))
    other = CountingTeacher(MRPC, offset=1.0)  # another fingerprint: nothing of the first teacher is reused
    score_mined(other, first_half, cache=tmp_path)
    assert other.scored == len(first_half)


def test_bundle_round_trip_and_mismatch_errors(mined: MinedPairs, tmp_path: Path) -> None:
    scored = score_mined(HashTeacher(MRPC), mined, cache=tmp_path / "store")
    folder = write_mined_bundle(scored, tmp_path / "bundle")
    info = json.loads((folder / MINED_INFO).read_text())
    assert info["num_labels"] == 2 and info["task"] == "mrpc" and len(info["pair_hashes"]) == len(mined)
    assert info["pairs_fingerprint"] == mined.pairs.fingerprint() and info["teacher_fingerprint"]
    assert info["n_pairs"] == len(mined)
    back = load_mined_bundle(folder, mined)
    np.testing.assert_array_equal(back.teacher_logits, scored.teacher_logits)
    assert back.pairs.pairs() == mined.pairs.pairs() and back.strategy == mined.strategy
    # only the logits came back: the pairs come from the mined file, and are checked against the bundle
    (folder / MINED_PAIRS).unlink()
    np.testing.assert_array_equal(load_mined_bundle(folder, mined).teacher_logits, scored.teacher_logits)
    with pytest.raises(StaleLogitsError, match="do not match the pairs"):
        load_mined_bundle(folder, mined.select(np.arange(len(mined))[::-1]))
    with pytest.raises(StaleLogitsError, match="cover"):
        load_mined_bundle(folder, mined.select(np.arange(len(mined) - 1)))


def test_select_takes_a_mask_or_indices(mined: MinedPairs, tmp_path: Path) -> None:
    scored = score_mined(HashTeacher(MRPC), mined, cache=tmp_path)
    mask = np.arange(len(scored)) % 3 == 0
    picked = scored.select(mask)
    assert len(picked) == mask.sum() and picked.pairs.pairs() == scored.pairs.select(np.flatnonzero(mask)).pairs()
    np.testing.assert_array_equal(scored.select([4, 1]).teacher_logits, scored.teacher_logits[[4, 1]])
    with pytest.raises(ConfigError):
        scored.select(mask[:-1])


def _scored(n: int, logits: np.ndarray, task) -> ScoredPairs:  # noqa: ANN001
    data = synthetic_pairs(task, n, seed=11)
    data.labels = None
    return ScoredPairs(data, ["random"] * n, logits, "made-up", {}, "fp", task.name)


def test_balancing_evens_out_the_binary_score_bands() -> None:
    rng = np.random.default_rng(0)
    diff = np.concatenate([rng.uniform(-6, -2.5, 80), rng.uniform(-0.3, 0.3, 12), rng.uniform(2.5, 6, 8)])
    logits = np.stack([np.zeros_like(diff), diff], axis=1).astype(np.float32)  # P(pos) = sigmoid(diff)
    balanced = balance_by_bands(_scored(100, logits, MRPC), MRPC, bands=5, seed=1)
    record = balanced.record["balance"]
    assert record["before"] == [80, 0, 12, 0, 8] and record["after"] == [8, 0, 8, 0, 8]
    again = balance_by_bands(_scored(100, logits, MRPC), MRPC, bands=5, seed=1)
    assert again.pairs.pairs() == balanced.pairs.pairs()
    explicit = balance_by_bands(_scored(100, logits, MRPC), MRPC, bands=[0, 0.5, 1], per_band=10)
    assert explicit.record["balance"]["after"] == [10, 10]


def test_balancing_a_regression_task_bands_the_predicted_score() -> None:
    scores = np.linspace(0, 5, 50, dtype=np.float32)[:, None]
    balanced = balance_by_bands(_scored(50, scores, STSB), STSB, bands=[0, 1, 5], per_band=5)
    assert balanced.record["balance"]["before"] == [10, 40] and balanced.record["balance"]["after"] == [5, 5]
    with pytest.raises(ConfigError, match="increasing"):
        balance_by_bands(_scored(50, scores, STSB), STSB, bands=[1, 0])


@pytest.mark.slow  # the child process's imports (torch, transformers) take ~15 s on a busy 2-core machine
def test_scoring_killed_with_sigkill_resumes_where_it_stopped(mined: MinedPairs, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    mined_file = mined.save(tmp_path / "mined.jsonl")
    child = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_slow_scoring.py")), str(mined_file),
                              str(tmp_path / "store")], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("chunk 3/"):
            break
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    teacher = CountingTeacher(MRPC)
    left = len(unscored_pairs(teacher.fingerprint(), mined, cache=tmp_path / "store"))
    assert left <= len(mined) - 24
    scored = score_mined(teacher, mined, cache=tmp_path / "store", chunk_size=8)
    assert teacher.scored == left
    np.testing.assert_array_equal(scored.teacher_logits, _expected(mined))


def test_the_student_side_reads_the_bundle(mined: MinedPairs, tmp_path: Path) -> None:
    """``distill --mined`` reads bundles with ``dsembed.augment.load_mined_rows``: same rows, logits, strategies."""
    from dsembed.augment import load_mined_rows

    scored = score_mined(HashTeacher(MRPC), mined, cache=tmp_path / "store")
    rows = load_mined_rows(write_mined_bundle(scored, tmp_path / "bundle"), MRPC)
    assert rows.pairs.pairs() == mined.pairs.pairs() and rows.strategy == mined.strategy
    np.testing.assert_array_equal(rows.teacher_logits, scored.teacher_logits)
    assert rows.teacher == scored.teacher


def test_restricting_keeps_the_named_strategies_and_nested_budgets(mined: MinedPairs, tmp_path: Path) -> None:
    """Per-strategy rows and ×3/×10 budgets come from one bundle: a smaller budget is a subset of a larger one."""
    from dsembed.augment import load_mined_rows

    scored = score_mined(HashTeacher(MRPC), mined, cache=tmp_path / "store")
    bm25 = scored.restrict(["bm25"])
    assert len(bm25) == mined.strategy.count("bm25") > 0 and set(bm25.strategy) == {"bm25"}
    small, large = scored.restrict(max_pairs=5), scored.restrict(max_pairs=12)
    assert len(small) == 5 and len(large) == 12
    assert set(small.pairs.pairs()) < set(large.pairs.pairs())  # nested, whatever the order of the bundle
    reordered = scored.select(np.arange(len(scored))[::-1])
    assert set(reordered.restrict(max_pairs=5).pairs.pairs()) == set(small.pairs.pairs())  # no seed, no order
    index = {pair: i for i, pair in enumerate(scored.pairs.pairs())}
    rows = [index[pair] for pair in large.pairs.pairs()]
    assert rows == sorted(rows)  # bundle order is kept
    np.testing.assert_array_equal(large.teacher_logits, scored.teacher_logits[rows])
    both = scored.restrict(["random", "swap"], max_pairs=4)
    assert len(both) == 4 and set(both.strategy) <= {"random", "swap"}
    assert len(scored.restrict(max_pairs=10 * len(scored))) == len(scored)
    with pytest.raises(ConfigError, match="no pairs of strategy embedding .*holds bm25, random, swap"):
        scored.restrict(["embedding"])
    with pytest.raises(ConfigError, match="at least one pair"):
        scored.restrict(max_pairs=0)
    folder = write_mined_bundle(scored, tmp_path / "bundle")
    picked = load_mined_rows(folder, MRPC, strategies=["swap"], max_pairs=3)
    assert len(picked) == 3 and set(picked.strategy) == {"swap"}
    with pytest.raises(ConfigError, match="mined for task 'mrpc', not 'stsb'"):
        load_mined_rows(folder, STSB)
