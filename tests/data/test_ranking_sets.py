"""Retrieval sets from small labelled TSVs: relevance follows the gold column, the query never ranks itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import needs_glue
from dsembed.data import PairDataset, load_ranking_set, qnli_halves, ranking_set_from_pairs, split_by_question
from dsembed.errors import ConfigError


def _tsv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text("sentence1\tsentence2\tlabel\n" + "".join(f"{a}\t{b}\t{y}\n" for a, b, y in rows), encoding="utf-8")
    return path


def _relevant_texts(rset, q: int) -> dict[str, float]:  # noqa: ANN001
    return {rset.candidates[c]: g for c, g in rset.relevance[q].items()}


def test_binary_file_relevance_from_labels(tmp_path: Path) -> None:
    rows = [("a cat sleeps", "the cat is asleep", "1"), ("a cat sleeps", "a dog barks", "0"),
            ("a dog barks", "the dog is barking", "1"), ("rain today", "sun today", "0")]
    rset = load_ranking_set(str(_tsv(tmp_path / "p.tsv", rows)), kind="binary")
    # queries: sentence1 of label-1 pairs only; "rain today" has no relevant pair
    assert rset.queries == ["a cat sleeps", "a dog barks"]
    assert _relevant_texts(rset, 0) == {"the cat is asleep": 1.0}
    assert _relevant_texts(rset, 1) == {"the dog is barking": 1.0}  # its label-0 pair with "a cat sleeps" is not
    # every distinct sentence is a candidate; the query's own text is excluded from its list
    assert set(rset.candidates) == {t for r in rows for t in r[:2]}
    assert rset.candidates[rset.exclude[0]] == "a cat sleeps"
    assert rset.describe()["relevant_pairs"] == 2


def test_graded_file_gains_are_the_scores(tmp_path: Path) -> None:
    rows = [("q one", "close match", "4.6"), ("q one", "loose match", "1.5"), ("q one", "unrelated", "0.0"),
            ("q two", "weak", "3.0")]
    rset = load_ranking_set(str(_tsv(tmp_path / "s.tsv", rows)), kind="regression")
    assert rset.queries == ["q one"]  # "q two" has no pair scored >= 4
    assert _relevant_texts(rset, 0) == {"close match": 4.6, "loose match": 1.5}  # gain 0 is not listed
    assert rset.relevant_min == 4.0
    lower = load_ranking_set(str(tmp_path / "s.tsv"), kind="regression", relevant_min=3.0)
    assert lower.queries == ["q one", "q two"]


def test_symmetric_pairs_make_both_sides_partners() -> None:
    data = PairDataset(["x", "y", "z"], ["y", "z", "w"], [1.0, 1.0, 0.0], source="mem")
    rset = ranking_set_from_pairs(data, "t", graded=False)
    assert rset.queries == ["x", "y"]  # "z" is a partner (of "y") but sentence1 only of a label-0 pair
    assert _relevant_texts(rset, 1) == {"x": 1.0, "z": 1.0}
    one_way = ranking_set_from_pairs(data, "t", graded=False, symmetric=False)
    assert _relevant_texts(one_way, 1) == {"z": 1.0}


def test_no_relevant_pair_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no queries"):
        load_ranking_set(str(_tsv(tmp_path / "n.tsv", [("a", "b", "0")])), kind="binary")
    with pytest.raises(ConfigError, match="--kind"):
        load_ranking_set(str(tmp_path / "n.tsv"))


def _qnli(n_questions: int = 12) -> PairDataset:
    s1, s2, y = [], [], []
    for q in range(n_questions):
        for j in range(3):
            s1.append(f"question {q}?")
            s2.append(f"sentence {q}-{j}.")
            y.append(1.0 if j == q % 3 else 0.0)
    return PairDataset(s1, s2, y, source="qnli-mini")


def test_qnli_halves_disjoint_deterministic_and_recorded() -> None:
    data = _qnli()
    halves = qnli_halves(data=data, seed=3)
    train_q, bench_q = set(halves.train.sentence1), set(halves.bench.queries)
    assert not train_q & bench_q
    assert train_q | bench_q == set(data.sentence1)
    assert len(bench_q) == 6 and len(halves.train) == 18
    again = qnli_halves(data=data, seed=3)
    assert again.bench.queries == halves.bench.queries and again.record == halves.record
    assert qnli_halves(data=data, seed=4).record["bench_half"] != halves.record["bench_half"]
    # the bench half ranks answer sentences of its own half only; relevant = the entailment sentence
    assert all(c.startswith("sentence") for c in halves.bench.candidates)
    for q, text in enumerate(halves.bench.queries):
        number = int(text.split()[1].rstrip("?"))
        assert _relevant_texts(halves.bench, q) == {f"sentence {number}-{number % 3}.": 1.0}
    assert halves.bench.exclude == [-1] * 6 and halves.record["seed"] == 3


def test_qnli_halves_carry_the_bench_pairs() -> None:
    data = _qnli()
    halves = qnli_halves(data=data, seed=3)
    assert len(halves.bench_pairs) == 18 and set(halves.bench_pairs.sentence1) == set(halves.bench.queries)
    assert sorted(halves.bench_pairs.sentence2) == sorted(halves.bench.candidates)
    assert halves.record["answer_sentences_in_both_halves"] == 0
    # one answer sentence serving a question of each half is on record (the questions stay disjoint)
    shared = PairDataset(data.sentence1 + [halves.bench.queries[0]], data.sentence2 + [halves.train.sentence2[0]],
                         np.append(data.labels, 0.0), source="qnli-mini+shared")
    assert qnli_halves(data=shared, seed=3).record["answer_sentences_in_both_halves"] == 1


def test_split_by_question_keeps_questions_whole() -> None:
    data = _qnli(20)
    rest, held = split_by_question(data, 0.25, seed=1)
    assert not set(rest.sentence1) & set(held.sentence1)
    assert len(set(held.sentence1)) == 5 and len(held) == 15 and len(rest) == 45
    for part in (rest, held):  # every pair of a question went with it, labels aligned
        for q, s, y in zip(part.sentence1, part.sentence2, part.labels, strict=True):
            number, j = map(int, s.removeprefix("sentence ").rstrip(".").split("-"))
            assert q == f"question {number}?" and y == float(j == number % 3)
    again = split_by_question(data, 0.25, seed=1)[1]
    assert again.sentence1 == held.sentence1
    assert split_by_question(data, 0.25, seed=2)[1].sentence1 != held.sentence1
    with pytest.raises(ConfigError, match="fraction"):
        split_by_question(data, 1.0)
    with pytest.raises(ConfigError, match="cannot be split"):
        split_by_question(_qnli(1), 0.5)


@needs_glue
def test_builtin_sets_load() -> None:
    mrpc = load_ranking_set("mrpc-test")
    assert mrpc.describe()["candidates"] > 3000 and mrpc.task == "mrpc"
    stsb = load_ranking_set("stsb-test")
    assert all(max(r.values()) >= 4.0 for r in stsb.relevance)
    bench = load_ranking_set("qnli-bench", seed=0)
    assert bench.extra["split"]["seed"] == 0
