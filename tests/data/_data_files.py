"""Shared bits of the data tests: exact file contents and the standard pair-file header."""

from __future__ import annotations

from pathlib import Path

HEADER = "sentence1\tsentence2\tlabel\n"


def write(path: Path, content: str | bytes) -> Path:
    """Write test content as bytes, so the tests control line ends, BOMs and bad bytes exactly."""
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path
