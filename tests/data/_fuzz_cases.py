"""Generated reader inputs and the property every reader keeps on them (the fuzz suite and its benchmark).

Shared by ``tests/data/test_fuzz_readers.py`` (few examples, every CI run) and ``benchmarks/fuzz_readers.py``
(many examples, a recorded run), so both check the same thing. The files mix plausible rows with the faults
a probe found: random bytes, NUL, BOMs, CRLF and CR-only line ends, lone surrogates (raw and as JSON escapes),
huge lines, non-finite numbers, wrong column counts, stray quotes and empty files.

The property: a reader either returns a *correct parse* (at least one row, every text valid Unicode without
NUL, stripped and non-empty, every label finite, row counts within the file's line count) or raises a
``DsembedError`` that names the file in one line of at most :data:`MAX_MESSAGE` characters. Any other
exception is a traceback in the CLI.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

from dsembed.data import PairDataset, read_pairs, read_sentences
from dsembed.data.validate import text_problem
from dsembed.errors import DataFormatError, DsembedError
from dsembed.tasks import TaskSpec, custom_task, get_task

MAX_MESSAGE = 400  # characters of str(error), path included
OUTCOMES = ("parsed", "error", "bad_error", "invalid_parse", "traceback")

BINARY = get_task("mrpc")
REGRESSION = custom_task("score", "regression")  # no label range: finiteness is the only guard

# ---- text pieces ----------------------------------------------------------------------------------

SPECIAL = ["\x00", "\ufeff", "\r", "\n", "\t", ",", '"', "'", "\\", "\ud800", "\udfff", "\udc80", "\u2028",
           "\x85", "é", "日", "\U0001f600", " ", "\x1b", "\ufffd"]  # single characters (a text alphabet)
WORDS = ["a", "the cat sleeps", "B b", '"quoted"', 'say "hi"', " padded ", "", "   ", "x,y", "tab\there", "cr\r\nlf",
         '""', "\ud800x", "\ufeffbom", "日本語"]
LABELS = ["0", "1", " 1 ", "yes", "2", "-1", "1.0", "", "2.5", "-3", "1e3", "3.4e38", "1e39", "inf", "-inf",
          "Infinity", "nan", "NaN", "1e999", "-1e999", "1_000", "0x10", "abc", "equivalent", "not_equivalent"]

char = st.one_of(st.characters(), st.characters(), st.sampled_from(SPECIAL))
short_text = st.text(char, max_size=12)
clean_text = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=12)
huge_text = st.builds(lambda piece, n: piece * n, st.sampled_from(["x", "é", "\x00", "\t", '"', "a b", "\ud800"]),
                      st.integers(150, 60_000))
sentence = st.sampled_from(["a", "the cat sleeps", "B b", '"quoted"', 'say "hi"', " padded ", "x,y", "日本語"])
cell = st.one_of(sentence, sentence, clean_text, st.sampled_from(WORDS), short_text, huge_text)
label = st.one_of(st.sampled_from(["0", "1"]), st.sampled_from(["0", "1", "2.5", "equivalent"]),
                  st.sampled_from(LABELS), short_text, st.floats().map(repr), st.integers(-(10**50), 10**50).map(str))
GOOD_VALUES = st.sampled_from(["0", "1", " 1 ", "0.5", "4"])
line_end = st.sampled_from(["\n", "\n", "\n", "\r\n", "\r"])


def _join(lines: list[str], end: str, trailing: bool) -> str:
    return end.join(lines) + (end if trailing and lines else "")


@st.composite
def _finish(draw: st.DrawFn, text: str) -> bytes:
    """Text to bytes, with the byte-level faults: raw surrogates, a stray byte, a BOM, UTF-16, or noise."""
    data = text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes invalid UTF-8 bytes
    fault = draw(st.sampled_from(["none"] * 7 + ["bom", "bom", "byte", "utf16", "noise", "empty"]))
    if fault == "bom":
        return b"\xef\xbb\xbf" + data
    if fault == "byte":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    if fault == "utf16":
        return text.encode("utf-16", "surrogatepass")
    if fault == "noise":
        return draw(st.binary(max_size=300))
    if fault == "empty":
        return draw(st.sampled_from([b"", b"\n", b"\r\n", b"\xef\xbb\xbf", b" \n\n"]))
    return data


# ---- pair files -----------------------------------------------------------------------------------

PAIR_HEADERS = [["sentence1", "sentence2", "label"], ["sentence1", "sentence2", "label"],
                ["label", "sentence2", "sentence1"], ["sentence1", "sentence2"], ["Sentence1", "SENTENCE2", "Label"],
                ["s1", "s2", "label"], ["sentence1", "sentence2", "label", "extra"], ["sentence1", "sentence1",
                                                                                       "label"]]


def _csv_cell(value: str, quote: bool) -> str:
    return '"' + value.replace('"', '""') + '"' if quote else value


@st.composite
def table_rows(draw: st.DrawFn, delimiter: str, header: list[str] | None, value: st.SearchStrategy[str]) -> str:
    """A header (or a random line) and rows: mostly the header's width, sometimes not.

    Half the files draw their rows from good values only, so that correct parses are common too.
    """
    first = header if header is not None else draw(st.lists(cell, max_size=4))
    width = len(first)
    rows = [first]
    good = draw(st.booleans())
    cells, values = (sentence, GOOD_VALUES if value is label else sentence) if good else (cell, value)
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 7)) == 0:
            rows.append(draw(st.lists(st.one_of(cells, values), max_size=6)))  # wrong column count, or blank
        else:
            rows.append([draw(cells) for _ in range(max(width - 1, 0))] + [draw(values)])
    if delimiter == ",":
        quote = draw(st.booleans())
        lines = [",".join(_csv_cell(c, quote and draw(st.booleans())) for c in row) for row in rows]
    else:
        lines = ["\t".join(row) for row in rows]
    return _join(lines, draw(line_end), draw(st.booleans()))


@st.composite
def pair_table(draw: st.DrawFn, delimiter: str) -> bytes:
    header = draw(st.sampled_from([*PAIR_HEADERS, None]))
    return draw(_finish(draw(table_rows(delimiter, header, label))))


json_value = st.recursive(
    st.one_of(cell, label, st.floats(), st.integers(-(10**30), 10**30), st.none(), st.booleans(),
              st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e39, 10**400])),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6)
RAW_JSON_LINES = ['{"sentence1": "a", "sentence2": "b", "label": 1e999}', '{"sentence1": "a", "sentence2": "b", '
                  '"label": NaN}', "[" * 3000, '"bare"', "not json", "{", "[1, 2]", "null", "{}",
                  '{"sentence1": "a", "sentence2": "b", "label": 1' + "0" * 5000 + "}", '{"sentence1": "\\ud800"}',
                  '{"sentence": "\\udfff", "sentence1": "\\u0000", "sentence2": "b", "label": 0}']


@st.composite
def json_line(draw: st.DrawFn, keys: list[str]) -> str:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from(RAW_JSON_LINES))
    if kind == 1:
        return draw(short_text)
    if kind == 2:
        return json.dumps(draw(json_value), ensure_ascii=draw(st.booleans()))
    obj: dict[str, Any] = {}
    if kind < 6:  # a good row
        obj = {key: draw(sentence) for key in keys if key != "label"}
        if "label" in keys:
            obj["label"] = draw(st.sampled_from([0, 1, "1", 0.5]))
        return json.dumps(obj, ensure_ascii=draw(st.booleans()))
    for key in keys:
        if draw(st.integers(0, 9)):
            obj[key] = draw(st.one_of(cell, cell, cell, json_value) if key != "label" else
                            st.one_of(st.integers(0, 1), st.integers(0, 1), st.floats(), label, json_value))
    if draw(st.booleans()):
        obj["extra"] = draw(json_value)
    return json.dumps(obj, ensure_ascii=draw(st.booleans()))  # ensure_ascii=False keeps raw surrogates


@st.composite
def pair_jsonl(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.one_of(json_line(["sentence1", "sentence2", "label"]), st.just("")), max_size=7))
    return draw(_finish(_join(lines, draw(line_end), draw(st.booleans()))))


# ---- sentence files -------------------------------------------------------------------------------


@st.composite
def sentence_txt(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(draw(st.sampled_from([cell, sentence])), max_size=8))
    return draw(_finish(_join(lines, draw(line_end), draw(st.booleans()))))


@st.composite
def sentence_table(draw: st.DrawFn, delimiter: str) -> bytes:
    header = draw(st.sampled_from([["sentence"], ["sentence", "id"], ["id", "sentence"], ["text"], None]))
    return draw(_finish(draw(table_rows(delimiter, header, cell))))


@st.composite
def sentence_jsonl(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 7))):
        if draw(st.booleans()):
            lines.append(json.dumps(draw(cell), ensure_ascii=draw(st.booleans())))
        else:
            lines.append(draw(json_line(["sentence"])))
    return draw(_finish(_join(lines, draw(line_end), draw(st.booleans()))))


# ---- targets and the property ---------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One reader on one format: how to generate its files and options, and how to call it."""

    name: str
    suffix: str
    files: st.SearchStrategy[bytes]
    options: st.SearchStrategy[dict[str, Any]]
    read: Callable[..., Any]
    task: TaskSpec | None = None


def _pair_options() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"skip_bad": st.booleans(), "require_labels": st.booleans()})


def _pair_target(fmt: str, task: TaskSpec) -> Target:
    files = pair_jsonl() if fmt == "jsonl" else pair_table("\t" if fmt == "tsv" else ",")
    kind = "binary" if task is BINARY else "regression"
    return Target(f"read_pairs/{fmt}/{kind}", f".{fmt}", files, _pair_options(),
                  lambda path, **kw: read_pairs(path, task, **kw), task)


def _sentence_target(fmt: str) -> Target:
    files = {"txt": sentence_txt(), "tsv": sentence_table("\t"), "csv": sentence_table(","),
             "jsonl": sentence_jsonl()}[fmt]
    columns = st.just(None) if fmt == "txt" else st.sampled_from([None, None, "sentence", "text"])
    return Target(f"read_sentences/{fmt}", f".{fmt}", files, st.fixed_dictionaries({"column": columns}),
                  read_sentences)


TARGETS: dict[str, Target] = {t.name: t for t in [
    *(_pair_target(fmt, task) for fmt in ("tsv", "csv", "jsonl") for task in (BINARY, REGRESSION)),
    *(_sentence_target(fmt) for fmt in ("txt", "tsv", "csv", "jsonl")),
]}


def line_count(data: bytes) -> int:
    """Lines as the readers number them (split on \\n)."""
    return data.count(b"\n") + 1


def _text_problems(texts: list[Any]) -> str:
    for text in texts:
        if not isinstance(text, str) or not text or text != text.strip():
            return f"bad text {text!r:.80}"
        problem = text_problem(text)
        if problem:
            return problem
    return ""


def invalid_parse(target: Target, result: Any, data: bytes, options: dict[str, Any]) -> str:
    """Why a returned result is not a correct parse ("" when it is)."""
    lines = line_count(data)
    if target.task is None:
        if not isinstance(result, list) or not result:
            return f"not a non-empty list: {type(result).__name__}"
        if len(result) > lines:
            return f"{len(result)} sentences from {lines} lines"
        return _text_problems(result)
    if not isinstance(result, PairDataset) or len(result) == 0:
        return "no rows returned"
    if len(result.sentence1) != len(result.sentence2) or len(result) + result.skipped > lines:
        return f"{len(result)} rows + {result.skipped} skipped from {lines} lines"
    if result.skipped and not options.get("skip_bad"):
        return "rows skipped without skip_bad"
    problem = _text_problems(result.sentence1 + result.sentence2)
    if problem:
        return problem
    if result.labels is None:
        return "labels missing though required" if options.get("require_labels", True) else ""
    labels = result.labels
    if labels.dtype != np.float32 or labels.shape != (len(result),) or not np.isfinite(labels).all():
        return f"labels {labels!r:.120}"
    if target.task.kind == "binary" and not set(labels.tolist()) <= {0.0, 1.0}:
        return f"binary labels {sorted(set(labels.tolist()))[:5]}"
    return ""


def error_problem(exc: DsembedError, path: Path, data: bytes) -> str:
    """Why an error is not a good one-line error ("" when it is)."""
    message = str(exc)
    if "\n" in message or "\r" in message:
        return "message is not one line"
    if len(message) > MAX_MESSAGE:
        return f"message has {len(message)} characters"
    if str(path) not in message:
        return "message does not name the file"
    if isinstance(exc, DataFormatError) and not 1 <= exc.line <= line_count(data):
        return f"line {exc.line} outside the file's {line_count(data)} lines"
    return ""


def outcome(target: Target, path: Path, data: bytes, options: dict[str, Any]) -> tuple[str, str]:
    """Write ``data`` to ``path``, read it, and classify: one of :data:`OUTCOMES`, with a detail."""
    path.write_bytes(data)
    try:
        result = target.read(path, **options)
    except DsembedError as exc:
        problem = error_problem(exc, path, data)
        return ("bad_error", f"{problem}: {str(exc)[:300]!r}") if problem else ("error", str(exc))
    except Exception as exc:  # noqa: BLE001 - the whole point: anything else is a traceback in the CLI
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return "traceback", f"{type(exc).__name__}: {str(exc)[:200]} ({Path(where.filename).name}:{where.lineno})"
    problem = invalid_parse(target, result, data, options)
    return ("invalid_parse", problem) if problem else ("parsed", "")
