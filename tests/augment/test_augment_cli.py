"""``dsembed augment mine / score / balance`` end to end on a tiny GLUE copy, with the tiny teacher."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import MRPC, synthetic_pairs
from dsembed.augment import MinedPairs, load_mined_bundle, load_mined_rows
from dsembed.augment.pool import normalise
from dsembed.cli import app
from dsembed.data import PairDataset, read_pairs
from dsembed.teacher import Teacher

runner = CliRunner()


def invoke(*args: object):  # noqa: ANN201
    return runner.invoke(app, [str(a) for a in args])


def _write_tsv(path: Path, data: PairDataset) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = data.labels if data.labels is not None else np.zeros(len(data))
    rows = [f"{a}\t{b}\t{int(y)}" for a, b, y in zip(data.sentence1, data.sentence2, labels, strict=True)]
    path.write_text("sentence1\tsentence2\tlabel\n" + "\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def glue(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PairDataset, PairDataset]:
    """A GLUE folder whose MRPC train holds one dev and one test sentence (which must never be mined)."""
    root = tmp_path_factory.mktemp("glue")
    dev, test = synthetic_pairs(MRPC, 8, seed=21), synthetic_pairs(MRPC, 8, seed=22)
    train = synthetic_pairs(MRPC, 24, seed=20)
    train = PairDataset(train.sentence1 + [dev.sentence1[2]], train.sentence2 + [test.sentence2[5]],
                        np.append(train.labels, 1.0))
    for split, data in (("train", train), ("dev", dev), ("test", test)):
        _write_tsv(root / "MRPC" / f"{split}.tsv", data)
    return root, dev, test


def test_mine_score_balance_end_to_end(glue: tuple[Path, PairDataset, PairDataset], binary_teacher: Path,
                                       tmp_path: Path) -> None:
    root, dev, test = glue
    (tmp_path / "extra.txt").write_text("an extra unlabelled sentence about a dog\nthe river sings\n")
    mined_file = tmp_path / "mined.jsonl"
    result = invoke("augment", "mine", "mrpc", "-o", mined_file, "--data-dir", root, "--strategy", "random,bm25,swap",
                    "--budget", "random=2,bm25=1,swap=1", "--extra", tmp_path / "extra.txt", "--seed", 3)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    forbidden = {normalise(s) for d in (dev, test) for s in d.sentence1 + d.sentence2}
    train = read_pairs(root / "MRPC" / "train.tsv", MRPC)
    in_train = {normalise(s) for s in train.sentence1 + train.sentence2} & forbidden
    assert len(in_train) >= 2 and summary["excluded"]["removed_total"] == len(in_train) and summary["rows"] > 0
    mined = MinedPairs.load(mined_file)
    assert not {normalise(s) for p in mined.pairs.pairs() for s in p} & forbidden

    bundle = tmp_path / "bundle"
    result = invoke("augment", "score", mined_file, "--teacher", binary_teacher, "-o", bundle,
                    "--cache", tmp_path / "store", "--chunk-size", 16, "--batch-size", 8)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == len(mined) == summary["scored_now"] and summary["pairs_per_second"] > 0
    scored = load_mined_bundle(bundle, mined)
    expected = Teacher(binary_teacher, MRPC, device="cpu").predict_logits(mined.pairs.pairs())
    np.testing.assert_allclose(scored.teacher_logits, expected, atol=1e-5)
    rerun = json.loads(invoke("augment", "score", mined_file, "--teacher", binary_teacher, "-o", bundle,
                              "--cache", tmp_path / "store").stdout)
    assert rerun["scored_now"] == 0 and rerun["reused_from_store"] == len(mined)

    # a budget now, a larger one later: only the added pairs are scored, and a training run with the
    # smaller budget picks from the larger bundle exactly the pairs scored first
    small, large = max(1, len(mined) // 3), max(2, 2 * len(mined) // 3)
    runs = {}
    for name, budget in (("small", small), ("large", large)):
        result = invoke("augment", "score", mined_file, "--teacher", binary_teacher, "-o", tmp_path / name,
                        "--cache", tmp_path / "budget-store", "--max-pairs", budget, "--strategy", "random,bm25,swap")
        assert result.exit_code == 0, result.output
        runs[name] = json.loads(result.stdout)
    assert runs["small"]["rows"] == runs["small"]["scored_now"] == small
    assert runs["large"]["rows"] == large and runs["large"]["scored_now"] == large - small
    picked = load_mined_rows(tmp_path / "large", MRPC, max_pairs=small)
    assert set(picked.pairs.pairs()) == set(load_mined_rows(tmp_path / "small", MRPC).pairs.pairs())
    result = invoke("augment", "score", mined_file, "--teacher", binary_teacher, "-o", tmp_path / "x",
                    "--strategy", "embedding")
    assert result.exit_code == 2 and "no pairs of strategy embedding" in result.output

    result = invoke("augment", "balance", bundle, "-o", tmp_path / "balanced", "--bands", "0,0.5,1")
    assert result.exit_code == 0, result.output
    balance = json.loads(result.stdout)
    assert sum(balance["after"]) == balance["rows_after"] == len(load_mined_bundle(tmp_path / "balanced"))
    assert len(set(b for b in balance["after"] if b)) <= 1


def test_cross_pairing_from_the_command_line(glue: tuple[Path, PairDataset, PairDataset], tmp_path: Path) -> None:
    root, _, _ = glue
    result = invoke("augment", "mine", "mrpc", "-o", tmp_path / "x.jsonl", "--data-dir", root, "--pairing", "cross",
                    "--strategy", "random,bm25", "--per-sentence", 1)
    assert result.exit_code == 0, result.output
    mined = MinedPairs.load(tmp_path / "x.jsonl")
    train = read_pairs(root / "MRPC" / "train.tsv", MRPC)
    assert len(mined) > 0 and mined.record["settings"]["pairing"] == "cross"
    assert all(a in set(train.sentence1) and b in set(train.sentence2) for a, b in mined.pairs.pairs())


def test_own_data_with_exclude_files(glue: tuple[Path, PairDataset, PairDataset], tmp_path: Path) -> None:
    root, dev, _ = glue
    result = invoke("augment", "mine", "mine", "-o", tmp_path / "m.jsonl", "--train", root / "MRPC" / "train.tsv",
                    "--kind", "binary", "--labels", "0,1", "--exclude", root / "MRPC" / "dev.tsv",
                    "--strategy", "random", "--max-pairs", 10)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 10
    assert json.loads(result.stdout)["excluded"]["removed_total"] >= 1
    assert MinedPairs.load(tmp_path / "m.jsonl").record["task"]["kind"] == "binary"


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sentence1": "a", "sentence2": "b", "strategy": "random"}\nnot json\n')
    result = invoke("augment", "score", bad, "--teacher", "x", "-o", tmp_path / "b", "--task", "mrpc")
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {bad}:2:")
    assert len(result.stderr.strip().splitlines()) == 1
    result = invoke("augment", "mine", "mrpc", "-o", tmp_path / "m.jsonl", "--strategy", "psychic")
    assert result.exit_code == 2 and "unknown" in result.stderr
    for pairing, message in (("diagonal", "unknown pairing 'diagonal'"), ("cross", "leave swap out")):
        result = invoke("augment", "mine", "mrpc", "-o", tmp_path / "m.jsonl", "--pairing", pairing)
        assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = invoke("augment", "balance", tmp_path / "nowhere", "-o", tmp_path / "x")
    assert result.exit_code == 2 and "no such mined-pairs bundle" in result.stderr
