"""The pipeline on a carried logits bundle: no teacher here, split student runs, stale bundles."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import MAX_LEN, MRPC, HashTeacher, glue_dir, needs_glue
from dsembed.config import PipelineConfig, StudentConfig, TeacherConfig
from dsembed.data import PairDataset, load_glue
from dsembed.errors import RunConfigMismatch, StaleLogitsError
from dsembed.evaluation import compute_metrics
from dsembed.teacher import LogitsBundle, Teacher, write_logits_bundle


def _pipeline_data() -> tuple[PairDataset, PairDataset]:
    return (load_glue(MRPC, "train", data_dir=glue_dir()).subset(40, seed=0),
            load_glue(MRPC, "dev", data_dir=glue_dir()).subset(20, seed=0))


@needs_glue
def test_pipeline_takes_a_carried_bundle_instead_of_a_teacher(binary_teacher: Path, tiny_base: str,
                                                              tmp_path: Path) -> None:
    from dsembed.pipeline import run_pipeline

    train, dev = _pipeline_data()
    bundle = write_logits_bundle(Teacher(binary_teacher, MRPC, device="cpu"), train, dev, tmp_path / "bundle",
                                 show_progress_bar=False)
    out = tmp_path / "run"
    cfg = PipelineConfig(task="mrpc", output_dir=str(out), teacher_logits=str(tmp_path / "bundle"),
                         student=StudentConfig(base=tiny_base, epochs=1, batch_size=16, max_length=MAX_LEN, seed=0),
                         teacher=TeacherConfig(max_length=MAX_LEN, seed=0), max_train_pairs=40, max_dev_pairs=20,
                         data_dir=str(glue_dir()), label_only_baseline=False, show_progress_bar=False, plot=False)
    record = run_pipeline(cfg)
    assert record["results"]["teacher"] == compute_metrics(MRPC, bundle.dev.logits, dev.labels, teacher=True)
    assert record["stages"]["teacher"]["source"] == "logits bundle"
    assert record["stages"]["teacher"]["bundle"]["teacher_fingerprint"] == bundle.info["teacher_fingerprint"]
    assert "teacher_train" not in record["stage_seconds"] and not (out / "teacher").exists()
    assert set(record["results"]) == {"teacher", "dse_student", "pretrained_cosine"}

    # a bundle over all training pairs serves a student trained on a sample of them (quick profiles)
    full_train = load_glue(MRPC, "train", data_dir=glue_dir())
    write_logits_bundle(HashTeacher(MRPC), full_train, dev, tmp_path / "all", show_progress_bar=False)
    sampled = replace(cfg, teacher_logits=str(tmp_path / "all"), max_train_pairs=25,
                                output_dir=str(tmp_path / "run_sample"))
    assert run_pipeline(sampled)["train_pairs"] == 25

    # a bundle made for other pairs is refused, not silently misaligned
    write_logits_bundle(Teacher(binary_teacher, MRPC, device="cpu"), train.subset(30, seed=1), dev,
                        tmp_path / "other", show_progress_bar=False)
    bad = replace(cfg, teacher_logits=str(tmp_path / "other"),
                            output_dir=str(tmp_path / "run2"))
    with pytest.raises(StaleLogitsError, match="train"):
        run_pipeline(bad)


@needs_glue
def test_two_students_train_in_separate_runs_then_one_run_records_both(tiny_base: str, tmp_path: Path) -> None:
    """only_student lets two processes train the DSE and label-only students side by side (2 CPU lanes)."""
    from dsembed.cli import app
    from dsembed.pipeline import run_pipeline

    train, dev = _pipeline_data()
    write_logits_bundle(HashTeacher(MRPC), train, dev, tmp_path / "bundle", show_progress_bar=False)
    out = tmp_path / "run"
    cfg = PipelineConfig(task="mrpc", output_dir=str(out), teacher_logits=str(tmp_path / "bundle"),
                         student=StudentConfig(base=tiny_base, epochs=1, batch_size=16, max_length=MAX_LEN, seed=0),
                         teacher=TeacherConfig(max_length=MAX_LEN, seed=0), max_train_pairs=40, max_dev_pairs=20,
                         data_dir=str(glue_dir()), show_progress_bar=False, plot=False)
    first = run_pipeline(replace(cfg, only_student="label_only"))
    assert first["only_student"] == "label_only_student"
    assert (out / "label_only_student" / "model" / "dse_config.json").is_file()
    assert not (out / "dse_student").exists() and not (out / "record.json").exists()  # no half record
    run_pipeline(replace(cfg, only_student="dse"))
    record = run_pipeline(cfg)
    assert {record["stages"][name]["source"] for name in ("dse_student", "label_only_student")} == {"reused"}
    assert record["stages"]["label_only_student"]["training"]["alpha"] == 0.0
    assert record["stages"]["dse_student"]["training"]["alpha"] == 0.5
    # a finished student is not passed off as one trained for another number of epochs
    with pytest.raises(RunConfigMismatch, match="trained for 1 epochs, this run asks for 2"):
        run_pipeline(replace(cfg, student=replace(cfg.student, epochs=2)))
    with pytest.raises(ValueError, match="only_student must be"):
        run_pipeline(replace(cfg, only_student="teacher"))
    result = CliRunner().invoke(app, ["pipeline", "mrpc", "--only-student", "both", "--no-progress"])
    assert result.exit_code == 2 and "only_student must be one of dse, label-only" in result.output


@needs_glue
def test_cli_export_logits_then_pipeline_refuses_stale_bundle(binary_teacher: Path, tmp_path: Path) -> None:
    from dsembed.cli import app

    runner = CliRunner()
    train, dev = _pipeline_data()
    test = dev.select(range(7))
    for name, data in (("train", train), ("dev", dev), ("test", test)):
        with open(tmp_path / f"{name}.tsv", "w") as handle:
            handle.write("label\tsentence1\tsentence2\n")
            for s1, s2, label in zip(data.sentence1, data.sentence2, data.labels, strict=True):
                handle.write(f"{int(label)}\t{s1}\t{s2}\n")
    result = runner.invoke(app, ["teacher", "export-logits", "mrpc", "--teacher", str(binary_teacher), "-o",
                                 str(tmp_path / "bundle"), "--train", str(tmp_path / "train.tsv"), "--dev",
                                 str(tmp_path / "dev.tsv"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "40 train + 20 dev teacher logits" in result.output
    bundle = LogitsBundle.load(tmp_path / "bundle")
    assert bundle.test is None and "torch" in bundle.info["environment"]  # where the logits were made
    np.testing.assert_allclose(bundle.dev.logits, Teacher(binary_teacher, MRPC, device="cpu")
                               .predict_logits(dev.pairs()), atol=1e-5)
    # --test: the bundle also carries the test logits (the pipeline's teacher test row needs no model then)
    result = runner.invoke(app, ["teacher", "export-logits", "mrpc", "--teacher", str(binary_teacher), "-o",
                                 str(tmp_path / "tested"), "--train", str(tmp_path / "train.tsv"), "--dev",
                                 str(tmp_path / "dev.tsv"), "--test", str(tmp_path / "test.tsv"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "40 train + 20 dev + 7 test teacher logits" in result.output
    np.testing.assert_allclose(LogitsBundle.load(tmp_path / "tested").test.logits, bundle.dev.logits[:7], atol=1e-5)
    # the GLUE train split is not what the bundle was made for: a clear error, exit code 2
    result = runner.invoke(app, ["pipeline", "mrpc", "--teacher-logits", str(tmp_path / "bundle"), "--output-dir",
                                 str(tmp_path / "run"), "--data-dir", str(glue_dir()), "--no-progress"])
    assert result.exit_code == 2
    assert "do not cover the pairs" in result.output and "were never scored" in result.output


@needs_glue
def test_a_bundle_with_the_test_split_gives_the_teacher_test_row(tiny_base: str, tmp_path: Path) -> None:
    from dsembed.pipeline import run_pipeline

    train, dev = _pipeline_data()
    test = load_glue(MRPC, "test", data_dir=glue_dir())
    teacher = HashTeacher(MRPC)
    bundle = write_logits_bundle(teacher, train, dev, tmp_path / "bundle", test=test, show_progress_bar=False)
    assert LogitsBundle.load(tmp_path / "bundle").test is not None
    cfg = PipelineConfig(task="mrpc", output_dir=str(tmp_path / "run"), teacher_logits=str(tmp_path / "bundle"),
                         student=StudentConfig(base=tiny_base, epochs=1, batch_size=16, max_length=MAX_LEN, seed=0),
                         teacher=TeacherConfig(max_length=MAX_LEN, seed=0), max_train_pairs=40, max_dev_pairs=20,
                         data_dir=str(glue_dir()), label_only_baseline=False, show_progress_bar=False, plot=False)
    record = run_pipeline(cfg)
    assert record["test_results"]["teacher"] == compute_metrics(MRPC, teacher.predict_logits(test.pairs()),
                                                                test.labels, teacher=True)
    assert bundle.test is not None and len(bundle.test.logits) == len(test)


def test_teacher_line_of_a_bundle_names_base_epochs_and_device() -> None:
    """A bundle from `teacher export-logits` (no base_name) still says what the teacher was and where it ran."""
    from dsembed.pipeline.report import teacher_description

    recipe = {"base": "all-mpnet-base-v2", "epochs": 1.0}
    exported = {"source": "logits bundle", "path": "b", "bundle": {"teacher_info": {"recipe": recipe}}}
    assert teacher_description(exported).startswith(
        "all-mpnet-base-v2 (1 epoch) cross-encoder, trained on a device the bundle does not record")
    exported["bundle"]["environment"] = {"cuda": None}
    assert "(1 epoch) cross-encoder, trained on CPU" in teacher_description(exported)
    gpu = {"source": "logits bundle", "path": "b",
           "bundle": {"members": [{"base_name": "all-mpnet-base-v2", "environment": {"cuda": "H100"}}] * 3}}
    assert teacher_description(gpu).startswith("ensemble (mean logits) of 3 all-mpnet-base-v2 cross-encoders, "
                                               "trained on H100")
