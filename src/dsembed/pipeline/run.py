"""One run of every stage on one task and its record."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import MODEL_DIR, RUN_PLOT, RUN_RECORD
from ..config import PipelineConfig
from ..data import PairDataset
from ..evaluation import compute_metrics, relative_degradation, teacher_fidelity
from ..student import update_model_card
from ..tasks import TaskSpec
from ..utils import atomic_write_json, environment_record
from .report import teacher_description
from .stages import (
    STUDENT_NAMES,
    StageTimer,
    bundle_stage,
    cosine_stage,
    load_pipeline_data,
    load_test_data,
    logger,
    mined_stage,
    pipeline_task,
    students_stage,
    teacher_stage,
)


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    """Run (or resume) every stage for one task and return the record that was written.

    With ``only_student`` set, train and evaluate that student and return a short summary instead (no record).
    """
    task = pipeline_task(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timer = StageTimer()
    train, dev = timer.run("load_data", load_pipeline_data, cfg, task)
    test = timer.run("load_test_data", load_test_data, cfg, task)
    logger.info("%s: %d train pairs, %d dev pairs, %s test pairs", task.name, len(train), len(dev),
                len(test) if test is not None else "no")
    stage_info: dict[str, Any] = {}
    test_logits: dict[str, np.ndarray] = {}
    if cfg.teacher_logits:
        stored, teacher_dev_logits = bundle_stage(cfg, task, train, dev, test, stage_info, test_logits)
    else:
        teacher_test = None if cfg.only_student else test  # a student-only run needs no teacher test row
        stored, teacher_dev_logits = teacher_stage(cfg, task, train, dev, teacher_test, out, timer, stage_info,
                                                   test_logits)
    results = {"teacher": compute_metrics(task, teacher_dev_logits, dev.labels, teacher=True)}
    test_results = {"teacher": compute_metrics(task, test_logits["teacher"], test.labels, teacher=True)} \
        if "teacher" in test_logits and test is not None else {}
    mined = timer.run("load_mined", mined_stage, cfg, task, train, stored, stage_info) if cfg.mined else None
    student_dev_logits = students_stage(cfg, task, train, dev, test, out, stored, timer, stage_info, results,
                                        test_results, mined)
    if student_dev_logits is None:
        name = STUDENT_NAMES[cfg.only_student or "dse"]
        return {"task": task.name, "only_student": name, "folder": str(out / name), "stage_seconds": timer.stages,
                "stages": stage_info}
    cosine_stage(cfg, task, train, dev, test, timer, stage_info, results, test_results)
    record = _record(cfg, task, train, dev, results, teacher_dev_logits, student_dev_logits, timer, stage_info)
    if test is not None:
        record.update({"test_pairs": len(test), "test_results": test_results, "test_source": test.source})
    atomic_write_json(out / RUN_RECORD, record)
    _write_cards(out, record, train)
    if cfg.plot:
        from ..evaluation.plots import plot_student_vs_teacher

        teacher_targets = task.teacher_to_student_logits(teacher_dev_logits)
        plot_student_vs_teacher(task, teacher_targets, student_dev_logits, dev.labels, out / RUN_PLOT)
    return record


def _write_cards(out: Path, record: dict[str, Any], train: PairDataset) -> None:
    """Each student's model card gets what only this run knows: the teacher, test metrics, fidelity."""
    teacher = {"description": teacher_description(record["stages"]["teacher"]),
               "dev_metrics": record["results"]["teacher"],
               "test_metrics": record.get("test_results", {}).get("teacher")}
    for name in STUDENT_NAMES.values():
        if name in record["results"]:
            update_model_card(out / name / MODEL_DIR, {
                "teacher": teacher, "dev_metrics": record["results"][name],
                "test_metrics": record.get("test_results", {}).get(name),
                "fidelity_dev": record["teacher_fidelity_dev"].get(name), "train_source": train.source,
                "run_record": str(out / RUN_RECORD)})


def _record(cfg: PipelineConfig, task: TaskSpec, train: PairDataset, dev: PairDataset,
            results: dict[str, dict[str, float]], teacher_dev_logits: np.ndarray,
            student_dev_logits: dict[str, np.ndarray], timer: StageTimer, stage_info: dict[str, Any]) -> dict[str, Any]:
    main = task.main_metric
    degradation = {name: relative_degradation(results["teacher"][main], results[name][main])
                   for name in results if name != "teacher"}
    # how closely each student reproduces the teacher on the dev pairs (distillation should tighten this)
    fidelity = {name: teacher_fidelity(task, logits, teacher_dev_logits) for name, logits in student_dev_logits.items()}
    return {
        "task": task.name,
        "main_metric": main,
        "profile": cfg.profile,
        "config": asdict(cfg),
        "train_pairs": len(train),
        "skipped_rows": {"train": train.skipped, "dev": dev.skipped},
        "dev_pairs": len(dev),
        "results": results,
        "relative_degradation_pct": degradation,
        "teacher_fidelity_dev": fidelity,
        "stage_seconds": timer.stages,
        "stage_load_average_after": timer.load_after,
        "stages": stage_info,
        "environment": environment_record(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
