"""The whole pipeline on the tiny model: every stage, the record, reuse, config round trips."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import MAX_LEN, glue_dir, needs_glue
from dsembed.artifacts import TEACHER_INFO
from dsembed.config import PipelineConfig, StudentConfig, TeacherConfig

SHORT_PAIRS = [("A man is playing a guitar.", "A man plays guitar."), ("The cat sleeps.", "Stocks fell sharply."),
               ("Two kids run on the beach.", "Children are running.")]


# ---- pipeline -------------------------------------------------------------------------------------


@needs_glue
def test_run_pipeline_end_to_end(tiny_base: str, tmp_path: Path) -> None:
    from dsembed.evaluation import relative_degradation
    from dsembed.pipeline import format_table, run_pipeline

    out = tmp_path / "run"
    cfg = PipelineConfig(task="mrpc", output_dir=str(out),
                         teacher=TeacherConfig(base=tiny_base, epochs=1, batch_size=16, max_length=MAX_LEN, seed=0),
                         student=StudentConfig(base=tiny_base, epochs=1, batch_size=16, max_length=MAX_LEN, seed=0,
                                               head_learning_rate=1e-3),
                         max_train_pairs=40, max_dev_pairs=20, data_dir=str(glue_dir()), show_progress_bar=False)
    record = run_pipeline(cfg)
    on_disk = json.loads((out / "record.json").read_text())
    assert on_disk["results"] == record["results"]
    assert set(record["results"]) == {"teacher", "dse_student", "label_only_student", "pretrained_cosine"}
    for values in record["results"].values():
        assert set(values) == {"accuracy", "f1", "roc_auc"}
        assert all(0.0 <= v <= 100.0 for v in values.values())
    assert (record["train_pairs"], record["dev_pairs"]) == (40, 20)
    degradation = record["relative_degradation_pct"]
    assert set(degradation) == {"dse_student", "label_only_student", "pretrained_cosine"}
    teacher_f1 = record["results"]["teacher"]["f1"]
    for name, value in degradation.items():  # NaN when the 1-epoch toy teacher has F1 = 0
        expected = relative_degradation(teacher_f1, record["results"][name]["f1"])
        assert value == pytest.approx(expected, nan_ok=True)
    assert record["stages"]["teacher"]["source"] == "trained"
    assert record["stages"]["dse_student"]["training"]["alpha"] == 0.5
    assert record["stages"]["label_only_student"]["training"]["alpha"] == 0.0
    assert record["stages"]["pretrained_cosine"]["threshold"] is not None
    fidelity = record["teacher_fidelity_dev"]
    assert set(fidelity) == {"dse_student", "label_only_student"}
    assert all(f["logit_mse"] >= 0 and 0 <= f["decision_agreement"] <= 100 for f in fidelity.values())
    assert (out / "teacher" / "model" / TEACHER_INFO).is_file()
    assert list((out / "logits_cache").rglob("logits.safetensors"))
    png = out / "student_vs_teacher.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    table = format_table(record)
    for row in ("teacher (cross-encoder)", "DSE student (alpha>0)", "label-only student (alpha=0)",
                "pretrained encoder + cosine", "mrpc dev (20 pairs), trained on 40 pairs"):
        assert row in table

    # a student recorded before dev curves were kept gets its curve back from its checkpoints
    assert [row["epoch"] for row in record["stages"]["dse_student"]["training"]["dev_curve"]] == [1.0]
    training_file = out / "dse_student" / "training.json"
    older = json.loads(training_file.read_text())
    curve = older.pop("dev_curve")
    training_file.write_text(json.dumps(older))
    again = run_pipeline(cfg)
    assert again["stages"]["dse_student"]["source"] == "reused"
    assert again["stages"]["dse_student"]["training"]["dev_curve"] == curve
    teacher_row = next(line for line in table.splitlines() if line.startswith("teacher"))
    assert f"{record['results']['teacher']['f1']:.2f}" in teacher_row

    # a second run reuses every finished stage and reproduces the metrics
    again = run_pipeline(cfg)
    assert again["stages"]["teacher"]["source"] == "reused"
    assert again["stages"]["dse_student"]["source"] == "reused"
    assert again["stages"]["label_only_student"]["source"] == "reused"
    for name in ("teacher", "dse_student", "label_only_student"):
        assert again["results"][name] == pytest.approx(record["results"][name])
    # nor is a finished teacher reused for another number of epochs (the guard itself lets epochs change)
    from dsembed.errors import RunConfigMismatch

    with pytest.raises(RunConfigMismatch, match="teacher holds a model trained for 1 epochs, this run asks for 2"):
        run_pipeline(replace(cfg, teacher=replace(cfg.teacher, epochs=2)))


def test_pipeline_config_round_trips_through_a_record() -> None:
    """benchmarks/rerecord.py and train_fidelity.py rebuild a run's config from its record.json."""
    from dataclasses import asdict

    cfg = PipelineConfig.from_profile("full", task="mine", kind="binary", labels=("no", "yes"), seed=3)
    cfg = replace(cfg, student=replace(cfg.student, head_learning_rate=None))  # None: the official single rate
    assert cfg.teacher.seed == cfg.student.seed == 3
    # records written before the stage configs were composed kept them flat; they still load
    flat = {"task": "mine", "kind": "binary", "labels": ["no", "yes"], "seed": 3, "max_length": None,
            "student_base": "all-MiniLM-L6-v2", "student_epochs": 8.0, "head_learning_rate": None,
            "teacher_base": "all-MiniLM-L6-v2", "teacher_epochs": 3.0, "teacher": None}
    assert PipelineConfig.from_record(flat) == cfg
    stored = json.loads(json.dumps(asdict(cfg)))
    assert stored["labels"] == ["no", "yes"]  # what JSON makes of the tuple
    assert PipelineConfig.from_record(stored) == cfg
    assert PipelineConfig.from_record(stored, output_dir="elsewhere").output_dir == "elsewhere"
