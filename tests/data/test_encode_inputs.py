"""``dsembed encode`` refuses bad input before it loads a model or touches the output file.

The model argument is a folder that does not exist: if the input (or the output path) were not checked
first, the error would name the model instead, so each test also proves the order of the checks.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _data_files import write
from typer.testing import CliRunner

from dsembed.cli import app

runner = CliRunner()


def encode(tmp_path: Path, source: Path, output: Path | None = None) -> tuple[int, str, Path]:
    out = output or tmp_path / "out" / "emb.npy"
    result = runner.invoke(app, ["encode", str(tmp_path / "no-model"), str(source), "-o", str(out), "--no-progress"])
    return result.exit_code, result.stderr, out


def assert_one_error_line(stderr: str, *fragments: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def nothing_written(out: Path) -> bool:
    """Neither the output nor a temporary sibling of it (atomic writes) exists."""
    return not out.exists() and not (out.parent.is_dir() and any(out.parent.iterdir()))


@pytest.mark.parametrize(
    ("name", "content", "fragments"),
    [
        ("header.tsv", "sentence\tid\n", (":1: no sentences",)),
        ("empty.txt", "", (":1: file is empty",)),
        ("blank.jsonl", "\n\n", (":1: file is empty",)),
        ("nul.txt", "one\ntw\x00o\n", (":2:", "NUL character")),
        ("surrogate.jsonl", '"one"\n"\\ud800"\n', (":2:", "lone UTF-16 surrogate")),
        ("mac.txt", "one\rtwo\r", (":1:", "carriage return")),
        ("table.xlsx", "x", ("unsupported sentence file type '.xlsx'",)),
    ],
)
def test_encode_rejects_bad_input_before_any_output(tmp_path: Path, name: str, content: str,
                                                   fragments: tuple[str, ...]) -> None:
    source = write(tmp_path / name, content)
    code, stderr, out = encode(tmp_path, source)
    assert code == 2
    assert_one_error_line(stderr, *fragments)
    assert "no-model" not in stderr
    assert nothing_written(out)


def test_encode_rejects_missing_folder_and_fifo_inputs(tmp_path: Path) -> None:
    folder = tmp_path / "sentences.txt"
    folder.mkdir()
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    for source, fragment in ((tmp_path / "missing.txt", "data file not found"), (folder, "is a folder"),
                             (fifo, "FIFO")):
        code, stderr, out = encode(tmp_path, source)
        assert code == 2
        assert_one_error_line(stderr, fragment, str(source))
        assert nothing_written(out)


def test_encode_checks_the_output_path_before_the_model(tmp_path: Path) -> None:
    source = write(tmp_path / "ok.txt", "one\ntwo\n")
    folder = tmp_path / "out.npy"
    folder.mkdir()
    code, stderr, _ = encode(tmp_path, source, folder)
    assert code == 2
    assert_one_error_line(stderr, "is a folder")
    assert list(folder.iterdir()) == []
    blocker = write(tmp_path / "file", "x")
    code, stderr, _ = encode(tmp_path, source, blocker / "emb.npy")
    assert code == 2
    assert_one_error_line(stderr, "is a file, not a folder")
    assert blocker.read_text() == "x"
    # good input and output: only now is the model loaded (and it is missing)
    code, stderr, out = encode(tmp_path, source)
    assert code == 2
    assert_one_error_line(stderr, "no-model")
    assert nothing_written(out)
