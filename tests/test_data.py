"""Tests for dsembed.data: the shared GLUE copy, strict row validation, and hub-style loading (offline)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from dsembed.data import (
    PairDataset,
    default_glue_dir,
    load_glue,
    load_hf_pairs,
    read_pairs,
    read_sentences,
)
from dsembed.data import readers as data_module
from dsembed.errors import DataFormatError
from dsembed.tasks import custom_task, get_task

MRPC = get_task("mrpc")
STSB = get_task("stsb")
RTE = get_task("rte")
QNLI = get_task("qnli")
HEADER = "sentence1\tsentence2\tlabel\n"


def write(path: Path, content: str | bytes) -> Path:
    """Write test content as bytes, so the tests control line ends, BOMs and bad bytes exactly."""
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def shared_glue() -> Path:
    try:
        root = default_glue_dir()
    except FileNotFoundError:
        pytest.skip("shared GLUE data not available")
    if not (root / "MRPC" / "train.tsv").is_file():
        pytest.skip(f"shared GLUE data not available under {root}")
    return root


# ---------------------------------------------------------------------------------------------
# The real shared GLUE files
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "split", "rows"),
    [
        ("mrpc", "train", 3668),
        ("mrpc", "dev", 408),
        ("mrpc", "test", 1725),
        ("stsb", "train", 5749),
        ("stsb", "dev", 1500),
        ("stsb", "test", 1379),
        ("rte", "train", 2490),
        ("rte", "dev", 277),
        ("qnli", "dev", 5463),
    ],
)
def test_shared_glue_row_counts(task: str, split: str, rows: int) -> None:
    ds = load_glue(task, split, data_dir=shared_glue(), source="local")
    assert len(ds) == rows
    assert ds.labels is not None
    assert ds.labels.dtype == np.float32
    assert ds.labels.shape == (rows,)
    assert ds.skipped == 0
    assert ds.problems == []
    assert all(ds.sentence1) and all(ds.sentence2)


def test_shared_glue_label_balance() -> None:
    root = shared_glue()
    mrpc = load_glue("mrpc", "train", data_dir=root, source="local")
    assert int(mrpc.labels.sum()) == 2474
    assert set(np.unique(mrpc.labels).tolist()) == {0.0, 1.0}
    # RTE/QNLI: index 1 = entailment.
    assert int(load_glue("rte", "train", data_dir=root, source="local").labels.sum()) == 1249
    assert int(load_glue("rte", "dev", data_dir=root, source="local").labels.sum()) == 146
    assert int(load_glue("qnli", "dev", data_dir=root, source="local").labels.sum()) == 2702
    stsb = load_glue("stsb", "dev", data_dir=root, source="local")
    assert stsb.labels.min() == 0.0
    assert stsb.labels.max() == 5.0


def test_shared_mrpc_quotes_read_intact() -> None:
    ds = load_glue("mrpc", "train", data_dir=shared_glue(), source="local")
    assert ds.sentence1[0] == (
        'Amrozi accused his brother , whom he called " the witness " , '
        "of deliberately distorting his evidence ."
    )
    assert ds.sentence2[0] == (
        'Referring to him as only " the witness " , Amrozi accused his brother of deliberately distorting '
        "his evidence ."
    )
    assert ds.labels[0] == 1.0
    brandeis = [i for i, s in enumerate(ds.sentence1) if '" extremely heartrending "' in s]
    assert len(brandeis) == 1
    assert ds.labels[brandeis[0]] == 1.0
    assert sum('"' in s for s in ds.sentence1 + ds.sentence2) > 100


def test_shared_glue_auto_prefers_local(monkeypatch: pytest.MonkeyPatch) -> None:
    root = shared_glue()

    def no_hub(*args: object, **kwargs: object) -> PairDataset:
        raise AssertionError("must not touch the hub when the local file exists")

    monkeypatch.setattr(data_module, "load_hf_pairs", no_hub)
    monkeypatch.setenv("DSEMBED_GLUE_DIR", str(root))
    ds = load_glue(RTE, "dev")
    assert len(ds) == 277
    assert ds.source == str(root / "RTE" / "dev.tsv")


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
    ds = read_pairs(write(tmp_path / "h.tsv", HEADER), MRPC)
    assert len(ds) == 0
    assert ds.labels is not None
    assert ds.labels.shape == (0,)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.tsv"
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        read_pairs(missing, MRPC)


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = write(tmp_path / "pairs.xlsx", "x")
    with pytest.raises(ValueError, match="unsupported"):
        read_pairs(path, MRPC)


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
# PairDataset: fingerprint, hashes, subset
# ---------------------------------------------------------------------------------------------


def make(n: int = 50) -> PairDataset:
    return PairDataset([f"first {i}" for i in range(n)], [f"second {i}" for i in range(n)],
                       np.arange(n, dtype=np.float32) % 2, source="mem")


def test_fingerprint() -> None:
    a, b = make(), make()
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 64
    b.sentence2[17] = "second 17 "
    assert a.fingerprint() != b.fingerprint()
    c = make()
    c.labels = np.zeros(len(c), dtype=np.float32)
    assert c.fingerprint() == a.fingerprint()  # labels are not part of it
    # boundaries between fields are unambiguous
    ab = PairDataset(["ab"], ["c"], None)
    a_bc = PairDataset(["a"], ["bc"], None)
    assert ab.fingerprint() != a_bc.fingerprint()
    assert PairDataset(["a", "b"], ["c", "d"], None).fingerprint() != \
        PairDataset(["b", "a"], ["d", "c"], None).fingerprint()
    assert PairDataset([], [], None).fingerprint() != PairDataset([""], [""], None).fingerprint()


def test_pair_hashes() -> None:
    a, b = make(), make()
    ha = a.pair_hashes()
    assert ha.dtype == np.uint64
    assert ha.shape == (len(a),)
    assert len(set(ha.tolist())) == len(a)
    b.sentence1[3] = "changed"
    diff = np.nonzero(ha != b.pair_hashes())[0].tolist()
    assert diff == [3]
    left, right = PairDataset(["ab"], ["c"], None), PairDataset(["a"], ["bc"], None)
    assert left.pair_hashes()[0] != right.pair_hashes()[0]


def test_subset() -> None:
    ds = make(50)
    assert ds.subset(None) is ds
    assert ds.subset(50) is ds
    assert ds.subset(80) is ds
    s1, s2 = ds.subset(10, seed=3), ds.subset(10, seed=3)
    assert len(s1) == 10
    assert s1.pairs() == s2.pairs()
    assert s1.fingerprint() == s2.fingerprint()
    assert ds.subset(10, seed=4).pairs() != s1.pairs()
    idx = [int(s.split()[1]) for s in s1.sentence1]
    assert idx == sorted(idx)  # file order kept
    assert [int(s.split()[1]) for s in s1.sentence2] == idx
    assert s1.labels.tolist() == [float(i % 2) for i in idx]
    assert len(ds.subset(0)) == 0
    with pytest.raises(ValueError):
        ds.subset(-1)


def test_pair_dataset_validation_and_pairs() -> None:
    with pytest.raises(ValueError):
        PairDataset(["a"], ["b", "c"], None)
    with pytest.raises(ValueError):
        PairDataset(["a"], ["b"], np.zeros(2))
    ds = PairDataset(["a"], ["b"], [1])  # type: ignore[arg-type]
    assert ds.labels.dtype == np.float32
    assert ds.pairs() == [("a", "b")]
    assert len(ds) == 1


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


# ---------------------------------------------------------------------------------------------
# default_glue_dir / load_glue
# ---------------------------------------------------------------------------------------------


def make_glue(root: Path) -> Path:
    (root / "MRPC").mkdir(parents=True)
    write(root / "MRPC" / "dev.tsv", HEADER + "a\tb\t1\nc\td\t0\n")
    (root / "MNLI").mkdir()
    write(root / "MNLI" / "dev_mismatched.tsv", HEADER + "p\th\tneutral\n")
    return root


def test_default_glue_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSEMBED_GLUE_DIR", str(tmp_path / "env"))
    assert default_glue_dir() == tmp_path / "env"
    monkeypatch.delenv("DSEMBED_GLUE_DIR")
    (tmp_path / "shared" / "data" / "glue").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert default_glue_dir() == tmp_path / "shared" / "data" / "glue"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert default_glue_dir() == tmp_path / "shared" / "data" / "glue"


def test_load_glue_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_glue(tmp_path / "glue")
    ds = load_glue("MRPC", "dev", data_dir=root, source="local")
    assert ds.pairs() == [("a", "b"), ("c", "d")]
    assert ds.source == str(root / "MRPC" / "dev.tsv")
    mm = load_glue("mnli", "dev_mismatched", data_dir=root)
    assert mm.labels.tolist() == [1.0]
    monkeypatch.setenv("DSEMBED_GLUE_DIR", str(root))
    assert len(load_glue(MRPC, "dev")) == 2


def test_load_glue_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_glue(tmp_path / "glue")
    with pytest.raises(FileNotFoundError) as info:
        load_glue("mrpc", "train", data_dir=root, source="local")
    message = str(info.value)
    assert str(root / "MRPC" / "train.tsv") in message
    assert "source='hub'" in message
    assert "network" in message
    with pytest.raises(ValueError, match="unknown split"):
        load_glue("mrpc", "validation", data_dir=root)
    with pytest.raises(ValueError, match="unknown split"):
        load_glue("mrpc", "dev_mismatched", data_dir=root)
    with pytest.raises(ValueError, match="source"):
        load_glue("mrpc", "dev", data_dir=root, source="web")
    with pytest.raises(KeyError):
        load_glue("nosuchtask", "dev", data_dir=root)


def test_load_glue_auto_falls_back_to_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_glue(tmp_path / "glue")
    calls: list[tuple[str, str]] = []

    def fake_hub(task: object, split: str, **kwargs: object) -> PairDataset:
        calls.append((task.name, split))  # type: ignore[attr-defined]
        return PairDataset(["h"], ["i"], np.ones(1, dtype=np.float32), source="hub:fake")

    monkeypatch.setattr(data_module, "load_hf_pairs", fake_hub)
    assert load_glue("mrpc", "train", data_dir=root).source == "hub:fake"
    assert load_glue("rte", "dev", data_dir=root, source="hub").source == "hub:fake"
    assert calls == [("mrpc", "train"), ("rte", "dev")]

    def offline(task: object, split: str, **kwargs: object) -> PairDataset:
        raise ConnectionError("no network")

    monkeypatch.setattr(data_module, "load_hf_pairs", offline)
    with pytest.raises(FileNotFoundError) as info:
        load_glue("mrpc", "train", data_dir=root)
    assert str(root / "MRPC" / "train.tsv") in str(info.value)
    assert "no network" in str(info.value)


def test_load_glue_local_skip_bad(tmp_path: Path) -> None:
    (tmp_path / "RTE").mkdir()
    write(tmp_path / "RTE" / "dev.tsv", HEADER + "a\tb\tentailment\nc\td\tyes\n")
    with pytest.raises(DataFormatError):
        load_glue("rte", "dev", data_dir=tmp_path)
    ds = load_glue("rte", "dev", data_dir=tmp_path, skip_bad=True)
    assert len(ds) == 1
    assert ds.skipped == 1


# ---------------------------------------------------------------------------------------------
# load_hf_pairs on local, hub-shaped data (never the network)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def hf_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.usefixtures("hf_offline")
def test_load_hf_pairs_parquet_folder_rte(tmp_path: Path) -> None:
    import datasets

    features = datasets.Features({
        "sentence1": datasets.Value("string"),
        "sentence2": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["entailment", "not_entailment"]),
        "idx": datasets.Value("int32"),
    })
    folder = tmp_path / "rte"
    folder.mkdir()
    train = {"sentence1": ["p1", "p2", "p3"], "sentence2": ["h1", "h2", "h3"],
             "label": [0, 1, 0], "idx": [0, 1, 2]}
    datasets.Dataset.from_dict(train, features=features).to_parquet(str(folder / "train.parquet"))
    dev = {"sentence1": [" q1 "], "sentence2": ["k1"], "label": [1], "idx": [0]}
    datasets.Dataset.from_dict(dev, features=features).to_parquet(str(folder / "validation.parquet"))
    ds = load_hf_pairs("rte", "train", path=str(folder), cache_dir=str(tmp_path / "cache"))
    # hub 0 = entailment -> our index 1 (entailment is the positive class)
    assert ds.labels.tolist() == [1.0, 0.0, 1.0]
    assert ds.pairs() == [("p1", "h1"), ("p2", "h2"), ("p3", "h3")]
    assert ds.source.startswith("hub:")
    # our "dev" is the hub's "validation" split
    dev_ds = load_hf_pairs(RTE, "dev", path=str(folder), cache_dir=str(tmp_path / "cache"))
    assert dev_ds.pairs() == [("q1", "k1")]
    assert dev_ds.labels.tolist() == [0.0]


@pytest.mark.usefixtures("hf_offline")
def test_load_hf_pairs_json_mrpc_and_test_split(tmp_path: Path) -> None:
    dev = tmp_path / "dev.jsonl"
    rows = [{"sentence1": f"a{i}", "sentence2": f"b{i}", "label": i % 2, "idx": i} for i in range(5)]
    write(dev, "".join(json.dumps(row) + "\n" for row in rows))
    test = tmp_path / "test.jsonl"
    write(test, "".join(json.dumps({"sentence1": f"t{i}", "sentence2": f"u{i}", "label": -1}) + "\n"
                        for i in range(3)))
    files = {"validation": str(dev), "test": str(test)}
    cache = str(tmp_path / "cache")
    ds = load_hf_pairs("mrpc", "dev", path="json", data_files=files, cache_dir=cache)
    assert ds.labels.tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]
    assert ds.sentence1 == [f"a{i}" for i in range(5)]
    test_ds = load_hf_pairs(MRPC, "test", path="json", data_files=files, cache_dir=cache)
    assert test_ds.labels is None
    assert len(test_ds) == 3
    # the same rows read from a local file give the same fingerprint (cache keys agree)
    assert ds.fingerprint() == read_pairs(dev, MRPC).fingerprint()


@pytest.mark.usefixtures("hf_offline")
def test_load_hf_pairs_qnli_stsb_columns(tmp_path: Path) -> None:
    qnli = tmp_path / "qnli.jsonl"
    write(qnli, json.dumps({"question": "Q?", "sentence": "S.", "label": 1}) + "\n"
          + json.dumps({"question": "R?", "sentence": "T.", "label": 0}) + "\n")
    cache = str(tmp_path / "cache")
    ds = load_hf_pairs(QNLI, "train", path="json", data_files=str(qnli), cache_dir=cache)
    assert ds.pairs() == [("Q?", "S."), ("R?", "T.")]
    assert ds.labels.tolist() == [0.0, 1.0]  # hub 1 = not_entailment -> our 0
    stsb = tmp_path / "stsb.jsonl"
    write(stsb, json.dumps({"sentence1": "a", "sentence2": "b", "label": 3.8}) + "\n"
          + json.dumps({"sentence1": "c", "sentence2": "d", "label": 0.0}) + "\n")
    st = load_hf_pairs("stsb", "train", path="json", data_files=str(stsb), cache_dir=cache)
    assert st.labels.tolist() == [pytest.approx(3.8), 0.0]
    with pytest.raises(ValueError, match="no column"):
        load_hf_pairs("rte", "train", path="json", data_files=str(qnli), cache_dir=cache)
    renamed = load_hf_pairs("rte", "train", path="json", data_files=str(qnli), cache_dir=cache,
                            columns=("question", "sentence", "label"))
    assert renamed.labels.tolist() == [0.0, 1.0]


@pytest.mark.usefixtures("hf_offline")
def test_load_hf_pairs_bad_labels(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.jsonl"
    write(mixed, json.dumps({"sentence1": "a", "sentence2": "b", "label": 1}) + "\n"
          + json.dumps({"sentence1": "c", "sentence2": "d", "label": -1}) + "\n")
    with pytest.raises(ValueError, match="row 1"):
        load_hf_pairs("mrpc", "train", path="json", data_files=str(mixed), cache_dir=str(tmp_path / "c"))
    out_of_range = tmp_path / "oor.jsonl"
    write(out_of_range, json.dumps({"sentence1": "a", "sentence2": "b", "label": 2}) + "\n")
    with pytest.raises(ValueError, match="class id 2"):
        load_hf_pairs("rte", "train", path="json", data_files=str(out_of_range),
                      cache_dir=str(tmp_path / "c"))
