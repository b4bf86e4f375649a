"""Property-based fuzzing of every reader: a correct parse or a one-line DsembedError, never a traceback.

Derandomized (a fixed sequence of examples, no example database) so that CI is reproducible; a few dozen
examples per reader keep it to seconds. ``benchmarks/fuzz_readers.py`` runs the same properties
(``_fuzz_cases.py``) with thousands of examples and records the counts.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _fuzz_cases import TARGETS, outcome
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dsembed.cli import app

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example, HealthCheck.filter_too_much])


@pytest.fixture(scope="module")
def fuzz_dir() -> Iterator[Path]:
    """A short path (messages name the file, and their length is bounded), shared by all examples."""
    with tempfile.TemporaryDirectory(prefix="fz") as folder:
        yield Path(folder)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_reader_parses_correctly_or_fails_in_one_line(fuzz_dir: Path, name: str) -> None:
    target = TARGETS[name]

    @FUZZ
    @given(data=target.files, options=target.options)
    def check(data: bytes, options: dict[str, Any]) -> None:
        kind, detail = outcome(target, fuzz_dir / f"case{target.suffix}", data, options)
        assert kind in ("parsed", "error"), f"{kind}: {detail}"

    check()


@pytest.mark.parametrize("name", ["read_pairs/tsv/binary", "read_pairs/csv/regression", "read_pairs/jsonl/binary",
                                  "read_sentences/txt", "read_sentences/tsv", "read_sentences/jsonl"])
def test_bom_and_crlf_do_not_change_the_outcome(fuzz_dir: Path, name: str) -> None:
    """A UTF-8 BOM and CRLF line ends parse exactly as without them (or fail at the same line)."""
    target = TARGETS[name]

    @FUZZ
    @given(data=target.files, options=target.options)
    def check(data: bytes, options: dict[str, Any]) -> None:
        if b"\r" in data or data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
            return  # already carries the variants (a second BOM would be text)
        plain = _read(target, fuzz_dir / f"plain{target.suffix}", data, options)
        variant = _read(target, fuzz_dir / f"variant{target.suffix}", b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n"),
                        options)
        assert plain == variant

    check()


def _read(target: Any, path: Path, data: bytes, options: dict[str, Any]) -> object:
    """What a read gives, comparable across files: the rows, or the error's line."""
    from dsembed.errors import DataFormatError, DsembedError

    path.write_bytes(data)
    try:
        result = target.read(path, **options)
    except DataFormatError as exc:
        return ("error", exc.line)
    except DsembedError as exc:
        return ("error", type(exc).__name__)
    if isinstance(result, list):
        return result
    labels = None if result.labels is None else result.labels.tolist()
    return (result.pairs(), labels, result.skipped)


# ---------------------------------------------------------------------------------------------
# Through the real command line: exit code 2 and one "error:" line
# ---------------------------------------------------------------------------------------------

runner = CliRunner()


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[:500]
    assert len(lines[0]) <= len("error: ") + 400
    return lines[0]


BAD_PAIR_FILES = [
    ("inf.tsv", b"sentence1\tsentence2\tlabel\na\tb\tinf\n", ":2: bad label"),
    ("nan.jsonl", b'{"sentence1": "a", "sentence2": "b", "label": NaN}\n', ":1: bad label"),
    ("sur.jsonl", b'{"sentence1": "\\ud800", "sentence2": "b", "label": 1}\n', ":1: sentence1 has a lone"),
    ("header.csv", b"sentence1,sentence2,label\n", ":1: no rows"),
    ("huge.tsv", b"sentence1\tsentence2\tlabel\na\tb\t" + b"9" * 2_000_000 + b"x\n", ":2: bad label"),
    ("nul.tsv", b"sentence1\tsentence2\tlabel\na\x00\tb\t1\n", ":2: sentence1 contains a NUL"),
]


@pytest.mark.parametrize(("name", "content", "fragment"), [pytest.param(*case, id=case[0]) for case in BAD_PAIR_FILES])
def test_cli_bad_pair_files_exit_2_with_one_line(tmp_path: Path, name: str, content: bytes, fragment: str) -> None:
    bad = tmp_path / name
    bad.write_bytes(content)
    out = tmp_path / "teacher"
    result = runner.invoke(app, ["teacher", "train", "score", "--kind", "regression", "-o", str(out),
                                 "--train", str(bad), "--dev", str(bad), "--no-progress"])
    assert result.exit_code == 2, result.output[-500:]
    line = _one_error_line(result.stderr)
    assert f"{bad}{fragment}" in line
    assert not out.exists()


@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(data=st.one_of(TARGETS["read_sentences/txt"].files, TARGETS["read_sentences/jsonl"].files),
       suffix=st.sampled_from([".txt", ".jsonl"]))
def test_cli_encode_fails_in_one_line_and_writes_nothing(data: bytes, suffix: str) -> None:
    """Any input, no model: an input error or (for a good input) the model's, never a traceback or output."""
    with tempfile.TemporaryDirectory(prefix="fz") as folder:
        source, out = Path(folder) / f"in{suffix}", Path(folder) / "out" / "emb.npy"
        source.write_bytes(data)
        result = runner.invoke(app, ["encode", str(Path(folder) / "no-model"), str(source), "-o", str(out),
                                     "--no-progress"])
        assert result.exit_code == 2, result.output[-500:]
        line = _one_error_line(result.stderr)
        assert str(source) in line or "no-model" in line
        assert not out.parent.exists()


def test_benchmark_writes_its_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """benchmarks/fuzz_readers.py runs the same properties and records the counts (a few cases, in-process)."""
    import importlib.util
    import json
    import logging

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz_readers.py"
    spec = importlib.util.spec_from_file_location("fuzz_readers_benchmark", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "fuzz.json"
    monkeypatch.setattr("sys.argv", [str(path), "--examples", "3", "--encode-cases", "0", "--out", str(out)])
    logger = logging.getLogger("dsembed.data")
    level = logger.level
    try:
        with pytest.raises(SystemExit) as info:
            bench.main()
    finally:
        logger.setLevel(level)  # the benchmark silences skip_bad warnings; other tests count them
    assert info.value.code == 0
    record = json.loads(out.read_text())
    assert len(record["readers"]) == 10 and record["encode_cli"] == {"skipped": "--encode-cases 0"}
    assert record["totals"]["tracebacks"] == 0 and record["passed"] is True
    assert {"reader", "format", "task", "cases", "parsed", "one_line_errors", "bad_errors", "tracebacks",
            "invalid_parses", "partial_outputs", "seconds", "failures"} <= set(record["readers"][0])
    assert record["environment"]["python"] and record["settings"]["examples_per_reader"] == 3
