"""One validation layer for everything dsembed reads: files, texts, numbers, and how a problem is quoted.

Every reader (``read_pairs``, ``read_sentences``, the hub loader) goes through these checks, and the HTTP
service can import them, so a text or label that one entry point rejects cannot slip in through another.
What each check decides, case by case:

- a data path must be a regular file: a folder, FIFO (reading would block forever), socket or device is
  an :class:`InputNotFoundError` naming the path, never an ``IsADirectoryError`` traceback;
- texts must be valid Unicode: a lone UTF-16 surrogate (JSON ``"\\ud800"``, which ``json.loads`` accepts)
  cannot be encoded by a tokenizer or written back as UTF-8; invalid UTF-8 bytes are caught where the
  bytes are decoded (``records.decode_lines``), line by line;
- a NUL character inside a text is rejected: it is never a sentence, it is a binary file or a broken export;
- a UTF-8 BOM at the start of a file and CRLF line ends are fine (Excel, Notepad) and parse as without
  them; a U+FEFF inside a text is kept (one GLUE QNLI sentence has it); a UTF-16 file is rejected at once;
- a CR inside a line of a ``.txt`` sentence file is rejected (CR-only line ends would merge every sentence
  into one); TSV fields keep it (a CR-only TSV fails its header check), CSV leaves it to ``csv`` (quoted:
  kept, unquoted: an error) and JSON ``"\r"`` escapes are explicit;
- numbers (labels) must be finite *as float32*, the type they are stored in: ``inf``, ``nan``, ``1e999``
  and ``1e39`` (finite as float64, ``inf`` as float32) would otherwise train an all-NaN model;
- a message quotes at most :data:`QUOTE_CHARS` characters of what it complains about (with the full length),
  and a whole problem is at most :data:`MAX_PROBLEM_CHARS` characters on one line, so a 5 MB malformed line
  cannot flood a terminal or a log.
"""

from __future__ import annotations

import math
import os
import reprlib
import stat
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import DataFormatError, InputNotFoundError

PathLike = str | os.PathLike[str]

QUOTE_CHARS = 200  # characters of an offending value or line a message shows
MAX_PROBLEM_CHARS = 320  # the whole problem text (after "path:line: ")
FLOAT32_MAX = float(np.finfo(np.float32).max)

_short_repr = reprlib.Repr()
_short_repr.maxstring = QUOTE_CHARS
_short_repr.maxother = QUOTE_CHARS
_short_repr.maxlevel = 3


class Where(NamedTuple):
    """Where a value comes from: a file path (or a name such as ``"request"``) and a 1-based line or item."""

    source: str
    line: int


# --------------------------------------------------------------------------------------------------
# Messages: short, one line, and they say how much was cut
# --------------------------------------------------------------------------------------------------


def clip(text: str, limit: int = QUOTE_CHARS, total: int | None = None, of: str = "") -> str:
    """``text`` cut to ``limit`` characters with an ellipsis and the full length (``total``, else ``len``).

    ``of`` names what was measured when it is not ``text`` itself (e.g. ``" in the line"``).
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({total if total is not None else len(text):,} characters{of})"


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """``repr(text)`` of at most about ``limit`` characters; a longer text is cut and its length is given.

    Escapes (``\\x00``, ``\\u2028``) take several characters each, so the cut is made on the repr's length.
    """
    shown = repr(text)
    if len(shown) <= limit + 2:
        return shown
    head = text[:limit]
    while len(repr(head)) > limit + 2:
        head = head[: len(head) // 2]
    return f"{head!r}… ({len(text):,} characters)"


def shown(value: Any) -> str:
    """A short repr of any decoded value (string, number, nested JSON) for a message."""
    if isinstance(value, str):
        return quote(value)
    return clip(_short_repr.repr(value))


def one_line(problem: str, limit: int = MAX_PROBLEM_CHARS) -> str:
    """The problem on one line, at most ``limit`` characters: the last guard before it reaches a user."""
    if "\n" in problem or "\r" in problem:
        problem = problem.replace("\r", "\\r").replace("\n", "\\n")
    return clip(problem, limit)


def data_error(path: PathLike, line: int, problem: str) -> DataFormatError:
    """A :class:`DataFormatError` whose problem is one line of bounded length (every reader raises these)."""
    return DataFormatError(path, line, one_line(problem))


# --------------------------------------------------------------------------------------------------
# Texts and numbers: ``*_problem`` says why not (for skip_bad counting), ``check_*`` raises
# --------------------------------------------------------------------------------------------------


def text_problem(text: str, name: str = "text") -> str | None:
    """Why ``text`` cannot be used as a sentence (lone surrogate, NUL), or None when it can."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            code = ord(text[exc.start])
            return (f"{name} has a lone UTF-16 surrogate U+{code:04X} at character {exc.start + 1}, which is "
                    f"not valid Unicode (a JSON \\u{code:04x} escape without its pair?)")
    at = text.find("\x00")
    if at >= 0:
        return f"{name} contains a NUL character (\\x00) at character {at + 1} (a binary file or a broken export?)"
    return None


def number_problem(value: Any, name: str = "value") -> str | None:
    """Why ``value`` is not a usable label/score (not a number, not finite, beyond float32), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return f"{name} is a {type(value).__name__}, not a number"
    try:
        number = float(value)
    except OverflowError:  # an int beyond float64
        return f"{name} is too large (labels are float32, at most ±{FLOAT32_MAX:.3g})"
    if not math.isfinite(number):
        return f"{name} is not a finite number ({number})"
    if abs(number) > FLOAT32_MAX:
        return f"{name} is too large (labels are float32, at most ±{FLOAT32_MAX:.3g}; got {number:.3g})"
    return None


def check_text(text: str, where: Where | tuple[PathLike, int], name: str = "text") -> None:
    """Raise :class:`DataFormatError` at ``where`` if ``text`` is not valid Unicode or holds a NUL."""
    problem = text_problem(text, name)
    if problem is not None:
        raise data_error(where[0], where[1], problem)


def check_number(value: Any, where: Where | tuple[PathLike, int], name: str = "value") -> None:
    """Raise :class:`DataFormatError` at ``where`` unless ``value`` is a number that is finite as float32."""
    problem = number_problem(value, name)
    if problem is not None:
        raise data_error(where[0], where[1], problem)


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def check_file(path: Path) -> None:
    """Raise :class:`InputNotFoundError` unless ``path`` is an existing regular file (symlinks followed).

    Checked before opening: reading a FIFO blocks forever and reading a folder is a traceback.
    """
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise InputNotFoundError(f"data file not found: {path}") from None
    except (OSError, ValueError) as exc:  # permission on a parent, a symlink loop, a NUL in the name
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputNotFoundError(f"cannot open data file {path}: {reason}") from None
    if stat.S_ISDIR(mode):
        raise InputNotFoundError(f"{path} is a folder, not a data file")
    if not stat.S_ISREG(mode):
        raise InputNotFoundError(f"{path} is {_file_kind(mode)}, not a regular data file")


def read_file_bytes(path: Path) -> bytes:
    """The bytes of a regular file, or a one-line :class:`InputNotFoundError` naming it."""
    check_file(path)
    try:
        return path.read_bytes()
    except OSError as exc:  # permission denied, I/O error
        raise InputNotFoundError(f"cannot read data file {path}: {exc.strerror or exc}") from None
