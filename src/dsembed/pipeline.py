"""One command, all stages: teacher -> teacher logits -> DSE student -> label-only student -> baselines.

Orchestration only: each stage decides itself whether a finished result in the run folder can be
reused (``train_teacher``, ``compute_teacher_logits`` and ``distill`` all resume or reuse), and the
run writes one JSON record with metrics, wall times, machine and versions.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import LOGITS_CACHE_SUBDIR, MODEL_DIR, RUN_PLOT, RUN_RECORD, TEACHER_SUBDIR
from .config import PipelineConfig
from .data import PairDataset, load_glue, read_pairs
from .errors import ConfigError, InputNotFoundError, StaleLogitsError
from .evaluation import (
    compute_metrics,
    cosine_baseline,
    cosine_scores,
    evaluate_student,
    relative_degradation,
    teacher_fidelity,
)
from .student import DSEModel, distill, update_model_card
from .tasks import TaskSpec, custom_task, get_task
from .teacher import TeacherLogits, compute_teacher_logits, load_logits_bundles, load_teacher, train_teacher
from .utils import atomic_write_json, environment_record, load_average

logger = logging.getLogger("dsembed.pipeline")

STUDENT_NAMES = {"dse": "dse_student", "label_only": "label_only_student"}


class _Timer:
    """Wall time per stage, plus the machine's load average after it (shared machines are noisy)."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self.load_after: dict[str, list[float]] = {}

    def run(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        self.add(name, time.perf_counter() - start)
        return result

    def add(self, name: str, seconds: float) -> None:
        self.stages[name] = self.stages.get(name, 0.0) + seconds
        load = load_average()
        if load is not None:
            self.load_after[name] = load


def pipeline_task(cfg: PipelineConfig) -> TaskSpec:
    """The task a run is for: a GLUE task, or the user's own (``kind`` and ``labels`` given)."""
    if cfg.kind:
        return custom_task(cfg.task, cfg.kind, tuple(cfg.labels))  # type: ignore[arg-type]
    return get_task(cfg.task)


def load_pipeline_data(cfg: PipelineConfig, task: TaskSpec) -> tuple[PairDataset, PairDataset]:
    """The train and dev pairs a pipeline run with ``cfg`` uses (own files or GLUE, then subsets).

    Public so that diagnostics see exactly the pairs the students were trained and selected on.
    """
    if bool(cfg.train_file) != bool(cfg.dev_file):
        raise ConfigError("own data needs both a train file and a dev file")
    if cfg.train_file and cfg.dev_file:
        train = read_pairs(cfg.train_file, task, skip_bad=cfg.skip_bad)
        dev = read_pairs(cfg.dev_file, task, skip_bad=cfg.skip_bad)
    else:
        train = load_glue(task, "train", data_dir=cfg.data_dir, source=cfg.data_source, skip_bad=cfg.skip_bad)
        dev = load_glue(task, "dev", data_dir=cfg.data_dir, source=cfg.data_source, skip_bad=cfg.skip_bad)
    for ds in (train, dev):
        if ds.skipped:
            logger.warning("skipped %d malformed rows in %s", ds.skipped, ds.source)
    return train.subset(cfg.max_train_pairs, seed=cfg.seed), dev.subset(cfg.max_dev_pairs, seed=cfg.seed)


def load_test_data(cfg: PipelineConfig, task: TaskSpec) -> PairDataset | None:
    """Labelled test pairs to report on (own file, or the local GLUE copy's test split); None where there are none.

    Only ever evaluated: checkpoints, thresholds and settings are chosen on dev.
    """
    if not cfg.evaluate_test:
        return None
    if cfg.test_file:
        return read_pairs(cfg.test_file, task, skip_bad=cfg.skip_bad)
    if cfg.train_file:
        return None
    try:
        test = load_glue(task, "test", data_dir=cfg.data_dir, source="local", skip_bad=cfg.skip_bad)
    except InputNotFoundError:
        logger.info("%s: no labelled test split in the local GLUE copy; dev metrics only", task.name)
        return None
    return test if test.labels is not None else None


def teacher_description(info: dict[str, Any]) -> str:
    """One line saying which teacher a run used (printed with the table, written into model cards)."""
    source = info.get("source")
    if source == "logits bundle":
        members = info.get("bundle", {}).get("members") or [info.get("bundle", {})]
        names = sorted({m.get("base_name", "?") for m in members})
        devices = sorted({(m.get("environment") or {}).get("cuda") or "CPU" for m in members})
        what = f"ensemble (mean logits) of {len(members)} {', '.join(names)} cross-encoders" if len(members) > 1 \
            else f"{', '.join(names)} cross-encoder"
        return f"{what}, trained on {', '.join(devices)}; logits carried as bundles ({info.get('path')})"
    if source == "given":
        return f"the cross-encoder {info.get('path')}"
    recipe = info.get("recipe") or {}
    return (f"{recipe.get('base', '?')} cross-encoder fine-tuned by dsembed ({recipe.get('epochs', '?')} epochs, "
            f"lr {recipe.get('learning_rate', '?')})")


def _bundle_stage(cfg: PipelineConfig, task: TaskSpec, train: PairDataset, dev: PairDataset,
                  stage_info: dict[str, Any]) -> tuple[TeacherLogits, np.ndarray]:
    """Teacher logits carried in as a bundle (made on another machine): no teacher runs here."""
    bundle = load_logits_bundles(cfg.teacher_logits)
    bundle = bundle.aligned_to(train, dev, source=cfg.teacher_logits)  # a subset (quick profile) is fine
    if bundle.train.task != task.name:
        raise StaleLogitsError(f"{cfg.teacher_logits} holds logits for task {bundle.train.task}, not {task.name}")
    stage_info["teacher"] = {"source": "logits bundle", "path": cfg.teacher_logits, "bundle": bundle.info}
    return bundle.train, bundle.dev.logits


def _teacher_stage(cfg: PipelineConfig, task: TaskSpec, train: PairDataset, dev: PairDataset, test: PairDataset | None,
                   out: Path, timer: _Timer, stage_info: dict[str, Any],
                   test_logits: dict[str, np.ndarray]) -> tuple[TeacherLogits, np.ndarray]:
    """Train (or reuse) the teacher, then its dev (and test) logits and its cached training-pair logits."""
    progress = cfg.show_progress_bar
    if cfg.teacher_model:
        teacher_path: str | Path = cfg.teacher_model
        stage_info["teacher"] = {"source": "given", "path": str(cfg.teacher_model)}
    else:
        start = time.perf_counter()
        trained = train_teacher(task, train, dev, out / TEACHER_SUBDIR, cfg.teacher, show_progress_bar=progress,
                                extend=False)
        if trained.source != "reused":
            timer.add("teacher_train", time.perf_counter() - start)
        teacher_path = trained.path
        stage_info["teacher"] = {"source": trained.source}
    teacher = load_teacher(teacher_path, task, max_length=cfg.teacher.max_length)
    stage_info["teacher"].update({k: teacher.info[k] for k in ("recipe", "train_seconds", "best_checkpoint")
                                  if k in teacher.info})
    teacher_dev_logits = timer.run("teacher_dev_eval", teacher.predict_logits, dev.pairs(),
                                   show_progress_bar=progress)
    if test is not None:
        test_logits["teacher"] = timer.run("teacher_test_eval", teacher.predict_logits, test.pairs(),
                                           show_progress_bar=progress)
    stored = timer.run("teacher_logits", compute_teacher_logits, teacher, train, cache=out / LOGITS_CACHE_SUBDIR,
                       show_progress_bar=progress)
    return stored, teacher_dev_logits


def _student_configs(cfg: PipelineConfig) -> list[tuple[str, Any]]:
    """The students this run trains: DSE, the label-only baseline, or the one ``only_student`` names."""
    runs = [("dse_student", cfg.student)]
    if cfg.label_only_baseline or cfg.only_student == "label_only":
        runs.append(("label_only_student", replace(cfg.student, alpha=0.0)))
    if cfg.only_student is not None:
        runs = [(name, scfg) for name, scfg in runs if name == STUDENT_NAMES[cfg.only_student]]
    return runs


def _students_stage(cfg: PipelineConfig, task: TaskSpec, train: PairDataset, dev: PairDataset,
                    test: PairDataset | None, out: Path, stored: TeacherLogits, timer: _Timer,
                    stage_info: dict[str, Any], results: dict[str, dict[str, float]],
                    test_results: dict[str, dict[str, float]]) -> dict[str, np.ndarray] | None:
    """Train (or reuse) each student and evaluate it on dev; None when ``only_student`` stops the run."""
    student_dev_logits: dict[str, np.ndarray] = {}
    for name, scfg in _student_configs(cfg):
        start = time.perf_counter()
        trained = distill(task, train, dev, out / name, stored.logits, scfg, show_progress_bar=cfg.show_progress_bar,
                          extend=False)
        if trained.source != "reused":
            timer.add(f"{name}_train", time.perf_counter() - start)
        stage_info[name] = {"source": trained.source}
        if cfg.only_student is not None:
            logger.info("%s is trained in %s; run again without only_student to evaluate and record", name, out / name)
            return None
        stage_info[name]["training"] = trained.record
        model = DSEModel.load(trained.path)
        metrics, logits = timer.run(f"{name}_dev_eval", evaluate_student, model, task, dev,
                                    show_progress_bar=cfg.show_progress_bar)
        results[name] = metrics
        student_dev_logits[name] = logits
        if test is not None:
            test_results[name], _ = timer.run(f"{name}_test_eval", evaluate_student, model, task, test,
                                              show_progress_bar=cfg.show_progress_bar)
        del model
    return student_dev_logits


def _cosine_stage(cfg: PipelineConfig, task: TaskSpec, train: PairDataset, dev: PairDataset,
                  test: PairDataset | None, timer: _Timer, stage_info: dict[str, Any],
                  results: dict[str, dict[str, float]], test_results: dict[str, dict[str, float]]) -> None:
    """The untouched pretrained student encoder with cosine: what a user has without dsembed."""
    if task.kind not in ("binary", "regression"):
        return
    from sentence_transformers import SentenceTransformer

    from .bases import resolve_model_path

    st = SentenceTransformer(resolve_model_path(cfg.student.base), local_files_only=True)

    def encode(sentences: list[str]) -> np.ndarray:
        return st.encode(sentences, batch_size=64, show_progress_bar=cfg.show_progress_bar)

    baseline = timer.run("cosine_baseline", cosine_baseline, encode, task, train, dev)
    results["pretrained_cosine"] = baseline.metrics
    stage_info["pretrained_cosine"] = {"threshold": baseline.threshold, "encoder": cfg.student.base}
    if test is not None:  # the threshold stays the one tuned on train
        scores = timer.run("cosine_test_eval", cosine_scores, encode, test)
        shifted = scores if baseline.threshold is None else scores - baseline.threshold
        test_results["pretrained_cosine"] = compute_metrics(task, shifted[:, None], test.labels)


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    """Run (or resume) every stage for one task and return the record that was written.

    With ``only_student`` set, train that student and return a short summary instead (no record).
    """
    task = pipeline_task(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timer = _Timer()
    train, dev = timer.run("load_data", load_pipeline_data, cfg, task)
    test = None if cfg.only_student else timer.run("load_test_data", load_test_data, cfg, task)
    logger.info("%s: %d train pairs, %d dev pairs, %s test pairs", task.name, len(train), len(dev),
                len(test) if test is not None else "no")
    stage_info: dict[str, Any] = {}
    test_logits: dict[str, np.ndarray] = {}
    if cfg.teacher_logits:
        stored, teacher_dev_logits = _bundle_stage(cfg, task, train, dev, stage_info)
    else:
        stored, teacher_dev_logits = _teacher_stage(cfg, task, train, dev, test, out, timer, stage_info, test_logits)
    results = {"teacher": compute_metrics(task, teacher_dev_logits, dev.labels, teacher=True)}
    test_results = {"teacher": compute_metrics(task, test_logits["teacher"], test.labels, teacher=True)} \
        if "teacher" in test_logits and test is not None else {}
    student_dev_logits = _students_stage(cfg, task, train, dev, test, out, stored, timer, stage_info, results,
                                         test_results)
    if student_dev_logits is None:
        name = STUDENT_NAMES[cfg.only_student or "dse"]
        return {"task": task.name, "only_student": name, "folder": str(out / name), "stage_seconds": timer.stages,
                "stages": stage_info}
    _cosine_stage(cfg, task, train, dev, test, timer, stage_info, results, test_results)
    record = _record(cfg, task, train, dev, results, teacher_dev_logits, student_dev_logits, timer, stage_info)
    if test is not None:
        record.update({"test_pairs": len(test), "test_results": test_results, "test_source": test.source})
    atomic_write_json(out / RUN_RECORD, record)
    _write_cards(out, record, train)
    if cfg.plot:
        from .evaluation.plots import plot_student_vs_teacher

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
            student_dev_logits: dict[str, np.ndarray], timer: _Timer, stage_info: dict[str, Any]) -> dict[str, Any]:
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


def format_table(record: dict[str, Any]) -> str:
    """The dev-set comparison table printed at the end of a pipeline run."""
    metrics = sorted({m for r in record["results"].values() for m in r})
    rows = [["model", *metrics, f"rel. degr. {record['main_metric']} %"]]
    labels = {"teacher": "teacher (cross-encoder)", "dse_student": "DSE student (alpha>0)",
              "label_only_student": "label-only student (alpha=0)", "pretrained_cosine": "pretrained encoder + cosine"}
    for name, values in record["results"].items():
        deg = record["relative_degradation_pct"].get(name)
        rows.append([labels.get(name, name), *(f"{values[m]:.2f}" if m in values else "-" for m in metrics),
                     "-" if deg is None else f"{deg:+.2f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    head = f"{record['task']} dev ({record['dev_pairs']} pairs), trained on {record['train_pairs']} pairs, " \
           f"profile={record['profile']}"
    teacher = f"Teacher: {teacher_description(record['stages']['teacher'])}"
    return "\n".join([head, teacher, *lines, *_test_lines(record)])


def _test_lines(record: dict[str, Any]) -> list[str]:
    """The main metric on the labelled test split, where there is one (reported, never selected on)."""
    tests = record.get("test_results")
    if not tests:
        return []
    main = record["main_metric"]
    cells = ", ".join(f"{name} {values[main]:.2f}" for name, values in tests.items() if main in values)
    return [f"test ({record['test_pairs']} pairs) {main}: {cells}"]
