"""The ``dsembed`` command line, driven in-process through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import MAX_LEN
from dsembed.cli import app
from dsembed.data import PairDataset
from dsembed.student.model import DSEModel
from dsembed.teacher.logits import TeacherLogits

runner = CliRunner()


def invoke(*args: str):  # noqa: ANN201
    return runner.invoke(app, [str(a) for a in args])


def write_pairs(path: Path, data: PairDataset, with_labels: bool = True) -> Path:
    header = "sentence1\tsentence2" + ("\tlabel" if with_labels else "")
    rows = [f"{a}\t{b}" + (f"\t{int(y)}" if with_labels else "")
            for a, b, y in zip(data.sentence1, data.sentence2, data.labels, strict=True)]
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def student(student_dir: Path) -> DSEModel:
    return DSEModel.load(student_dir, device="cpu")


def test_score_two_sentences(student_dir: Path, student: DSEModel) -> None:
    result = invoke("score", student_dir, "A man plays the guitar.", "Someone is playing music.")
    assert result.exit_code == 0, result.output
    value, a, b = result.stdout.strip().split("\t")
    assert (a, b) == ("A man plays the guitar.", "Someone is playing music.")
    expected = student.predict([(a, b)])[0]
    assert 0.0 <= float(value) <= 1.0
    assert float(value) == pytest.approx(expected, abs=2e-6)


def test_score_pairs_file_raw(student_dir: Path, student: DSEModel, mrpc_dev: PairDataset, tmp_path: Path) -> None:
    data = mrpc_dev.select(range(3))
    path = write_pairs(tmp_path / "pairs.tsv", data, with_labels=False)
    result = invoke("score", student_dir, "--pairs", path, "--raw")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    got = np.array([json.loads(line.split("\t")[0]) for line in lines])  # raw logits print as vectors: [x]
    assert got.shape == (3, 1)
    np.testing.assert_allclose(got, student.predict(data.pairs(), apply_activation=False), atol=2e-6)


def test_score_needs_two_sentences(student_dir: Path) -> None:
    result = invoke("score", student_dir, "only one")
    assert result.exit_code == 2
    assert "give two sentences" in result.stderr


def test_encode_writes_npy(student_dir: Path, student: DSEModel, tmp_path: Path) -> None:
    sentences = ["The cat sleeps.", "A man is playing a guitar.", "Stocks fell on Monday."]
    src = tmp_path / "sentences.txt"
    src.write_text("\n".join(sentences) + "\n\n", encoding="utf-8")  # trailing blank lines are fine
    out = tmp_path / "emb.npy"
    result = invoke("encode", student_dir, src, "-o", out, "--no-progress")
    assert result.exit_code == 0, result.output
    emb = np.load(out)
    assert emb.shape == (3, student.embedding_dim) == (3, 128) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, student.encode(sentences), atol=1e-5)

    result = invoke("encode", student_dir, src, "-o", out, "--normalize", "--no-progress")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.linalg.norm(np.load(out), axis=1), 1.0, atol=1e-5)


def test_encode_malformed_input_names_line(student_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "sentences.txt"
    src.write_text("first\n\nthird\n", encoding="utf-8")
    result = invoke("encode", student_dir, src, "-o", tmp_path / "emb.npy")
    assert result.exit_code == 2
    assert f"{src}:2:" in result.stderr and "blank line" in result.stderr
    assert not (tmp_path / "emb.npy").exists()


def test_eval_sts_file(student_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "sts.tsv"
    path.write_text("sentence1\tsentence2\tlabel\n"
                    "A man plays guitar.\tA man is playing a guitar.\t4.8\n"
                    "A cat sleeps.\tStocks fell sharply.\t0.1\n"
                    "Kids run outside.\tChildren are running in a park.\t3.9\n"
                    "A woman cooks.\tA plane takes off.\t0.5\n", encoding="utf-8")
    result = invoke("eval", student_dir, path, "--no-progress")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["pairs"] == 4 and report["skipped"] == 0
    for key in ("head_spearman", "head_pearson", "cosine_spearman", "cosine_pearson"):
        assert -100.0 <= report[key] <= 100.0


def test_eval_malformed_file_exit_2_with_location(student_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("sentence1\tsentence2\tlabel\n"
                    "A man plays guitar.\tA man is playing a guitar.\t4.8\n"
                    "A cat sleeps.\tStocks fell sharply.\tvery similar\n"
                    "Kids run outside.\tChildren are running in a park.\t3.9\n"
                    "A woman cooks.\tA plane takes off.\t0.5\n", encoding="utf-8")
    result = invoke("eval", student_dir, path, "--no-progress")
    assert result.exit_code == 2
    assert f"{path}:3:" in result.stderr and "not a number" in result.stderr

    skipped = invoke("eval", student_dir, path, "--skip-bad", "--no-progress")
    assert skipped.exit_code == 0, skipped.output
    report = json.loads(skipped.stdout)
    assert (report["pairs"], report["skipped"]) == (3, 1)


def test_eval_missing_file(student_dir: Path, tmp_path: Path) -> None:
    result = invoke("eval", student_dir, tmp_path / "nope.tsv")
    assert result.exit_code == 2
    assert "not found" in result.stderr


def test_distill_alpha_without_teacher_logits_fails_clearly(tiny_base: str, mrpc_train: PairDataset,
                                                            tmp_path: Path) -> None:
    train = write_pairs(tmp_path / "train.tsv", mrpc_train)
    result = invoke("distill", "own", "-o", tmp_path / "out", "--alpha", "0.5", "--base", tiny_base,
                    "--train", train, "--dev", train, "--kind", "binary", "--labels", "0,1")
    assert result.exit_code == 2
    assert "--teacher-logits" in result.stderr
    assert not (tmp_path / "out").exists()


def test_distill_malformed_train_file(tiny_base: str, tmp_path: Path) -> None:
    train = tmp_path / "train.tsv"
    train.write_text("sentence1\tsentence2\tlabel\na\tb\t1\nc\td\t7\n", encoding="utf-8")
    result = invoke("distill", "own", "-o", tmp_path / "out", "--alpha", "0", "--base", tiny_base,
                    "--train", train, "--dev", train, "--kind", "binary", "--labels", "0,1")
    assert result.exit_code == 2
    assert f"{train}:3:" in result.stderr and "unknown label '7'" in result.stderr


def test_logits_then_distill(tiny_base: str, binary_teacher: Path, mrpc_train: PairDataset, mrpc_dev: PairDataset,
                             tmp_path: Path) -> None:
    train = write_pairs(tmp_path / "train.tsv", mrpc_train)
    dev = write_pairs(tmp_path / "dev.tsv", mrpc_dev)
    own = ("--kind", "binary", "--labels", "0,1")
    logits_file = tmp_path / "teacher_logits.safetensors"
    result = invoke("logits", "own", "--teacher", binary_teacher, "-o", logits_file, "--train", train,
                    "--cache", tmp_path / "cache", "--no-progress", *own)
    assert result.exit_code == 0, result.output
    stored = TeacherLogits.load(logits_file)
    assert stored.logits.shape == (len(mrpc_train), 2)
    stored.check_matches(mrpc_train)

    out = tmp_path / "student"
    result = invoke("distill", "own", "-o", out, "--teacher-logits", logits_file, "--alpha", "0.5",
                    "--base", tiny_base, "--epochs", "1", "--batch-size", "16", "--max-length", str(MAX_LEN),
                    "--train", train, "--dev", dev, "--no-progress", *own)
    assert result.exit_code == 0, result.output
    assert '"dev_metrics"' in result.stdout
    model = DSEModel.load(out / "model", device="cpu")
    assert model.task.name == "own" and model.config.training["alpha"] == 0.5

    # logits for pairs the teacher never scored are refused before any training
    other = write_pairs(tmp_path / "other.tsv", mrpc_dev)
    result = invoke("distill", "own", "-o", tmp_path / "stale", "--teacher-logits", logits_file,
                    "--base", tiny_base, "--train", other, "--dev", dev, *own)
    assert result.exit_code == 2
    assert f"do not cover the pairs: {len(mrpc_dev)} of {len(mrpc_dev)} were never scored" in result.stderr
    assert not (tmp_path / "stale").exists()

    # a sample of the scored pairs is fine: its rows are taken by pair hash
    sample = write_pairs(tmp_path / "sample.tsv", mrpc_train.select(range(31, 0, -2)))
    result = invoke("distill", "own", "-o", tmp_path / "sample", "--teacher-logits", logits_file, "--alpha", "0.5",
                    "--base", tiny_base, "--epochs", "1", "--batch-size", "16", "--max-length", str(MAX_LEN),
                    "--train", sample, "--dev", dev, "--no-progress", *own)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", [
    ["logits", "mrpc", "--teacher", "{missing}", "-o", "{tmp}/l.safetensors", "--train", "{train}"],
    ["teacher", "export-logits", "mrpc", "--teacher", "{missing}", "-o", "{tmp}/b", "--train", "{train}", "--dev",
     "{train}"],
    ["teacher", "train", "mrpc", "-o", "{tmp}/t", "--base", "{missing}", "--train", "{train}", "--dev", "{train}"],
    ["distill", "mrpc", "-o", "{tmp}/s", "--alpha", "0", "--base", "{missing}", "--train", "{train}", "--dev",
     "{train}"],
    ["pipeline", "mrpc", "--teacher", "{missing}", "--output-dir", "{tmp}/p", "--train", "{train}", "--dev",
     "{train}"],
    ["evaluate", "{missing}", "mrpc", "--data", "{train}"],
    ["eval", "{missing}", "{train}"],
    ["encode", "{missing}", "{sentences}", "-o", "{tmp}/e.npy"],
    ["score", "{missing}", "a", "b"],
    ["index", "build", "{missing}", "{sentences}", "{tmp}/store"],
    ["bench", "--model", "{missing}", "--sizes", "10"],
])
def test_a_missing_model_is_one_line_not_a_traceback(command: list[str], mrpc_train: PairDataset,
                                                     tmp_path: Path) -> None:
    train = write_pairs(tmp_path / "train.tsv", mrpc_train)
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("one sentence\nanother one\n")
    values = {"missing": str(tmp_path / "no-such-model"), "tmp": str(tmp_path), "train": str(train),
              "sentences": str(sentences)}
    result = invoke(*[part.format(**values) for part in command])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no-such-model" in errors[0], result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
