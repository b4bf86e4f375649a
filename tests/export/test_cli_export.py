"""``dsembed export`` and ``--backend onnx`` on ``encode``/``score``; bad input -> one-line error, exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")

from _onnx_students import SENTENCES, make_student  # noqa: E402

from dsembed.artifacts import ONNX_DIR, ONNX_INFO, STUDENT_HEAD, WEIGHTS  # noqa: E402
from dsembed.cli import app  # noqa: E402
from dsembed.errors import ConfigError, CorruptFileError, InputNotFoundError  # noqa: E402
from dsembed.student.model import DSEModel  # noqa: E402

runner = CliRunner()


def invoke(*args: object):  # noqa: ANN201
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, *words: str) -> None:  # noqa: ANN001
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def student(tiny_base: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A top-k student exported through the command line (fp32 + int8, into its own onnx/ folder)."""
    path = make_student(tiny_base, tmp_path_factory.mktemp("cli-export"), "topk")
    result = invoke("export", path, "--format", "onnx", "--quantize", "int8")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["export"] == str(path / ONNX_DIR) and set(summary["graphs"]) == {"fp32", "int8"}
    return path


def test_encode_round_trip(student: Path, tmp_path: Path) -> None:
    text = tmp_path / "sentences.txt"
    text.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    outputs = {}
    for backend in ("torch", "onnx", "onnx-int8"):
        out = tmp_path / f"{backend}.npy"
        result = invoke("encode", student, text, "-o", out, "--backend", backend, "--no-progress")
        assert result.exit_code == 0, result.output
        outputs[backend] = np.load(out)
    assert outputs["onnx"].shape == outputs["torch"].shape == (len(SENTENCES), 4 * 32)
    assert np.abs(outputs["onnx"] - outputs["torch"]).max() <= 1e-4
    assert np.abs(outputs["onnx-int8"] - outputs["torch"]).max() <= 0.05


def test_score_with_onnx_backend(student: Path) -> None:
    a, b = "A man plays the guitar.", "Someone is playing music."
    results = [invoke("score", student, a, b, "--backend", backend) for backend in ("torch", "onnx")]
    assert all(r.exit_code == 0 for r in results), [r.output for r in results]
    values = [float(r.stdout.split("\t")[0]) for r in results]
    assert values[1] == pytest.approx(values[0], abs=1e-5)


def test_export_to_own_folder_then_encode_from_it(student: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    assert invoke("export", student, "-o", out).exit_code == 0
    assert (out / ONNX_INFO).is_file()
    text = tmp_path / "s.txt"
    text.write_text("the cat\na small blue car\n", encoding="utf-8")
    result = invoke("encode", out, text, "-o", tmp_path / "e.npy", "--backend", "onnx", "--no-progress")
    assert result.exit_code == 0, result.output
    expected = DSEModel.load(student, device="cpu").encode(["the cat", "a small blue car"])
    assert np.abs(np.load(tmp_path / "e.npy") - expected).max() <= 1e-4
    one_line_error(invoke("encode", out, text, "-o", tmp_path / "t.npy"), "ONNX export", "backend")


@pytest.mark.parametrize("args, words", [
    (["--format", "tflite"], ["unknown export format", "onnx"]),
    (["--quantize", "int4"], ["unknown quantization", "int8"]),
    (["--opset", "9"], ["opset"]),
])
def test_bad_options_are_one_line_errors(student: Path, args: list[str], words: list[str]) -> None:
    one_line_error(invoke("export", student, *args), *words)


def test_not_a_student_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    one_line_error(invoke("export", tmp_path / "junk"), "not a dsembed student")
    one_line_error(invoke("score", tmp_path / "junk", "a", "b", "--backend", "onnx"),
                   "neither a dsembed student nor an ONNX export")


def test_refuses_to_replace_a_foreign_folder(student: Path, tmp_path: Path) -> None:
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "notes.txt").write_text("mine")
    one_line_error(invoke("export", student, "-o", tmp_path / "keep"), "refusing to replace")
    one_line_error(invoke("export", student, "-o", student), "refusing to replace")
    assert (tmp_path / "keep" / "notes.txt").read_text() == "mine"


def test_unknown_backend(student: Path) -> None:
    one_line_error(invoke("score", student, "a", "b", "--backend", "tpu"), "unknown backend")
    with pytest.raises(ConfigError, match="unknown backend"):
        DSEModel.load(student, backend="tpu")
    with pytest.raises(ConfigError, match="needs backend='onnx'"):
        DSEModel.load(student, quantized=True)


def test_student_without_export(tiny_base: str, tmp_path: Path) -> None:
    path = make_student(tiny_base, tmp_path, "cls")
    with pytest.raises(InputNotFoundError, match="has no ONNX export yet: run `dsembed export"):
        DSEModel.load(path, backend="onnx")


def test_stale_or_altered_exports_are_refused(student: Path, tmp_path: Path) -> None:
    copy = tmp_path / "student"
    shutil.copytree(student, copy)
    DSEModel.load(copy, backend="onnx")
    weights = copy / WEIGHTS
    weights.write_bytes(weights.read_bytes() + b" ")  # the student changed after the export
    with pytest.raises(CorruptFileError, match="exported from other weights"):
        DSEModel.load(copy, backend="onnx")
    shutil.copy2(student / WEIGHTS, weights)
    head = copy / ONNX_DIR / STUDENT_HEAD
    head.write_bytes(b"x" + head.read_bytes()[1:])  # the head beside the graphs no longer matches them
    with pytest.raises(CorruptFileError, match="not the head this export was made with"):
        DSEModel.load(copy, backend="onnx")


def test_store_commands_take_the_backend(student: Path, tmp_path: Path) -> None:
    """index build / search / allpairs run on the ONNX export; a store remembers the backend that built it."""
    candidates = tmp_path / "candidates.txt"
    candidates.write_text("\n".join(SENTENCES) + "\n")
    store = tmp_path / "store"
    built = invoke("index", "build", student, candidates, store, "--backend", "onnx", "--ann", "none", "--no-progress")
    assert built.exit_code == 0, built.output
    found = invoke("search", student, store, SENTENCES[0], "-k", "2", "--json", "--backend", "onnx")
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)["results"][0]["hits"][0]["text"] == SENTENCES[0]
    one_line_error(invoke("search", student, store, SENTENCES[0], "--backend", "torch"), "another model")
    pairs = invoke("allpairs", student, candidates, "--threshold", "-1000", "--backend", "onnx-int8")
    assert pairs.exit_code == 0, pairs.output
    assert "pairs >=" in pairs.output
    card = (student / "README.md").read_text()
    assert "onnx/" in card and card.startswith("---\n")  # the export is in the student's card
