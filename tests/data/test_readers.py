"""Tests for dsembed.data.readers: strict row validation of TSV/CSV/JSONL pair files and sentence files."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from _data_files import HEADER, write

from dsembed.data import read_pairs, read_sentences
from dsembed.errors import ConfigError, DataFormatError, DsembedError, InputNotFoundError
from dsembed.tasks import custom_task, get_task

MRPC = get_task("mrpc")
STSB = get_task("stsb")
RTE = get_task("rte")


# ---------------------------------------------------------------------------------------------
# Strict validation of TSV rows
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "content", "line", "fragment"),
    [
        (MRPC, HEADER + "a\tb\t1\nc\td\n", 3, "expected 3 columns, got 2"),
        (MRPC, HEADER + "a\tb\t1\na\tb\tc\t1\n", 3, "expected 3 columns, got 4"),
        (MRPC, HEADER + "a\tb\t1\na\tb\t1\t\n", 3, "expected 3 columns, got 4"),
        (MRPC, HEADER + "a\tb\t0\n\tb\t1\n", 3, "empty sentence1"),
        (MRPC, HEADER + "a\t   \t1\n", 2, "empty sentence2"),
        (MRPC, HEADER + "a\tb\t1\na\tb\t1\na\tb\t\n", 4, "missing label"),
        (MRPC, HEADER + "a\tb\tmaybe\n", 2, "unknown label 'maybe'"),
        (MRPC, HEADER + "a\tb\t2\n", 2, "unknown label '2'"),
        (RTE, HEADER + "a\tb\tentailment\na\tb\tcontradiction\n", 3, "unknown label 'contradiction'"),
        (STSB, HEADER + "a\tb\t3.8\na\tb\thigh\n", 3, "not a number"),
        (STSB, HEADER + "a\tb\t7.5\n", 2, "outside [0.0, 5.0]"),
        (STSB, HEADER + "a\tb\tnan\n", 2, "not a number"),
        (MRPC, "a\tb\t1\nc\td\t0\n", 1, "header does not name"),
        (MRPC, "sentence1\tsentence2\n", 1, "'label'"),
        (MRPC, "", 1, "file is empty"),
        (MRPC, "\n\n", 1, "file is empty"),
    ],
)
def test_tsv_bad_rows(tmp_path: Path, task: object, content: str, line: int, fragment: str) -> None:
    path = write(tmp_path / "bad.tsv", content)
    with pytest.raises(DataFormatError) as info:
        read_pairs(path, task)  # type: ignore[arg-type]
    err = info.value
    assert err.line == line
    assert err.path == str(path)
    assert fragment in err.problem
    assert str(err) == f"{path}:{line}: {err.problem}"
    assert isinstance(err, ValueError)


def test_invalid_utf8_reports_its_line(tmp_path: Path) -> None:
    content = (HEADER + "a\tb\t1\nc\td\t0\n").encode() + b"caf\xe9 au lait\tx\t1\n" + b"e\tf\t1\n"
    path = write(tmp_path / "latin1.tsv", content)
    with pytest.raises(DataFormatError, match="invalid UTF-8") as info:
        read_pairs(path, MRPC)
    assert info.value.line == 4
    ds = read_pairs(path, MRPC, skip_bad=True)
    assert len(ds) == 3
    assert ds.skipped == 1
    assert ds.problems[0].startswith(f"{path}:4: invalid UTF-8")
    assert ds.sentence1 == ["a", "c", "e"]


def test_invalid_utf8_in_header_is_fatal(tmp_path: Path) -> None:
    path = write(tmp_path / "h.tsv", b"sentence1\tsentence2\tl\xffabel\na\tb\t1\n")
    with pytest.raises(DataFormatError, match="invalid UTF-8") as info:
        read_pairs(path, MRPC, skip_bad=True)
    assert info.value.line == 1


def test_skip_bad_counts_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    content = HEADER + "\n".join([
        "good one\tgood two\t1",  # 2
        "only\ttwo",  # 3
        "\tempty first\t0",  # 4
        "x\ty\tmaybe",  # 5
        "fine\talso fine\t0",  # 6
        "no label\there\t",  # 7
        "last\tpair\t1",  # 8
    ]) + "\n"
    path = write(tmp_path / "mixed.tsv", content)
    with caplog.at_level(logging.WARNING, logger="dsembed.data"):
        ds = read_pairs(path, MRPC, skip_bad=True)
    assert len(ds) == 3
    assert ds.sentence1 == ["good one", "fine", "last"]
    assert ds.labels.tolist() == [1.0, 0.0, 1.0]
    assert ds.skipped == 4
    assert [p.split(":")[1] for p in ds.problems] == ["3", "4", "5", "7"]
    assert "expected 3 columns, got 2" in ds.problems[0]
    records = [r for r in caplog.records if r.name == "dsembed.data" and r.levelno == logging.WARNING]
    assert len(records) == 1
    assert "skipped 4" in records[0].getMessage()


def test_skip_bad_keeps_first_100_problems(tmp_path: Path) -> None:
    rows = ["a\tb\t1"] + ["bad"] * 150
    path = write(tmp_path / "many.tsv", HEADER + "\n".join(rows) + "\n")
    ds = read_pairs(path, MRPC, skip_bad=True)
    assert len(ds) == 1
    assert ds.skipped == 150
    assert len(ds.problems) == 100


def test_header_only_file_is_empty_but_labelled(tmp_path: Path) -> None:
    path = write(tmp_path / "h.tsv", HEADER)
    with pytest.raises(DataFormatError, match="no rows") as info:  # by default no rows is an error...
        read_pairs(path, MRPC)
    assert str(info.value) == f"{path}:1: no rows: the file has a header but no data rows"
    ds = read_pairs(path, MRPC, allow_empty=True)  # ...unless asked for
    assert len(ds) == 0
    assert ds.labels is not None
    assert ds.labels.shape == (0,)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.tsv"
    with pytest.raises(FileNotFoundError, match="nope.tsv") as info:
        read_pairs(missing, MRPC)
    assert isinstance(info.value, InputNotFoundError) and isinstance(info.value, DsembedError)
    assert str(info.value) == f"data file not found: {missing}"
    folder = tmp_path / "pairs.tsv"
    folder.mkdir()
    with pytest.raises(InputNotFoundError, match="is a folder, not a data file"):
        read_pairs(folder, MRPC)
    with pytest.raises(InputNotFoundError, match="missing.jsonl"):
        read_sentences(tmp_path / "missing.jsonl")


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = write(tmp_path / "pairs.xlsx", "x")
    with pytest.raises(ValueError, match="unsupported") as info:
        read_pairs(path, MRPC)
    assert isinstance(info.value, ConfigError)
    with pytest.raises(ConfigError, match="unsupported sentence file type '.xlsx'"):
        read_sentences(path)


def test_tsv_quotes_whitespace_crlf_bom(tmp_path: Path) -> None:
    content = "\ufeffsentence1\tsentence2\tlabel\r\n" + ' He said " hi " . \t"quoted"\t 1 \r\n'
    content += "\r\nx\ty\t0\r\n"
    ds = read_pairs(write(tmp_path / "q.tsv", content), MRPC)
    assert ds.sentence1 == ['He said " hi " .', "x"]
    assert ds.sentence2 == ['"quoted"', "y"]
    assert ds.labels.tolist() == [1.0, 0.0]


def test_tsv_label_aliases_and_extra_columns(tmp_path: Path) -> None:
    content = "id\tlabel\tsentence2\tsentence1\n7\tequivalent\tB\tA\n8\tnot_equivalent\tD\tC\n9\t0\tF\tE\n"
    ds = read_pairs(write(tmp_path / "x.tsv", content), MRPC)
    assert ds.pairs() == [("A", "B"), ("C", "D"), ("E", "F")]
    assert ds.labels.tolist() == [1.0, 0.0, 0.0]
    bad = write(tmp_path / "y.tsv", content + "10\t1\tG\n")
    with pytest.raises(DataFormatError, match="expected 4 columns, got 3") as info:
        read_pairs(bad, MRPC)
    assert info.value.line == 5


def test_custom_columns_and_custom_task(tmp_path: Path) -> None:
    task = custom_task("toy", "multiclass", labels=("a", "b", "c"))
    content = "question\tsentence\ty\nq1\ts1\tc\nq2\ts2\t1\n"
    ds = read_pairs(write(tmp_path / "c.tsv", content), task, columns=("question", "sentence", "y"))
    assert ds.pairs() == [("q1", "s1"), ("q2", "s2")]
    assert ds.labels.tolist() == [2.0, 1.0]


def test_require_labels_false(tmp_path: Path) -> None:
    no_col = read_pairs(write(tmp_path / "a.tsv", "sentence1\tsentence2\na\tb\n"), MRPC, require_labels=False)
    assert no_col.labels is None
    assert no_col.pairs() == [("a", "b")]
    all_empty = read_pairs(write(tmp_path / "b.tsv", HEADER + "a\tb\t\nc\td\t\n"), MRPC, require_labels=False)
    assert all_empty.labels is None
    assert len(all_empty) == 2
    labelled = read_pairs(write(tmp_path / "c.tsv", HEADER + "a\tb\t1\n"), MRPC, require_labels=False)
    assert labelled.labels.tolist() == [1.0]
    mixed = write(tmp_path / "d.tsv", HEADER + "a\tb\t1\nc\td\t\ne\tf\t0\n")
    with pytest.raises(DataFormatError, match="missing label") as info:
        read_pairs(mixed, MRPC, require_labels=False)
    assert info.value.line == 3
    skipped = read_pairs(mixed, MRPC, require_labels=False, skip_bad=True)
    assert skipped.sentence1 == ["a", "e"]
    assert skipped.labels.tolist() == [1.0, 0.0]
    assert skipped.skipped == 1
    with pytest.raises(DataFormatError, match="'label'"):
        read_pairs(tmp_path / "a.tsv", MRPC)


# ---------------------------------------------------------------------------------------------
# CSV and JSON lines
# ---------------------------------------------------------------------------------------------


def test_csv_quoted_fields(tmp_path: Path) -> None:
    content = (
        "\ufeffsentence1,sentence2,label\n"
        '"Hello, world","She said ""yes"".",1\n'
        'plain,"two\nlines",0\n'
        "a,b,1\n"
    )
    ds = read_pairs(write(tmp_path / "p.csv", content), MRPC)
    assert ds.sentence1 == ["Hello, world", "plain", "a"]
    assert ds.sentence2 == ['She said "yes".', "two\nlines", "b"]
    assert ds.labels.tolist() == [1.0, 0.0, 1.0]


def test_csv_errors_use_record_start_line(tmp_path: Path) -> None:
    content = 'sentence1,sentence2,label\nplain,"two\nlines",0\n"x, y",,1\n'
    with pytest.raises(DataFormatError, match="empty sentence2") as info:
        read_pairs(write(tmp_path / "e.csv", content), MRPC)
    assert info.value.line == 4
    content = "sentence1,sentence2,label\na,b,1\na,b\n"
    with pytest.raises(DataFormatError, match="expected 3 columns, got 2") as info:
        read_pairs(write(tmp_path / "f.csv", content), MRPC)
    assert info.value.line == 3
    with pytest.raises(DataFormatError, match="header") as info:
        read_pairs(write(tmp_path / "g.csv", "s1,s2,label\na,b,1\n"), MRPC)
    assert info.value.line == 1


def test_csv_bad_utf8_line(tmp_path: Path) -> None:
    content = b"sentence1,sentence2,label\na,b,1\n\xff\xfe,c,0\nd,e,1\n"
    path = write(tmp_path / "u.csv", content)
    with pytest.raises(DataFormatError, match="invalid UTF-8") as info:
        read_pairs(path, MRPC)
    assert info.value.line == 3
    ds = read_pairs(path, MRPC, skip_bad=True)
    assert ds.sentence1 == ["a", "d"]
    assert ds.skipped == 1


def test_jsonl(tmp_path: Path) -> None:
    rows = [
        {"sentence1": " A ", "sentence2": "B", "label": 1},
        {"sentence1": "C", "sentence2": "D", "label": "0"},
        {"sentence1": "E", "sentence2": 'say "x"', "label": 1.0},
    ]
    text = "\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" + json.dumps(rows[2]) + "\n"
    ds = read_pairs(write(tmp_path / "p.jsonl", text), MRPC)
    assert ds.pairs() == [("A", "B"), ("C", "D"), ("E", 'say "x"')]
    assert ds.labels.tolist() == [1.0, 0.0, 1.0]
    one = json.dumps({"sentence1": "a", "sentence2": "b", "label": 3.8})
    stsb = read_pairs(write(tmp_path / "s.json", one), STSB)
    assert stsb.labels.tolist() == [pytest.approx(3.8)]


@pytest.mark.parametrize(
    ("lines", "line", "fragment"),
    [
        (['{"sentence1": "a", "sentence2": "b", "label": 1}', '{"sentence1": "a", "sentence2": '], 2,
         "invalid JSON"),
        (['{"sentence1": "a", "label": 1}'], 1, "missing key 'sentence2'"),
        (['{"sentence1": "a", "sentence2": "b"}'], 1, "missing key 'label'"),
        (['{"sentence1": "a", "sentence2": "b", "label": null}'], 1, "missing label"),
        (['["a", "b", 1]'], 1, "expected a JSON object"),
        (['{"sentence1": "a", "sentence2": 5, "label": 1}'], 1, "sentence2 is a int"),
        (['{"sentence1": " ", "sentence2": "b", "label": 1}'], 1, "empty sentence1"),
        (['{"sentence1": "a", "sentence2": "b", "label": 1}',
          '{"sentence1": "a", "sentence2": "b", "label": 3}'], 2, "unknown label '3'"),
        (['{"sentence1": "a", "sentence2": "b", "label": true}'], 1, "boolean"),
        ([], 1, "file is empty"),
    ],
)
def test_jsonl_bad_rows(tmp_path: Path, lines: list[str], line: int, fragment: str) -> None:
    path = write(tmp_path / "bad.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(DataFormatError) as info:
        read_pairs(path, MRPC)
    assert info.value.line == line
    assert fragment in info.value.problem


def test_jsonl_skip_bad_and_unlabelled(tmp_path: Path) -> None:
    text = b'{"sentence1": "a", "sentence2": "b"}\nnot json\n{"sentence1": "\xc3\x28", "sentence2": "d"}\n' \
        b'{"sentence1": "c", "sentence2": "d"}\n'
    path = write(tmp_path / "u.jsonl", text)
    ds = read_pairs(path, MRPC, skip_bad=True, require_labels=False)
    assert ds.labels is None
    assert ds.pairs() == [("a", "b"), ("c", "d")]
    assert ds.skipped == 2
    assert [p.split(":")[1] for p in ds.problems] == ["2", "3"]
    assert "invalid UTF-8" in ds.problems[1]


def test_json_array_is_rejected_clearly(tmp_path: Path) -> None:
    path = write(tmp_path / "arr.json", '[{"sentence1": "a", "sentence2": "b", "label": 1}]')
    with pytest.raises(DataFormatError, match="JSON array") as info:
        read_pairs(path, MRPC)
    assert info.value.line == 1


# ---------------------------------------------------------------------------------------------
# read_sentences
# ---------------------------------------------------------------------------------------------


def test_read_sentences_txt(tmp_path: Path) -> None:
    path = write(tmp_path / "c.txt", "\ufeff one \ntwo\r\nthree\n\n")
    assert read_sentences(path) == ["one", "two", "three"]
    with pytest.raises(DataFormatError, match="blank line") as info:
        read_sentences(write(tmp_path / "b.txt", "one\n\nthree\n"))
    assert info.value.line == 2
    with pytest.raises(DataFormatError, match="empty") as info:
        read_sentences(write(tmp_path / "e.txt", ""))
    assert info.value.line == 1
    with pytest.raises(DataFormatError, match="invalid UTF-8") as info:
        read_sentences(write(tmp_path / "u.txt", b"ok\nalso ok\nbad \x80 byte\n"))
    assert info.value.line == 3
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_sentences(tmp_path / "missing.txt")


def test_read_sentences_tables(tmp_path: Path) -> None:
    tsv = write(tmp_path / "c.tsv", 'id\tsentence\n1\tsay "hi"\n2\tbye\n')
    assert read_sentences(tsv) == ['say "hi"', "bye"]
    assert read_sentences(tsv, column="id") == ["1", "2"]
    first = write(tmp_path / "f.tsv", "text\tother\nalpha\tx\nbeta\ty\n")
    assert read_sentences(first) == ["alpha", "beta"]
    with pytest.raises(DataFormatError, match="no column 'nope'") as info:
        read_sentences(first, column="nope")
    assert info.value.line == 1
    with pytest.raises(DataFormatError, match="empty sentence") as info:
        read_sentences(write(tmp_path / "g.tsv", "sentence\tx\na\t1\n \t2\n"))
    assert info.value.line == 3
    with pytest.raises(DataFormatError, match="expected 2 columns, got 1") as info:
        read_sentences(write(tmp_path / "h.tsv", "sentence\tx\na\t1\nb\n"))
    assert info.value.line == 3
    csv_file = write(tmp_path / "c.csv", 'sentence,n\n"a, b",1\nc,2\n')
    assert read_sentences(csv_file) == ["a, b", "c"]


def test_read_sentences_jsonl(tmp_path: Path) -> None:
    path = write(tmp_path / "c.jsonl", '{"sentence": "a"}\n"bare string"\n{"sentence": " b ", "x": 1}\n')
    assert read_sentences(path) == ["a", "bare string", "b"]
    keyed = write(tmp_path / "k.jsonl", '{"text": "a"}\n{"text": "b"}\n')
    assert read_sentences(keyed, column="text") == ["a", "b"]
    with pytest.raises(DataFormatError, match="missing key 'sentence'") as info:
        read_sentences(keyed)
    assert info.value.line == 1
    with pytest.raises(DataFormatError, match="empty text") as info:
        read_sentences(write(tmp_path / "e.jsonl", '{"text": "a"}\n{"text": ""}\n'), column="text")
    assert info.value.line == 2
