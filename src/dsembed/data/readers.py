"""Strict readers for sentence-pair and sentence files: TSV, CSV, JSON lines and plain text.

Every later stage (teacher scoring, distillation, evaluation) trusts these lists, so reading is
strict: a malformed row is reported with its file and line instead of being silently mangled
(default CSV quoting corrupts MRPC, a stray tab shifts labels). ``skip_bad=True`` trades that
strictness for a count of what was dropped. The checks every value passes (valid Unicode, no NUL, finite
labels, regular files, bounded messages) live in ``validate.py``, shared with the hub loader and the service.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataFormatError
from ..tasks import TaskSpec
from .pairs import PairDataset
from .records import Problems, decode_lines, json_rows, read_bytes, tabular_records
from .validate import QUOTE_CHARS, clip, data_error, number_problem, quote, shown, text_problem

PathLike = str | os.PathLike[str]

PAIR_SUFFIXES = (".tsv", ".csv", ".jsonl", ".json")
SENTENCE_SUFFIXES = (".txt", *PAIR_SUFFIXES)


# --------------------------------------------------------------------------------------------------
# Pair validation
# --------------------------------------------------------------------------------------------------


def _find_column(header: list[str], name: str) -> int | None:
    """Index of ``name`` in the header (exact match first, then case-insensitive)."""
    if name in header:
        return header.index(name)
    lowered = [h.lower() for h in header]
    return lowered.index(name.lower()) if name.lower() in lowered else None


def label_text(value: Any, task: TaskSpec) -> str | None:
    """A JSON / hub label value as the string ``parse_label`` expects; None means missing.

    Shared with the hub loader (``glue.py``) so that both accept the same label values.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"label {value!r} is a boolean, not a label")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if task.kind != "regression" and value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"label {shown(value)} is a {type(value).__name__}, not a string or number")


class _PairBuilder:
    """Validates rows one by one and accumulates the columns of a PairDataset."""

    def __init__(self, path: Path, task: TaskSpec, problems: Problems, columns: tuple[str, str, str],
                 require_labels: bool) -> None:
        self.path = path
        self.task = task
        self.problems = problems
        self.columns = columns
        self.require_labels = require_labels
        self.sentence1: list[str] = []
        self.sentence2: list[str] = []
        self.labels: list[float] = []
        self.lines: list[int] = []
        self.missing_label_rows: list[int] = []  # row positions (only when labels are optional)
        self._cache: dict[str, float] = {}

    def add(self, line: int, s1: Any, s2: Any, label: str | None) -> None:
        """Add one row or report its first problem; ``label=None`` means the label is absent/empty."""
        for name, value in ((self.columns[0], s1), (self.columns[1], s2)):
            if not isinstance(value, str):
                kind = "null" if value is None else f"a {type(value).__name__}"
                self.problems.bad(line, f"{name} is {kind}, expected a string")
                return
            problem = text_problem(value, name)
            if problem is not None:
                self.problems.bad(line, problem)
                return
        s1, s2 = s1.strip(), s2.strip()
        if not s1:
            self.problems.bad(line, f"empty {self.columns[0]}")
            return
        if not s2:
            self.problems.bad(line, f"empty {self.columns[1]}")
            return
        label = None if label is None else label.strip()
        if not label:
            if self.require_labels:
                self.problems.bad(line, f"missing label ({self.columns[2]} is empty)")
                return
            value = math.nan
            self.missing_label_rows.append(len(self.labels))
        else:
            cached = self._cache.get(label)
            if cached is None:
                try:
                    cached = self.task.parse_label(label)
                except ValueError as exc:
                    self.problems.bad(line, f"bad label for task {self.task.name!r}: {_label_message(exc, label)}")
                    return
                problem = number_problem(cached, f"label {quote(label)}")
                if problem is not None:  # inf, 1e999, 1e39 parse as numbers but would train an all-NaN model
                    self.problems.bad(line, f"bad label for task {self.task.name!r}: {problem}")
                    return
                self._cache[label] = cached
            value = cached
        self.sentence1.append(s1)
        self.sentence2.append(s2)
        self.labels.append(value)
        self.lines.append(line)

    def finish(self, has_label_column: bool, header_line: int = 1, allow_empty: bool = False) -> PairDataset:
        """Decide labelled vs unlabelled: all labels absent -> None; a partial mix is an error.

        No rows at all is an error naming the file (unless ``allow_empty``): every later stage would crash
        on it far from the cause, or (regression metrics of nothing) produce NaN.
        """
        labels: np.ndarray | None
        all_missing = bool(self.missing_label_rows) and len(self.missing_label_rows) == len(self.labels)
        if not has_label_column or all_missing:
            labels = None
        else:
            drop = set()
            for row in self.missing_label_rows:
                self.problems.bad(self.lines[row], "missing label (other rows are labelled)")
                drop.add(row)
            if drop:
                keep = [i for i in range(len(self.labels)) if i not in drop]
                self.sentence1 = [self.sentence1[i] for i in keep]
                self.sentence2 = [self.sentence2[i] for i in keep]
                self.labels = [self.labels[i] for i in keep]
            labels = np.asarray(self.labels, dtype=np.float32)
        if not self.sentence1 and not allow_empty:
            raise self._no_rows(header_line)
        self.problems.log()
        return PairDataset(self.sentence1, self.sentence2, labels, source=str(self.path),
                           skipped=self.problems.count, problems=list(self.problems.messages))

    def _no_rows(self, header_line: int) -> DataFormatError:
        """The error for a dataset with no rows: none in the file, or all of them skipped as bad."""
        first = self.problems.first
        if first is None:
            return data_error(self.path, header_line, "no rows: the file has a header but no data rows")
        line, problem = first
        return data_error(self.path, line, f"no rows left: all {self.problems.count} data row(s) are bad and were "
                                           f"skipped; the first, at line {line}: {problem}")


def _label_message(exc: ValueError, label: str) -> str:
    """The task's label error with the label quoted briefly (a 5 MB cell must not be echoed whole)."""
    message = str(exc)
    return message.replace(repr(label), quote(label)) if len(label) > QUOTE_CHARS else message


def _shown_header(header: list[str]) -> str:
    """The header as a list, cut to fit a one-line message, with the header line's length when cut."""
    return clip(repr(header), 120, total=sum(map(len, header)) + len(header) - 1, of=" in the header line")


def _header_problem(header: list[str], needed: Sequence[str], missing: Sequence[str], sep: str) -> str:
    return (f"header does not name column(s) {', '.join(repr(m) for m in missing)} (got {_shown_header(header)}); "
            f"the first line must be a header such as {sep.join(needed)!r}")


def _read_tabular(path: Path, task: TaskSpec, problems: Problems, columns: tuple[str, str, str],
                  require_labels: bool, delimiter: str, allow_empty: bool) -> PairDataset:
    lines = decode_lines(path, read_bytes(path))
    records = tabular_records(path, lines, problems, delimiter)
    sep = "<TAB>" if delimiter == "\t" else delimiter
    first = next(records, None)
    if first is None:
        raise data_error(path, 1, f"file is empty (expected a header line naming {sep.join(columns)})")
    header_line, header_cells = first
    header = [cell.strip() for cell in header_cells]
    needed = list(columns) if require_labels else list(columns[:2])
    found = {name: _find_column(header, name) for name in columns}
    missing = [name for name in needed if found[name] is None]
    if missing:
        raise data_error(path, header_line, _header_problem(header, columns, missing, sep))
    duplicates = sorted({h for h in header if header.count(h) > 1 and h})
    if duplicates:
        raise data_error(path, header_line, f"header repeats column(s) {clip(repr(duplicates), 120)}")
    i1, i2, il = found[columns[0]], found[columns[1]], found[columns[2]]
    assert i1 is not None and i2 is not None
    width = len(header)
    builder = _PairBuilder(path, task, problems, columns, require_labels)
    for number, cells in records:
        if len(cells) != width:
            tab_hint = len(cells) > width and delimiter == "\t"
            hint = " (a tab inside a sentence, or a quoted field?)" if tab_hint else ""
            problems.bad(number, f"expected {width} columns, got {len(cells)}{hint}")
            continue
        builder.add(number, cells[i1], cells[i2], None if il is None else cells[il])
    return builder.finish(has_label_column=il is not None, header_line=header_line, allow_empty=allow_empty)


def _read_jsonl(path: Path, task: TaskSpec, problems: Problems, columns: tuple[str, str, str],
                require_labels: bool, allow_empty: bool) -> PairDataset:
    builder = _PairBuilder(path, task, problems, columns, require_labels)
    any_label_key = False
    for number, obj in json_rows(path, problems):
        if not isinstance(obj, dict):
            problems.bad(number, f"expected a JSON object, got {type(obj).__name__}")
            continue
        needed = columns if require_labels else columns[:2]
        missing = [key for key in needed if key not in obj]
        if missing:
            problems.bad(number, f"missing key {missing[0]!r}")
            continue
        raw = obj.get(columns[2])
        if isinstance(raw, float) and math.isnan(raw):  # json.loads accepts NaN; here it is no label at all
            problems.bad(number, f"bad label for task {task.name!r}: label NaN is not a finite number")
            continue
        any_label_key = any_label_key or raw is not None
        try:
            label = label_text(raw, task)
        except (TypeError, ValueError) as exc:
            problems.bad(number, f"bad label for task {task.name!r}: {exc}")
            continue
        builder.add(number, obj[columns[0]], obj[columns[1]], label)
    return builder.finish(has_label_column=any_label_key, allow_empty=allow_empty)


# --------------------------------------------------------------------------------------------------
# Public readers
# --------------------------------------------------------------------------------------------------


def read_pairs(path: PathLike, task: TaskSpec, *, skip_bad: bool = False, require_labels: bool = True,
               columns: tuple[str, str, str] = ("sentence1", "sentence2", "label"),
               allow_empty: bool = False) -> PairDataset:
    """Read a pair file (.tsv without quoting, .csv with quoting, .jsonl/.json lines), strictly.

    Raises DataFormatError naming file, line and problem for the first bad row, unless
    ``skip_bad`` (then bad rows are counted in ``.skipped``/``.problems`` and logged).
    With ``require_labels=False`` the label column/key may be absent (``labels`` is then None).
    A file without a single (good) row is an error too, unless ``allow_empty``.
    """
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in PAIR_SUFFIXES:
        raise ConfigError(
            f"{file}: unsupported pair file type {suffix!r} (use one of {', '.join(PAIR_SUFFIXES)})")
    problems = Problems(file, skip_bad)
    if suffix in (".jsonl", ".json"):
        return _read_jsonl(file, task, problems, columns, require_labels, allow_empty)
    delimiter = "\t" if suffix == ".tsv" else ","
    return _read_tabular(file, task, problems, columns, require_labels, delimiter, allow_empty)


def read_sentences(path: PathLike, column: str | None = None) -> list[str]:
    """Read single sentences (e.g. retrieval candidates); order matters, so blanks are errors.

    .txt: one sentence per line (trailing blank lines at the end of the file are ignored);
    .tsv/.csv: ``column`` (default "sentence" if the header has it, else the first column);
    .jsonl/.json: key ``column`` (default "sentence"), or lines that are bare JSON strings.
    """
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in SENTENCE_SUFFIXES:
        raise ConfigError(f"{file}: unsupported sentence file type {suffix!r} "
                          f"(use one of {', '.join(SENTENCE_SUFFIXES)})")
    if suffix == ".txt":
        return _sentences_txt(file)
    if suffix in (".jsonl", ".json"):
        return _sentences_jsonl(file, column)
    return _sentences_tabular(file, column, "\t" if suffix == ".tsv" else ",")


def _sentences_txt(file: Path) -> list[str]:
    """One sentence per line; only blank lines at the very end are dropped (they are editor artefacts)."""
    lines = decode_lines(file, read_bytes(file))
    while lines and lines[-1][1] is not None and not lines[-1][1].strip():
        lines.pop()
    if not lines:
        raise data_error(file, 1, "file is empty (expected one sentence per line)")
    out: list[str] = []
    for number, text, problem in lines:
        if text is None:
            raise data_error(file, number, problem)
        sentence = text.strip()
        if not sentence:
            raise data_error(file, number, "blank line (every line must hold one sentence)")
        _check_sentence(file, number, text, "line")
        if "\r" in sentence:  # CR-only line ends would silently merge every sentence into one
            at = text.index("\r", len(text) - len(text.lstrip())) + 1
            raise data_error(file, number, f"carriage return (\\r) inside the line at character {at}; old Mac "
                                           "(CR-only) line ends? save the file with \\n or \\r\\n line ends")
        out.append(sentence)
    return out


def _check_sentence(file: Path, number: int, text: str, name: str) -> None:
    """The shared text checks (valid Unicode, no NUL) for one sentence; sentence files have no skip_bad."""
    problem = text_problem(text, name)
    if problem is not None:
        raise data_error(file, number, problem)


def _sentences_jsonl(file: Path, column: str | None) -> list[str]:
    """Key ``column`` (default "sentence") of each JSON object, or each bare JSON string."""
    key = column or "sentence"
    out: list[str] = []
    for number, obj in json_rows(file, Problems(file, skip_bad=False)):
        if isinstance(obj, dict):
            if key not in obj:
                hint = "" if column else " (pass column=... to choose another key)"
                raise data_error(file, number, f"missing key {key!r}{hint}")
            value = obj[key]
        elif isinstance(obj, str):
            value = obj
        else:
            raise data_error(file, number, f"expected a JSON object or string, got {type(obj).__name__}")
        if not isinstance(value, str):
            kind = "null" if value is None else f"a {type(value).__name__}"
            raise data_error(file, number, f"{key} is {kind}, expected a string")
        if not value.strip():
            raise data_error(file, number, f"empty {key}")
        _check_sentence(file, number, value, key)
        out.append(value.strip())
    return out


def _sentences_tabular(file: Path, column: str | None, delimiter: str) -> list[str]:
    """Column ``column`` of a TSV/CSV file (default "sentence" if the header has it, else the first)."""
    problems = Problems(file, skip_bad=False)
    records = tabular_records(file, decode_lines(file, read_bytes(file)), problems, delimiter)
    first = next(records, None)
    if first is None:
        raise data_error(file, 1, "file is empty (expected a header line)")
    header_line, header_cells = first
    header = [cell.strip() for cell in header_cells]
    if column is None:
        index = _find_column(header, "sentence")
        index = 0 if index is None else index
    else:
        index = _find_column(header, column)
        if index is None:
            raise data_error(file, header_line, f"header has no column {column!r} (got {_shown_header(header)})")
    name = header[index]
    out: list[str] = []
    for number, cells in records:
        if len(cells) != len(header):
            raise data_error(file, number, f"expected {len(header)} columns, got {len(cells)}")
        value = cells[index].strip()
        if not value:
            raise data_error(file, number, f"empty {clip(name, 80)}")
        _check_sentence(file, number, cells[index], clip(name, 80))
        out.append(value)
    if not out:
        raise data_error(file, header_line, "no sentences: the file has a header but no data rows")
    return out
