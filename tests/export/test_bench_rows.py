"""The speed benchmark's backend rows: torch vs its ONNX export, timed side by side on the same sentences."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from _onnx_students import SENTENCES, make_student  # noqa: E402

from dsembed.bench import BenchConfig, format_summary, run_bench  # noqa: E402
from dsembed.bench.backends import measure_backends  # noqa: E402
from dsembed.errors import ConfigError  # noqa: E402
from dsembed.student.model import DSEModel  # noqa: E402


def test_backend_rows(tiny_base: str, tmp_path: Path) -> None:
    model = DSEModel.load(make_student(tiny_base, tmp_path, "topk"), device="cpu")
    rows = measure_backends(model, ("torch", "onnx", "onnx-int8"), SENTENCES * 3, batch_size=4, repeats=2,
                            work=tmp_path / "work")
    assert set(rows["backends"]) == {"torch", "onnx", "onnx-int8"} and rows["opset"] == 17
    for entry in rows["backends"].values():
        assert entry["sentences"] == 21 and len(entry["sentences_per_s"]) == 2 and entry["sentences_per_s_median"] > 0
    assert rows["backends"]["onnx"]["vs_torch"]["max_abs_embedding_diff"] <= 1e-4
    again = measure_backends(model, ("torch", "onnx"), SENTENCES, batch_size=4, repeats=1, work=tmp_path / "work")
    assert again["export"] == rows["export"]  # the export is reused
    summary = format_summary({"sizes": {}, "encoding_backends": rows})
    assert "encoding by backend: torch" in summary and "onnx-int8" in summary


def test_unknown_bench_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"backends: unknown \['tpu'\]"):
        run_bench(BenchConfig(output=str(tmp_path / "out"), work_dir=str(tmp_path / "w"), backends=("tpu",)))
