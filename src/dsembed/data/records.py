"""From a file's bytes to numbered records: the layer under the strict readers in ``readers.py``.

Line numbers are the file's own (1-based, blank lines counted) so that every problem can be reported
as ``file:line``; ``Problems`` decides whether a bad record raises or is counted (``skip_bad``).
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .validate import data_error, read_file_bytes

logger = logging.getLogger("dsembed.data")

MAX_PROBLEMS = 100  # problems kept on a dataset; the count in ``skipped`` is always complete


class Problems:
    """Raise on the first bad row, or (skip_bad) count and remember bad rows."""

    def __init__(self, path: Path, skip_bad: bool) -> None:
        self.path = path
        self.skip_bad = skip_bad
        self.count = 0
        self.messages: list[str] = []
        self.first: tuple[int, str] | None = None  # (line, problem) of the first bad row

    def bad(self, line: int, problem: str) -> None:
        error = data_error(self.path, line, problem)
        if not self.skip_bad:
            raise error
        self.count += 1
        if self.first is None:
            self.first = (line, error.problem)
        if len(self.messages) < MAX_PROBLEMS:
            self.messages.append(str(error))

    def log(self) -> None:
        if self.count:
            logger.warning("%s: skipped %d bad row(s); first: %s", self.path, self.count, self.messages[0])


def read_bytes(path: Path) -> bytes:
    """The bytes of a regular file (else a one-line error) without a UTF-8 BOM (Excel and Notepad write one)."""
    return read_file_bytes(path).removeprefix(codecs.BOM_UTF8)


def decode_lines(path: Path, data: bytes) -> list[tuple[int, str | None, str]]:
    """Split into ``(line_no, text, problem)``; undecodable lines get ``text=None`` and a problem.

    Decoding per line (only when the fast whole-file decode fails) is what lets a bad byte be
    reported at its own line instead of as a file-level error.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # every line would be "invalid UTF-8"
            raise data_error(path, 1, "the file is UTF-16 (it starts with a UTF-16 byte-order mark); "
                                      "save it as UTF-8") from None
        raw_lines = data.split(b"\n")
        if raw_lines and raw_lines[-1] == b"":
            raw_lines.pop()
        out: list[tuple[int, str | None, str]] = []
        for number, raw in enumerate(raw_lines, start=1):
            try:
                out.append((number, raw.decode("utf-8").removesuffix("\r"), ""))
            except UnicodeDecodeError as exc:
                snippet = raw[max(0, exc.start - 10):exc.end + 10]
                out.append((number, None, f"invalid UTF-8 at byte {exc.start} of the line ({snippet!r})"))
        return out
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [(number, line.removesuffix("\r"), "") for number, line in enumerate(lines, start=1)]


def tabular_records(path: Path, lines: list[tuple[int, str | None, str]], problems: Problems,
                    delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_no, fields)`` per non-blank record; TSV is split literally, CSV via ``csv``.

    Undecodable lines go to ``problems`` (the first one, the header, is always fatal).
    """
    good: list[tuple[int, str]] = []
    first_line = True
    for number, text, problem in lines:
        if text is None:
            if first_line:
                raise data_error(path, number, problem)
            problems.bad(number, problem)
            continue
        if first_line and text.strip():
            first_line = False
        good.append((number, text))
    if delimiter == "\t":
        for number, text in good:
            if text.strip():
                yield number, text.split("\t")
        return
    numbers = [number for number, _ in good]
    consumed = 0

    def feed() -> Iterator[str]:
        nonlocal consumed
        for _, text in good:
            consumed += 1
            yield text + "\n"

    reader = csv.reader(feed(), delimiter=delimiter)
    while True:
        start = numbers[consumed] if consumed < len(numbers) else (numbers[-1] if numbers else 1)
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.bad(start, f"CSV error: {exc}")
            continue
        if row and any(cell.strip() for cell in row):
            yield start, row


def json_rows(path: Path, problems: Problems) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_no, parsed value)`` per non-blank JSON line; bad lines go to ``problems``."""
    lines = decode_lines(path, read_bytes(path))
    seen_any = False
    for number, text, problem in lines:
        if text is None:
            seen_any = True
            problems.bad(number, problem)
            continue
        if not text.strip():
            continue
        if not seen_any and text.lstrip().startswith("[") and path.suffix.lower() == ".json":
            raise data_error(path, number, "expected JSON lines (one object per line), got a JSON array")
        seen_any = True
        value, problem = _parse_json(text)
        if problem:
            problems.bad(number, problem)
            continue
        yield number, value
    if not seen_any:
        raise data_error(path, 1, "file is empty (expected one JSON object per line)")


def _parse_json(text: str) -> tuple[Any, str]:
    """``(value, "")`` or ``(None, problem)``: every way ``json.loads`` can refuse a line, as a problem."""
    try:
        return json.loads(text), ""
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc.msg} (column {exc.colno})"
    except RecursionError:
        return None, "invalid JSON: nested too deeply"
    except ValueError as exc:  # an integer of more than sys.get_int_max_str_digits() digits
        return None, f"invalid JSON: a number is too long ({str(exc).split(':')[0]})"
