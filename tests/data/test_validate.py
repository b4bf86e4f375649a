"""dsembed.data.validate and the holes it closes in every reader: one case per decision, with its line."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from _data_files import HEADER, write

from dsembed.data import read_pairs, read_sentences
from dsembed.data.validate import (
    MAX_PROBLEM_CHARS,
    Where,
    check_file,
    check_number,
    check_text,
    clip,
    number_problem,
    one_line,
    quote,
    text_problem,
)
from dsembed.errors import DataFormatError, DsembedError, InputNotFoundError
from dsembed.tasks import custom_task, get_task

MRPC = get_task("mrpc")
REG = custom_task("score", "regression")  # no label range: only the finiteness check stands in the way
CSV_HEADER = "sentence1,sentence2,label\n"


def jsonl_row(s1: object, s2: object, label: object) -> str:
    return json.dumps({"sentence1": s1, "sentence2": s2, "label": label}) + "\n"


def fails(fn: Callable[[], object], line: int, *fragments: str) -> DataFormatError:
    """The call raises DataFormatError at ``line``, one line of bounded length, with every fragment."""
    with pytest.raises(DataFormatError) as info:
        fn()
    err = info.value
    assert err.line == line, str(err)
    for fragment in fragments:
        assert fragment in err.problem, str(err)
    assert "\n" not in str(err) and len(err.problem) <= MAX_PROBLEM_CHARS
    return err


# ---------------------------------------------------------------------------------------------
# The building blocks
# ---------------------------------------------------------------------------------------------


def test_quote_and_clip_bound_what_a_message_shows() -> None:
    assert quote("maybe") == "'maybe'"
    long = quote("x" * 5_000_000)
    assert long.startswith("'xxx") and long.endswith("… (5,000,000 characters)") and len(long) < 240
    escaped = quote("\x00" * 1000)  # escapes are 4 characters each: the cut counts the repr
    assert len(escaped) < 240 and "(1,000 characters)" in escaped
    assert clip("abc", 5) == "abc"
    assert clip("abcdef", 3) == "abc… (6 characters)"
    assert clip("abcdef", 3, total=10, of=" in the line") == "abc… (10 characters in the line)"
    assert one_line("a\nb\rc") == "a\\nb\\rc"
    assert len(one_line("y" * 10_000)) < MAX_PROBLEM_CHARS + 30


def test_text_and_number_problems() -> None:
    assert text_problem("plain") is None
    assert text_problem("café \ufeff 日本 \u2028") is None  # valid Unicode, BOM character kept inside a text
    assert "U+D800 at character 3" in text_problem("ab\ud800", "sentence1")  # type: ignore[operator]
    assert "NUL character" in text_problem("a\x00b")  # type: ignore[operator]
    for good in (0, 1.5, -3.4e38, np.float32(2.0), np.int64(3)):
        assert number_problem(good) is None
    for bad in (float("inf"), float("-inf"), float("nan"), 1e39, 10**400, "1", True, None):
        assert number_problem(bad, "label") is not None, bad
    assert "float32" in number_problem(1e39)  # type: ignore[operator]
    with pytest.raises(DataFormatError) as info:
        check_text("x\x00", Where("request", 4), "sentence")
    assert str(info.value).startswith("request:4: sentence contains a NUL")
    with pytest.raises(DataFormatError, match="not a finite number"):
        check_number(float("nan"), ("f.tsv", 2), "label")
    check_text("fine", ("f.tsv", 1))
    check_number(4.5, ("f.tsv", 1))


# ---------------------------------------------------------------------------------------------
# Finite numbers only
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "nan", "NaN", "1e999", "-1e999", "1e39"])
@pytest.mark.parametrize("suffix", [".tsv", ".csv"])
def test_non_finite_regression_labels_are_rejected(tmp_path: Path, suffix: str, value: str) -> None:
    sep = "\t" if suffix == ".tsv" else ","
    content = sep.join(["sentence1", "sentence2", "label"]) + "\n" + sep.join(["a", "b", "2.5"]) + "\n" \
        + sep.join(["c", "d", value]) + "\n" + sep.join(["e", "f", "0.5"]) + "\n"
    path = write(tmp_path / f"r{suffix}", content)
    err = fails(lambda: read_pairs(path, REG), 3, "bad label for task 'score'", repr(value))
    assert str(err).startswith(f"{path}:3: ")
    ds = read_pairs(path, REG, skip_bad=True)
    assert ds.labels.tolist() == [2.5, 0.5] and ds.skipped == 1 and np.isfinite(ds.labels).all()


@pytest.mark.parametrize("literal", ["Infinity", "-Infinity", "NaN", "1e999", "1e39", "1" + "0" * 400])
def test_non_finite_jsonl_labels_are_rejected(tmp_path: Path, literal: str) -> None:
    good = jsonl_row("a", "b", 1.5)
    path = write(tmp_path / "r.jsonl", good + '{"sentence1": "c", "sentence2": "d", "label": ' + literal + "}\n")
    fails(lambda: read_pairs(path, REG), 2, "bad label")
    fails(lambda: read_pairs(path, REG, require_labels=False), 2, "bad label")  # NaN is not "no label"
    ds = read_pairs(path, REG, skip_bad=True)
    assert ds.labels.tolist() == [1.5] and ds.skipped == 1


def test_finite_extremes_still_parse(tmp_path: Path) -> None:
    path = write(tmp_path / "ok.tsv", HEADER + "a\tb\t3.4e38\nc\td\t-1e-50\ne\tf\t 7 \n")
    assert read_pairs(path, REG).labels.tolist() == [pytest.approx(3.4e38), -0.0, 7.0]


# ---------------------------------------------------------------------------------------------
# Valid Unicode, NUL, BOM, CRLF
# ---------------------------------------------------------------------------------------------


def test_lone_surrogates_in_jsonl_are_rejected(tmp_path: Path) -> None:
    pairs = write(tmp_path / "s.jsonl", jsonl_row("ok", "fine", 1) + '{"sentence1": "a\\ud800", "sentence2": "b", '
                  '"label": 1}\n' + jsonl_row("x", "y", 0))
    fails(lambda: read_pairs(pairs, MRPC), 2, "sentence1 has a lone UTF-16 surrogate U+D800 at character 2")
    ds = read_pairs(pairs, MRPC, skip_bad=True)
    assert ds.sentence1 == ["ok", "x"] and ds.skipped == 1
    paired = write(tmp_path / "p.jsonl", '{"sentence1": "\\ud83d\\ude00", "sentence2": "b", "label": 1}\n')
    assert read_pairs(paired, MRPC).sentence1 == ["\U0001f600"]  # an escaped pair is one valid character
    sentences = write(tmp_path / "t.jsonl", '"one"\n"\\udc80 two"\n')
    fails(lambda: read_sentences(sentences), 2, "U+DC80")
    keyed = write(tmp_path / "k.jsonl", '{"text": "\\udfff"}\n')
    fails(lambda: read_sentences(keyed, column="text"), 1, "text has a lone UTF-16 surrogate")


def test_raw_surrogate_bytes_are_invalid_utf8(tmp_path: Path) -> None:
    raw = "\ud800".encode("utf-8", "surrogatepass")  # CESU-style bytes: not UTF-8
    path = write(tmp_path / "s.tsv", HEADER.encode() + b"a\tb\t1\n" + raw + b"\tc\t0\n")
    fails(lambda: read_pairs(path, MRPC), 3, "invalid UTF-8")
    fails(lambda: read_sentences(write(tmp_path / "s.txt", b"ok\n" + raw + b"\n")), 2, "invalid UTF-8")


@pytest.mark.parametrize(
    ("name", "content", "line", "reader"),
    [
        ("n.tsv", HEADER + "a\tb\t1\nc\x00\td\t0\n", 3, "pairs"),
        ("n.csv", CSV_HEADER + "a,b,1\n\"c\x00\",d,0\n", 3, "pairs"),
        ("n.jsonl", jsonl_row("a", "b", 1) + jsonl_row("c", "d\x00", 0), 2, "pairs"),
        ("n.txt", "one\ntw\x00o\n", 2, "sentences"),
        ("ns.tsv", "sentence\nok\nx\x00\n", 3, "sentences"),
        ("ns.jsonl", '"ok"\n"a\\u0000b"\n', 2, "sentences"),
    ],
)
def test_nul_inside_a_field_is_rejected(tmp_path: Path, name: str, content: str, line: int, reader: str) -> None:
    path = write(tmp_path / name, content)
    if reader == "pairs":
        fails(lambda: read_pairs(path, MRPC), line, "NUL character")
        ds = read_pairs(path, MRPC, skip_bad=True)
        assert len(ds) == 1 and ds.skipped == 1
    else:
        fails(lambda: read_sentences(path), line, "NUL character")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("p.tsv", HEADER + 'a "q"\tb\t1\nc\td\t0\n'),
        ("p.csv", CSV_HEADER + '"a, x",b,1\nc,"d\nmore",0\n'),
        ("p.jsonl", jsonl_row("a", "b", 1) + jsonl_row("c", "d", 0)),
    ],
)
def test_bom_and_crlf_parse_as_without_them(tmp_path: Path, name: str, content: str) -> None:
    plain = read_pairs(write(tmp_path / name, content), MRPC)
    for variant in ("\ufeff" + content, content.replace("\n", "\r\n"), "\ufeff" + content.replace("\n", "\r\n")):
        ds = read_pairs(write(tmp_path / name, variant), MRPC)
        assert ds.pairs() == plain.pairs() and ds.labels.tolist() == plain.labels.tolist()


def test_bom_and_crlf_in_sentence_files(tmp_path: Path) -> None:
    for name, content in (("s.txt", "one\ntwo\n"), ("s.tsv", "sentence\none\ntwo\n"), ("s.jsonl", '"one"\n"two"\n')):
        for variant in (content, "\ufeff" + content, "\ufeff" + content.replace("\n", "\r\n")):
            assert read_sentences(write(tmp_path / name, variant)) == ["one", "two"], (name, variant)


def test_utf16_and_cr_only_files_are_named_not_mangled(tmp_path: Path) -> None:
    utf16 = write(tmp_path / "u.tsv", (HEADER + "a\tb\t1\n").encode("utf-16"))
    fails(lambda: read_pairs(utf16, MRPC, skip_bad=True), 1, "UTF-16")
    fails(lambda: read_sentences(write(tmp_path / "u.txt", "one\ntwo\n".encode("utf-16"))), 1, "UTF-16")
    cr_only = write(tmp_path / "mac.txt", "one\rtwo\rthree\r")  # would be read as ONE sentence
    fails(lambda: read_sentences(cr_only), 1, "carriage return", "character 4")
    assert read_sentences(write(tmp_path / "ok.txt", "one\r\r\ntwo\r\n")) == ["one", "two"]


# ---------------------------------------------------------------------------------------------
# Regular files only
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_hang() -> Iterator[None]:
    """Fail instead of blocking forever if a reader ever opens a FIFO."""
    def alarm(*_: object) -> None:
        raise TimeoutError("a reader blocked on a FIFO")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.usefixtures("no_hang")
def test_only_regular_files_are_read(tmp_path: Path) -> None:
    for name in ("x.tsv", "x.txt", "x.jsonl", "x.csv"):
        (tmp_path / name).mkdir()
        with pytest.raises(InputNotFoundError) as info:
            read_sentences(tmp_path / name)
        assert str(info.value) == f"{tmp_path / name} is a folder, not a data file"
    with pytest.raises(InputNotFoundError, match="is a folder"):
        read_pairs(tmp_path / "x.jsonl", MRPC, skip_bad=True)
    fifo = tmp_path / "pipe.tsv"
    os.mkfifo(fifo)
    with pytest.raises(InputNotFoundError) as info:
        read_pairs(fifo, MRPC)
    assert str(info.value) == f"{fifo} is a FIFO (named pipe), not a regular data file"
    with pytest.raises(InputNotFoundError, match="FIFO"):
        read_sentences(fifo)
    under_a_file = write(tmp_path / "plain.txt", "x\n") / "inner.tsv"
    with pytest.raises(InputNotFoundError) as info:
        read_pairs(under_a_file, MRPC)
    assert str(info.value) == f"data file not found: {under_a_file}"
    check_file(tmp_path / "plain.txt")
    link = tmp_path / "link.txt"
    link.symlink_to(tmp_path / "plain.txt")
    assert read_sentences(link) == ["x"]


def test_unreadable_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "secret.txt", "x\n")

    def denied(self: Path) -> bytes:  # chmod 0 does not stop root, so the refusal is simulated
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(InputNotFoundError) as info:
        read_sentences(path)
    assert str(info.value) == f"cannot read data file {path}: Permission denied"


# ---------------------------------------------------------------------------------------------
# Non-empty data
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("h.tsv", HEADER, "no rows: the file has a header but no data rows"),
        ("h.csv", CSV_HEADER + "\n\n", "no rows: the file has a header but no data rows"),
        ("e.tsv", "", "file is empty"),
        ("e.jsonl", "\n \n", "file is empty"),
    ],
)
def test_no_rows_is_an_error_naming_the_file(tmp_path: Path, name: str, content: str, fragment: str) -> None:
    path = write(tmp_path / name, content)
    err = fails(lambda: read_pairs(path, MRPC), 1, fragment)
    assert str(err).startswith(f"{path}:1: ")
    fails(lambda: read_pairs(path, MRPC, skip_bad=True, require_labels=False), 1, fragment)


def test_all_rows_bad_with_skip_bad_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.tsv", HEADER + "a\tb\tmaybe\nonly one\nc\td\tinf\n")
    fails(lambda: read_pairs(path, MRPC, skip_bad=True), 2, "no rows left: all 3 data row(s) are bad",
          "the first, at line 2: bad label")
    jsonl = write(tmp_path / "bad.jsonl", "nope\n[1]\n")
    fails(lambda: read_pairs(jsonl, MRPC, skip_bad=True), 1, "no rows left: all 2", "invalid JSON")


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("h.tsv", "sentence\tid\n", "no sentences: the file has a header but no data rows"),
        ("h.csv", "sentence\n", "no sentences"),
        ("e.txt", "", "file is empty"),
        ("b.txt", "\ufeff\n\n", "file is empty"),
        ("e.jsonl", "", "file is empty"),
    ],
)
def test_no_sentences_is_an_error(tmp_path: Path, name: str, content: str, fragment: str) -> None:
    path = write(tmp_path / name, content)
    err = fails(lambda: read_sentences(path), 1, fragment)
    assert str(err).startswith(f"{path}:1: ")


# ---------------------------------------------------------------------------------------------
# Long lines are quoted, not echoed
# ---------------------------------------------------------------------------------------------


BIG = 5_000_000
HUGE_CASES: dict[str, tuple[Callable[[], str | bytes], str, int]] = {  # built in the test, not at collection
    "hh.tsv": (lambda: "x" * BIG + "\ty\n", "pairs", 1),
    "hh.csv": (lambda: "x" * 100_000 + ",y\n", "pairs", 1),
    "lab.tsv": (lambda: HEADER + "a\tb\t" + "m" * BIG + "\n", "pairs", 2),
    "reg.tsv": (lambda: HEADER + "a\tb\t1" + "0" * BIG + "\n", "regression", 2),
    "lab.jsonl": (lambda: '{"sentence1": "a", "sentence2": "b", "label": "' + "z" * BIG + '"}\n', "pairs", 1),
    "dict.jsonl": (lambda: '{"sentence1": "a", "sentence2": "b", "label": {"k": "' + "z" * BIG + '"}}\n', "pairs",
                   1),
    "bad.jsonl": (lambda: '{"sentence1": "' + "q" * BIG + "\n", "pairs", 1),
    "col.tsv": (lambda: "w" * BIG + "\n", "sentences", 1),
    "utf.txt": (lambda: ("é" * BIG).encode() + b"\xff\n", "sentences", 1),
}


@pytest.mark.parametrize("name", sorted(HUGE_CASES))
def test_huge_lines_are_quoted_briefly(tmp_path: Path, name: str) -> None:
    content, reader, line = HUGE_CASES[name]
    path = write(tmp_path / name, content())
    if reader == "sentences":
        err = fails(lambda: read_sentences(path, column="nope" if name.endswith(".tsv") else None), line)
    else:
        err = fails(lambda: read_pairs(path, REG if reader == "regression" else MRPC), line)
    assert len(str(err)) <= len(str(path)) + 2 + 10 + MAX_PROBLEM_CHARS
    if len(err.problem) > 150:  # a quoted value was cut, and the message says how long it was
        assert "…" in err.problem and "characters" in err.problem, err.problem


def test_quoted_header_says_how_long_the_line_was(tmp_path: Path) -> None:
    path = write(tmp_path / "h.tsv", "x" * 1000 + "\tlabel\n")
    err = fails(lambda: read_pairs(path, MRPC), 1, "'sentence1', 'sentence2'", "1,006 characters in the header line",
                "the first line must be a header")
    assert len(err.problem) <= MAX_PROBLEM_CHARS


def test_messages_do_not_change_for_short_values(tmp_path: Path) -> None:
    path = write(tmp_path / "m.tsv", HEADER + "a\tb\tmaybe\n")
    err = fails(lambda: read_pairs(path, MRPC), 2)
    assert err.problem == "bad label for task 'mrpc': unknown label 'maybe' (expected one of 0, 1)"


# ---------------------------------------------------------------------------------------------
# Other JSON failures that used to be tracebacks
# ---------------------------------------------------------------------------------------------


def test_json_nesting_and_huge_integers_are_line_errors(tmp_path: Path) -> None:
    deep = write(tmp_path / "deep.jsonl", "[" * 100_000 + "\n")
    fails(lambda: read_sentences(deep), 1, "invalid JSON: nested too deeply")
    digits = write(tmp_path / "digits.jsonl", '{"sentence1": "a", "sentence2": "b", "label": 1' + "0" * 5000 + "}\n")
    fails(lambda: read_pairs(digits, REG), 1, "invalid JSON: a number is too long")
    ds = read_pairs(write(tmp_path / "mix.jsonl", "[" * 100_000 + "\n" + jsonl_row("a", "b", 1)), MRPC, skip_bad=True)
    assert ds.pairs() == [("a", "b")] and ds.skipped == 1


def test_every_error_here_is_a_dsembed_error(tmp_path: Path) -> None:
    """The CLI turns DsembedError into one line; these used to be other exceptions (tracebacks)."""
    cases = [write(tmp_path / "a.jsonl", "[" * 100_000 + "\n"), tmp_path]
    for path in cases:
        with pytest.raises(DsembedError):
            read_sentences(path if path.suffix else path / "missing.txt")
