"""``dsembed distill --mined BUNDLE`` end to end on the tiny model, and the bundle reader's one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import MAX_LEN, MRPC, synthetic_pairs
from dsembed.augment import ScoredPairs, load_mined_rows, write_mined_bundle
from dsembed.cli import app
from dsembed.data import PairDataset
from dsembed.errors import DsembedError
from dsembed.teacher.logits import TeacherLogits

runner = CliRunner()
OWN = ("--kind", "binary", "--labels", "0,1")


def write_bundle(folder: Path, n: int = 20, *, task: str = "own", num_labels: int = 2, n_pairs: int | None = None,
                 logits: np.ndarray | None = None) -> Path:
    """A bundle written by the augment stage's own writer (``n_pairs``/``logits`` rows damage it afterwards)."""
    pairs = synthetic_pairs(MRPC, n, seed=7)
    pairs = PairDataset(pairs.sentence1, pairs.sentence2, None)
    strategies = ["bm25" if i % 3 else "random" for i in range(n)]
    if logits is None:
        logits = np.random.default_rng(0).normal(size=(n, num_labels)).astype(np.float32)
    rows = len(logits)
    written = logits if rows == n else np.zeros((n, logits.shape[1]), np.float32)
    write_mined_bundle(ScoredPairs(pairs, strategies, written, "hash-teacher", {}, "hash-teacher", task), folder)
    if rows != n:  # a logits file that lost rows: same pairs file, other logits
        part = pairs.select(range(rows))
        TeacherLogits(logits, part.pair_hashes(), "hash-teacher", part.fingerprint(), task).save(
            folder / "logits.safetensors")
    if n_pairs is not None:
        info = json.loads((folder / "bundle.json").read_text())
        (folder / "bundle.json").write_text(json.dumps({**info, "pair_hashes": info["pair_hashes"][:n_pairs]}))
    return folder


def _write_pairs(path: Path, data: PairDataset) -> Path:
    rows = [f"{a}\t{b}\t{int(y)}" for a, b, y in zip(data.sentence1, data.sentence2, data.labels, strict=True)]
    path.write_text("\n".join(["sentence1\tsentence2\tlabel", *rows]) + "\n", encoding="utf-8")
    return path


def _teacher_logits(data: PairDataset, path: Path) -> Path:
    values = np.stack([[len(a) % 7 - 3.0, len(b) % 5 - 2.0] for a, b in data.pairs()]).astype(np.float32)
    TeacherLogits(values, data.pair_hashes(), "hash-teacher", data.fingerprint(), "own").save(path)
    return path


def test_distill_with_a_mined_bundle_end_to_end(tiny_base: str, mrpc_train: PairDataset, mrpc_dev: PairDataset,
                                                tmp_path: Path) -> None:
    train, dev = _write_pairs(tmp_path / "train.tsv", mrpc_train), _write_pairs(tmp_path / "dev.tsv", mrpc_dev)
    bundle = write_bundle(tmp_path / "bundle")
    common = ("--base", tiny_base, "--epochs", "2", "--batch-size", "8", "--max-length", str(MAX_LEN),
              "--train", train, "--dev", dev, "--no-progress", "--mined", bundle, *OWN)
    out = tmp_path / "dse"
    result = runner.invoke(app, [str(a) for a in ("distill", "own", "-o", out, "--teacher-logits",
                                 _teacher_logits(mrpc_train, tmp_path / "t.safetensors"), "--mined-ratio", "2",
                                 "--mined-sampling", "concat", "--equal-compute", *common)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{\n"):])  # the Trainer prints its logs before
    assert summary["optimizer_steps"] == 8  # 32 labelled pairs / 8 per batch, 2 epochs
    record = json.loads((out / "training.json").read_text())
    assert record["mined"]["teacher"] == "hash-teacher"
    assert record["mined"]["count"] == 20 and record["mined"]["strategies"] == {"bm25": 13, "random": 7}
    assert (record["mined"]["ratio"], record["mined"]["sampling"], record["mined"]["recipe"]) == (2.0, "concat",
                                                                                                    "dse")
    assert "Augmentation: 20 unlabelled pairs" in (out / "model" / "README.md").read_text()

    # AugSBERT needs no teacher logits for the labelled pairs; --max-steps sets the budget
    result = runner.invoke(app, [str(a) for a in ("distill", "own", "-o", tmp_path / "aug", "--recipe", "augsbert",
                                                  "--max-steps", "3", *common)])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "aug" / "training.json").read_text())
    assert record["optimizer_steps"] == 3 and record["recipe"] == "augsbert" and record["alpha_ignored"]

    # a strategy and a budget pick from the same bundle; a strategy it lacks is a one-line error
    result = runner.invoke(app, [str(a) for a in ("distill", "own", "-o", tmp_path / "bm25", "--recipe", "augsbert",
                                                  "--max-steps", "2", "--mined-strategy", "bm25",
                                                  "--mined-max-pairs", "5", *common)])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "bm25" / "training.json").read_text())
    assert record["mined"]["count"] == 5 and record["mined"]["strategies"] == {"bm25": 5}
    result = runner.invoke(app, [str(a) for a in ("distill", "own", "-o", tmp_path / "swap", "--recipe", "augsbert",
                                                  "--mined-strategy", "swap", *common)])
    assert result.exit_code == 2 and "has no pairs of strategy swap (it holds bm25, random)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "swap").exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"n_pairs": 19}, "bundle.json and logits.safetensors list different pairs"),
    ({"num_labels": 3, "logits": np.zeros((20, 3), np.float32)}, "carry 3 teacher logits per pair, task 'own' has 2"),
    ({"task": "stsb"}, "mined for task 'stsb', not 'own'"),
    ({"logits": np.full((20, 2), np.inf, np.float32)}, "teacher logits of row 0 are not finite"),
    ({"logits": np.zeros((18, 2), np.float32)}, "list different pairs"),
])
def test_a_bad_bundle_is_one_line(change: dict, message: str, tiny_base: str, mrpc_train: PairDataset,
                                  tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "bundle", **change)
    train = _write_pairs(tmp_path / "train.tsv", mrpc_train)
    result = runner.invoke(app, [str(a) for a in ("distill", "own", "-o", tmp_path / "out", "--recipe", "augsbert",
                                                  "--base", tiny_base, "--train", train, "--dev", train,
                                                  "--mined", bundle, *OWN)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_bundle_reader_names_file_and_line(tmp_path: Path) -> None:
    from dsembed.tasks import custom_task

    own = custom_task("own", "binary", ("0", "1"))
    bundle = write_bundle(tmp_path / "bundle")
    mined = load_mined_rows(bundle, own)
    assert len(mined) == 20 and mined.pairs.labels is None and mined.teacher_logits.shape == (20, 2)
    lines = (bundle / "pairs.jsonl").read_text().splitlines()
    lines[4] = json.dumps({"sentence1": "a", "sentence2": "b"})
    (bundle / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DsembedError, match=r"pairs.jsonl:5: missing key 'strategy'"):
        load_mined_rows(bundle, own)
    (bundle / "logits.safetensors").unlink()
    with pytest.raises(DsembedError, match=r"not a mined-pairs bundle \(logits.safetensors is missing\)"):
        load_mined_rows(bundle, own)
