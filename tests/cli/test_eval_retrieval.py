"""``dsembed eval-retrieval`` end to end on the tiny student, its tiny cross-encoder teacher and a few dozen pairs."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from dsembed.cli import app
from dsembed.data import PairDataset

runner = CliRunner()


def invoke(*args: object):  # noqa: ANN201
    return runner.invoke(app, [str(a) for a in args])


def _pairs_file(path: Path, data: PairDataset) -> Path:
    rows = [f"{a}\t{b}\t{int(y)}" for a, b, y in zip(data.sentence1, data.sentence2, data.labels, strict=True)]
    path.write_text("\n".join(["sentence1\tsentence2\tlabel", *rows]) + "\n", encoding="utf-8")
    return path


def test_eval_retrieval_end_to_end(tmp_path: Path, student_dir: Path, binary_teacher: Path, tiny_base: str,
                                   mrpc_train: PairDataset) -> None:
    pairs = _pairs_file(tmp_path / "pairs.tsv", mrpc_train)
    record_file, plots = tmp_path / "out" / "record.json", tmp_path / "plots"
    result = invoke("eval-retrieval", "--set", pairs, "--kind", "binary", "--student", f"dse={student_dir}",
                    "--student", f"label-only={student_dir}", "--base", tiny_base, "--teacher", binary_teacher,
                    "--cascade-k", "2,5", "--teacher-queries", "4", "--seed", "7", "-o", record_file,
                    "--plot", plots, "--work-dir", tmp_path / "work")
    assert result.exit_code == 0, result.output
    record = json.loads(record_file.read_text())
    methods = record["methods"]
    assert {"bm25", "pretrained-cosine", "dse-head", "dse-head-ann", "dse-cosine", "label-only-head", "teacher",
            "bm25>teacher@2", "pretrained-cosine>teacher@5", "dse-head>teacher@5"} <= set(methods)
    assert "label-only-head>teacher@2" not in methods  # cascades start from bm25, cosine and the first student
    positives = int(sum(mrpc_train.labels))
    assert record["set"]["relevant_pairs"] >= positives // 2  # relevance from the gold column
    assert record["query_sample"]["size"] == 4 and record["query_sample"]["seed"] == 7
    n = record["set"]["candidates"]
    assert n - 1 <= methods["teacher"]["teacher_calls_per_query"] <= n
    assert methods["dse-head>teacher@5"]["teacher_calls_per_query"] == 5
    assert record["teacher"]["seconds_per_pair"] > 0 and record["environment"]["command"]
    assert (plots / "pairs.tsv.png").is_file()
    assert "dse-head" in result.output


def test_eval_retrieval_errors_are_one_line(tmp_path: Path) -> None:
    bad = invoke("eval-retrieval", "--set", "mrpc-test", "--student", "no-equals-sign")
    assert bad.exit_code == 2 and "NAME=FOLDER" in bad.output and "Traceback" not in bad.output
    missing = invoke("eval-retrieval", "--set", tmp_path / "nope.tsv", "--kind", "binary", "--methods", "bm25")
    assert missing.exit_code == 2 and "nope.tsv" in missing.output
    k = invoke("eval-retrieval", "--set", "mrpc-test", "--cascade-k", "ten")
    assert k.exit_code == 2 and "--cascade-k" in k.output
