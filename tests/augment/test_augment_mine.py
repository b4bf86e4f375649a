"""Pair mining: each strategy's budget and rules, determinism, de-duplication, and the dev/test exclusion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import MRPC, synthetic_pairs
from dsembed.augment import MinedPairs, mine_pairs, read_sentence_pool
from dsembed.augment.pool import normalise
from dsembed.data import PairDataset
from dsembed.errors import ConfigError, DataFormatError

CHEAP = ("random", "bm25", "swap")  # the embedding strategy has its own (real-weights) test


@pytest.fixture(scope="module")
def train() -> PairDataset:
    return synthetic_pairs(MRPC, 40, seed=3)


def _pairs(mined: MinedPairs) -> list[tuple[str, str]]:
    return list(zip(mined.pairs.sentence1, mined.pairs.sentence2, strict=True))


def _check_rules(mined: MinedPairs, train: PairDataset) -> None:
    """No self pair, no labelled pair (swap: not in the same order), no repeat within the mined set."""
    labelled = {(normalise(a), normalise(b)) for a, b in train.pairs()}
    seen_ordered: set[tuple[str, str]] = set()
    seen_any: set[tuple[str, str]] = set()
    for (a, b), strategy in zip(_pairs(mined), mined.strategy, strict=True):
        key = (normalise(a), normalise(b))
        assert key[0] != key[1]
        if strategy == "swap":
            assert key not in labelled and key not in seen_ordered
        else:
            assert key not in labelled and key[::-1] not in labelled and key not in seen_any
        seen_ordered.add(key)
        seen_any.update((key, key[::-1]))


@pytest.mark.parametrize("strategy", ["random", "bm25"])
def test_neighbour_strategies_fill_their_budget_per_sentence(train: PairDataset, strategy: str) -> None:
    mined = mine_pairs(train, strategies=[strategy], per_sentence=3)
    counts = mined.record["per_strategy"][strategy]
    pool = mined.record["pool_size"]
    assert counts["sources"] == pool and counts["requested"] == 3 * pool
    assert counts["kept"] == len(mined) == mined.strategy.count(strategy)
    assert len(mined) >= 0.8 * 3 * pool  # short only where dedupe/no word overlap leaves too few partners
    per_source = {}
    for a, _ in _pairs(mined):
        per_source[a] = per_source.get(a, 0) + 1
    assert max(per_source.values()) <= 3
    assert mined.pairs.labels is None
    _check_rules(mined, train)


def test_swap_gives_the_other_order_of_labelled_pairs(train: PairDataset) -> None:
    mined = mine_pairs(train, strategies=["swap"], per_sentence=1)
    assert set(_pairs(mined)) == {(b, a) for a, b in train.pairs()}  # the synthetic sentences are distinct
    _check_rules(mined, train)


def test_all_strategies_together_obey_dedupe_and_keep_their_order(train: PairDataset) -> None:
    mined = mine_pairs(train, strategies=CHEAP, per_sentence=2)
    _check_rules(mined, train)
    order = [s for i, s in enumerate(mined.strategy) if i == 0 or mined.strategy[i - 1] != s]
    assert order == list(CHEAP)
    assert sum(mined.record["kept_per_strategy"].values()) == len(mined)


def test_a_later_strategy_never_repeats_an_earlier_ones_pair() -> None:
    base = PairDataset(["alpha beta gamma", "alpha beta delta"], ["omega", "sigma"], np.array([1, 0], np.float32))
    mined = mine_pairs(base, strategies=["bm25", "random"], per_sentence=3, seed=1)
    _check_rules(mined, base)
    dropped = mined.record["per_strategy"]["random"]["dropped"]
    assert dropped["duplicate"] + dropped["labelled"] > 0


def test_mining_is_deterministic_given_the_seed(train: PairDataset) -> None:
    first = mine_pairs(train, strategies=CHEAP, per_sentence=2, seed=7)
    again = mine_pairs(train, strategies=CHEAP, per_sentence=2, seed=7)
    other = mine_pairs(train, strategies=CHEAP, per_sentence=2, seed=8)
    assert _pairs(first) == _pairs(again) and first.strategy == again.strategy
    assert _pairs(first) != _pairs(other)


def test_budget_per_strategy_and_max_pairs(train: PairDataset) -> None:
    mined = mine_pairs(train, strategies=["random", "swap"], per_sentence={"random": 1, "swap": 0})
    assert set(mined.strategy) == {"random"}
    capped = mine_pairs(train, strategies=["random", "bm25"], per_sentence=2, max_pairs=25)
    assert len(capped) == 25 and set(capped.strategy) == {"random", "bm25"}
    assert set(_pairs(capped)) <= set(_pairs(mine_pairs(train, strategies=["random", "bm25"], per_sentence=2)))
    with pytest.raises(ConfigError, match="unknown"):
        mine_pairs(train, strategies=["nearest"])
    with pytest.raises(ConfigError, match="not among"):
        mine_pairs(train, strategies=["random"], per_sentence={"bm25": 2})


def _qa_pairs(n_questions: int = 12) -> PairDataset:
    """Questions (sentence1) and answer sentences (sentence2) that share words within a topic."""
    topics = ["river boat water", "cake sugar oven", "piano music keys", "planet orbit star"]
    s1, s2, y = [], [], []
    for q in range(n_questions):
        words = topics[q % len(topics)]
        s1.append(f"which {words} question number {q}?")
        s2.append(f"the answer about {words} is sentence {q}.")
        y.append(float(q % 2))
    return PairDataset(s1, s2, np.array(y, np.float32), source="qa-mini")


@pytest.mark.parametrize("strategy", ["random", "bm25"])
def test_cross_pairing_joins_a_sentence1_with_a_sentence2(strategy: str) -> None:
    qa = _qa_pairs()
    mined = mine_pairs(qa, strategies=[strategy], per_sentence=2, pairing="cross", seed=3,
                       extra_sentences=["an extra passage about river water"])
    questions, answers = set(qa.sentence1), {*qa.sentence2, "an extra passage about river water"}
    assert len(mined) > 0 and all(a in questions and b in answers for a, b in _pairs(mined))
    assert not set(_pairs(mined)) & set(qa.pairs())  # never a labelled pair
    per_question: dict[str, int] = {}
    for a, _ in _pairs(mined):
        per_question[a] = per_question.get(a, 0) + 1
    assert max(per_question.values()) <= 2
    counts = mined.record["per_strategy"][strategy]
    assert counts["sources"] == len(questions) and mined.record["settings"]["pairing"] == "cross"
    assert mined.record["settings"]["cross_sides"] == {"sources": 12, "targets": 13}
    if strategy == "bm25":  # neighbours share a topic word with their question
        assert all(set(a.split()[1:4]) & set(b.split()) for a, b in _pairs(mined))
    again = mine_pairs(qa, strategies=[strategy], per_sentence=2, pairing="cross", seed=3,
                       extra_sentences=["an extra passage about river water"])
    assert _pairs(again) == _pairs(mined)


def test_cross_pairing_refuses_swaps_and_unknown_pairings() -> None:
    with pytest.raises(ConfigError, match="leave swap out"):
        mine_pairs(_qa_pairs(), strategies=["random", "swap"], pairing="cross")
    assert len(mine_pairs(_qa_pairs(), strategies=["random", "swap"], per_sentence={"swap": 0}, pairing="cross"))
    with pytest.raises(ConfigError, match="unknown pairing 'diagonal'"):
        mine_pairs(_qa_pairs(), strategies=["random"], pairing="diagonal")


def test_dev_and_test_sentences_never_appear(train: PairDataset) -> None:
    dev = synthetic_pairs(MRPC, 6, seed=99)
    test = PairDataset(["  THE Secret   Test sentence  "], ["another test one"], None, source="test")
    planted = PairDataset(train.sentence1 + [dev.sentence1[0], "the secret test sentence", "fine"],
                          train.sentence2 + ["harmless words", "kept words", dev.sentence2[3]],
                          None, source="train+planted")
    mined = mine_pairs(planted, strategies=CHEAP, per_sentence=4, extra_sentences=[dev.sentence2[0], "extra one"],
                       exclude=[dev, test])
    forbidden = {normalise(s) for d in (dev, test) for s in d.sentence1 + d.sentence2}
    used = {normalise(s) for pair in _pairs(mined) for s in pair}
    assert not used & forbidden
    assert "extra one" in used  # the extras are mined too
    excluded = mined.record["excluded"]
    assert excluded["removed_exact_match"] == 3 and excluded["removed_normalised_match"] == 1
    assert "case folded" in excluded["check"] and mined.record["leak_check"]["violations"] == 0


def test_save_and_load_round_trip(train: PairDataset, tmp_path: Path) -> None:
    mined = mine_pairs(train, strategies=CHEAP, per_sentence=1)
    path = mined.save(tmp_path / "mined.jsonl")
    back = MinedPairs.load(path)
    assert _pairs(back) == _pairs(mined) and back.strategy == mined.strategy and back.pairs.labels is None
    assert back.record["per_strategy"] == mined.record["per_strategy"]
    assert (tmp_path / "mined.record.json").is_file()


def test_a_bad_mined_line_is_a_one_line_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    rows = [{"sentence1": "a b", "sentence2": "c d", "strategy": "random"},
            {"sentence1": "e f", "sentence2": "g h", "strategy": "telepathy"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataFormatError, match=r"bad.jsonl:2: strategy is 'telepathy'"):
        MinedPairs.load(path)
    path.write_text('{"sentence1": "a b", "strategy": "random"}\n')
    with pytest.raises(DataFormatError, match=r"bad.jsonl:1: missing key 'sentence2'"):
        MinedPairs.load(path)


def test_read_sentence_pool_reads_txt_and_columns(tmp_path: Path) -> None:
    (tmp_path / "s.txt").write_text("one sentence\ntwo sentence\n")
    (tmp_path / "s.tsv").write_text("id\ttext\n1\tthree\n2\tfour\n")
    assert read_sentence_pool(tmp_path / "s.txt") == ["one sentence", "two sentence"]
    assert read_sentence_pool(tmp_path / "s.tsv", column="text") == ["three", "four"]
    (tmp_path / "b.txt").write_text("ok\n\nafter blank\n")
    with pytest.raises(DataFormatError, match=r"b.txt:2"):
        read_sentence_pool(tmp_path / "b.txt")


def test_a_record_left_from_other_pairs_is_not_trusted(train: PairDataset, tmp_path: Path) -> None:
    path = mine_pairs(train, strategies=["random"], per_sentence=1).save(tmp_path / "m.jsonl")
    record = json.loads((tmp_path / "m.record.json").read_text())
    path.write_text(path.read_text().splitlines(keepends=True)[0])  # the pairs changed, the record did not
    assert record["rows"] > 1 and MinedPairs.load(path).record == {}
