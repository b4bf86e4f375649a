"""Multi-seed pipeline runs: one folder per seed, seed means with their spread, paired differences."""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import MAX_LEN, MRPC, HashTeacher, glue_dir, needs_glue
from dsembed.config import PipelineConfig, StudentConfig, TeacherConfig
from dsembed.data import load_glue
from dsembed.errors import ConfigError
from dsembed.pipeline import format_seed_table, run_seeds
from dsembed.pipeline.seeds import spread
from dsembed.teacher import write_logits_bundle


def test_spread_is_the_sample_statistics() -> None:
    got = spread([1.0, 2.0, 4.0])
    assert got["mean"] == pytest.approx(7 / 3) and got["std"] == pytest.approx(statistics.stdev([1, 2, 4]))
    assert (got["min"], got["max"], got["n"]) == (1.0, 4.0, 3)
    assert spread([5.0])["std"] == 0.0


@needs_glue
def test_run_seeds_records_means_spread_and_paired_differences(tiny_base: str, tmp_path: Path) -> None:
    train = load_glue(MRPC, "train", data_dir=glue_dir())
    dev = load_glue(MRPC, "dev", data_dir=glue_dir())  # every seed samples its own 20
    write_logits_bundle(HashTeacher(MRPC), train, dev, tmp_path / "bundle", show_progress_bar=False)
    out = tmp_path / "run"
    cfg = PipelineConfig(task="mrpc", output_dir=str(out), teacher_logits=str(tmp_path / "bundle"),
                         student=StudentConfig(base=tiny_base, epochs=1, batch_size=16, max_length=MAX_LEN),
                         teacher=TeacherConfig(max_length=MAX_LEN), max_train_pairs=32, max_dev_pairs=20,
                         data_dir=str(glue_dir()), evaluate_test=False, show_progress_bar=False, plot=False)
    summary = run_seeds(cfg, [3, 4])
    per_seed = [json.loads((out / f"seed-{s}" / "record.json").read_text()) for s in (3, 4)]
    assert [r["config"]["student"]["seed"] for r in per_seed] == [3, 4] == summary["seeds"]
    assert json.loads((out / "record.json").read_text())["kind"] == "seed_summary"
    main = summary["main_metric"]
    dse = [r["results"]["dse_student"][main] for r in per_seed]
    label_only = [r["results"]["label_only_student"][main] for r in per_seed]
    assert summary["results"]["dse_student"][main]["values"] == dse
    assert summary["results"]["dse_student"][main]["mean"] == pytest.approx(statistics.fmean(dse))
    assert summary["minus_label_only"]["dse_student"]["values"] == pytest.approx(
        [a - b for a, b in zip(dse, label_only, strict=True)])
    assert "teacher" not in summary["minus_label_only"]
    table = format_seed_table(summary)
    assert "mean ± sample std over seeds 3, 4" in table and "minus label-only" in table
    assert f"{statistics.fmean(dse):.2f} ± {statistics.stdev(dse):.2f}" in table

    # the cosine row has no seed: computed once, in the first seed's run
    assert "pretrained_cosine" in per_seed[0]["results"] and "pretrained_cosine" not in per_seed[1]["results"]
    assert summary["results"]["pretrained_cosine"][main]["n"] == 1 and "(once)" in table

    # a second call reuses every finished seed: nothing retrains
    again = run_seeds(cfg, [3, 4])
    assert all(r["stages"]["dse_student"]["source"] == "reused" for r in again["per_seed"])

    # jobs=2: worker processes train each seed's two students side by side; the run then only evaluates
    side = run_seeds(replace(cfg, output_dir=str(tmp_path / "side")), [3, 4], jobs=2)
    for record in side["per_seed"]:
        assert {record["stages"][n]["source"] for n in ("dse_student", "label_only_student")} == {"reused"}
    assert (tmp_path / "side" / "seed-4" / "label_only_student" / "model").is_dir()
    assert (tmp_path / "side" / "seed-4" / "label_only_student" / "eval_dev.safetensors").is_file()  # the worker's


def test_run_seeds_needs_two_seeds_and_one_line_cli_errors(tmp_path: Path) -> None:
    from dsembed.cli import app

    with pytest.raises(ConfigError, match="at least two seeds"):
        run_seeds(PipelineConfig(output_dir=str(tmp_path)), [42, 42])
    result = CliRunner().invoke(app, ["pipeline", "mrpc", "--seeds", "42,x", "--output-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --seeds takes comma-separated integers, not '42,x'"


def test_student_evaluations_are_kept_beside_the_student_and_keyed(distilled_dir: Path, mrpc_dev,  # noqa: ANN001
                                                                    tmp_path: Path) -> None:
    from dsembed.evaluation import evaluate_student
    from dsembed.pipeline.stages import _StudentEvaluation
    from dsembed.student import DSEModel

    model_dir = distilled_dir / "model"
    first = _StudentEvaluation(model_dir, tmp_path, MRPC, False)
    metrics, logits = first(mrpc_dev, "dev")
    expected, expected_logits = evaluate_student(DSEModel.load(model_dir), MRPC, mrpc_dev)
    assert metrics == expected and (tmp_path / "eval_dev.safetensors").is_file()
    again = _StudentEvaluation(model_dir, tmp_path, MRPC, False)
    assert again(mrpc_dev, "dev")[0] == expected and again.model is None  # read back, no model loaded
    other = mrpc_dev.subset(10, seed=1)  # other pairs under the same split name: evaluated afresh
    assert len(again(other, "dev")[1]) == 10 and again.model is not None
