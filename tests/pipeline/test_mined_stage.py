"""The pipeline's augmentation stage: mined pairs from the run's own teacher, scoped to the run's sentences."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from conftest import MAX_LEN, MRPC, HashTeacher, glue_dir, needs_glue, synthetic_pairs
from dsembed.augment import mine_pairs, score_mined, write_mined_bundle
from dsembed.config import PipelineConfig, StudentConfig, TeacherConfig
from dsembed.data import load_glue
from dsembed.errors import ConfigError, StaleLogitsError
from dsembed.pipeline import run_pipeline
from dsembed.pipeline.stages import mined_stage
from dsembed.teacher import compute_teacher_logits, write_logits_bundle


@needs_glue
def test_pipeline_trains_dse_with_mined_pairs_beside_its_anchors(tiny_base: str, tmp_path: Path) -> None:
    train = load_glue(MRPC, "train", data_dir=glue_dir())
    dev = load_glue(MRPC, "dev", data_dir=glue_dir())
    teacher = HashTeacher(MRPC)
    write_logits_bundle(teacher, train, dev, tmp_path / "bundle", show_progress_bar=False)
    cfg = PipelineConfig(task="mrpc", output_dir=str(tmp_path / "run"), teacher_logits=str(tmp_path / "bundle"),
                         student=StudentConfig(base=tiny_base, epochs=1, batch_size=16, max_length=MAX_LEN, seed=0),
                         teacher=TeacherConfig(max_length=MAX_LEN, seed=0), max_train_pairs=32, max_dev_pairs=20,
                         data_dir=str(glue_dir()), evaluate_test=False, show_progress_bar=False, plot=False,
                         augsbert_baseline=True)
    subset = train.subset(32, seed=0)
    mined = mine_pairs(subset, strategies=("random", "swap"), per_sentence=1, exclude=[dev], seed=0)
    outside = mine_pairs(train.subset(64, seed=5), strategies=("random",), per_sentence=1, exclude=[dev], seed=1)
    scored = score_mined(teacher, mined, cache=tmp_path / "cache")
    write_mined_bundle(scored, tmp_path / "mined")
    write_mined_bundle(score_mined(teacher, outside, cache=tmp_path / "cache"), tmp_path / "outside")

    record = run_pipeline(replace(cfg, mined=str(tmp_path / "mined")))
    assert set(record["results"]) == {"teacher", "dse_mined_student", "augsbert_student", "dse_student",
                                      "label_only_student", "pretrained_cosine"}
    info = record["stages"]["mined"]
    assert info["used"] == len(mined) and info["strategies"] == {"random": mined.strategy.count("random"),
                                                                 "swap": mined.strategy.count("swap")}
    steps = {name: record["stages"][name]["training"]["optimizer_steps"]
             for name in ("dse_mined_student", "augsbert_student", "dse_student", "label_only_student")}
    assert len(set(steps.values())) == 1, steps  # equal compute: every student takes the same optimiser steps
    assert record["stages"]["dse_mined_student"]["training"]["mined"]["count"] == len(mined)
    assert record["stages"]["dse_student"]["training"]["mined"] is None

    # scope "run" (the default): pairs joining sentences of other labelled pairs are not this run's
    with pytest.raises(ConfigError, match="none of the"):
        run_pipeline(replace(cfg, mined=str(tmp_path / "outside"), output_dir=str(tmp_path / "run2")))
    # pairs scored by another teacher than the run's training-pair logits are refused
    write_mined_bundle(score_mined(HashTeacher(MRPC, offset=1.0), mined, cache=tmp_path / "cache"),
                       tmp_path / "other")
    with pytest.raises(StaleLogitsError, match="another teacher"):
        run_pipeline(replace(cfg, mined=str(tmp_path / "other"), output_dir=str(tmp_path / "run3")))


def test_mined_stage_takes_a_strategy_and_a_budget_per_labelled_pair(tmp_path: Path) -> None:
    """What the per-strategy and ×3/×10 rows of the augmentation tables train on (no student trained here)."""
    task = MRPC
    train = synthetic_pairs(task, 24, seed=3)
    teacher = HashTeacher(task)
    stored = compute_teacher_logits(teacher, train, cache=tmp_path / "logits", show_progress_bar=False)
    mined = mine_pairs(train, strategies=("random", "bm25", "swap"), per_sentence=2, seed=0)
    write_mined_bundle(score_mined(teacher, mined, cache=tmp_path / "cache"), tmp_path / "mined")
    cfg = PipelineConfig(task="mrpc", output_dir=str(tmp_path / "run"), mined=str(tmp_path / "mined"))
    info: dict = {}
    rows = mined_stage(replace(cfg, mined_strategies=("bm25",)), task, train, stored, info)
    assert set(rows.strategy) == {"bm25"} and len(rows) == mined.strategy.count("bm25")
    assert info["mined"]["strategy_filter"] == ["bm25"] and info["mined"]["strategies"] == {"bm25": len(rows)}
    x1 = mined_stage(replace(cfg, mined_budget=1.0), task, train, stored, {})
    half = mined_stage(replace(cfg, mined_budget=0.5), task, train, stored, info)
    assert len(x1) == 24 and len(half) == 12 and info["mined"]["budget_pairs"] == 12
    assert set(half.pairs.pairs()) < set(x1.pairs.pairs())
    with pytest.raises(ConfigError, match="no pairs of strategy embedding"):
        mined_stage(replace(cfg, mined_strategies=("embedding",)), task, train, stored, {})
    with pytest.raises(ConfigError, match="mined_budget must be a positive"):
        replace(cfg, mined_budget=0.0)
