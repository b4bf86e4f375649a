"""The pipeline's stages: data, teacher (trained, given or carried as a bundle), students, cosine baseline."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import LOGITS_CACHE_SUBDIR, STUDENT_EVAL, TEACHER_SUBDIR
from ..augment import load_mined_bundle
from ..config import PipelineConfig
from ..data import PairDataset, load_glue, read_pairs
from ..errors import ConfigError, InputNotFoundError, StaleLogitsError
from ..evaluation import compute_metrics, cosine_baseline, cosine_scores, evaluate_student
from ..student import DSEModel, MinedRows, distill
from ..tasks import TaskSpec, custom_task, get_task
from ..teacher import TeacherLogits, compute_teacher_logits, load_logits_bundles, load_teacher, train_teacher
from ..utils import atomic_write_bytes, folder_fingerprint, load_average, sha256_json

logger = logging.getLogger("dsembed.pipeline")

STUDENT_NAMES = {"dse": "dse_student", "label_only": "label_only_student", "dse_mined": "dse_mined_student",
                 "augsbert": "augsbert_student"}
MINED_ROWS = ("dse_mined_student", "augsbert_student")  # the students that see the mined pairs


class StageTimer:
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


def bundle_stage(cfg: PipelineConfig, task: TaskSpec, train: PairDataset, dev: PairDataset, test: PairDataset | None,
                 stage_info: dict[str, Any], test_logits: dict[str, np.ndarray]) -> tuple[TeacherLogits, np.ndarray]:
    """Teacher logits carried in as a bundle (made on another machine): no teacher runs here."""
    bundle = load_logits_bundles(cfg.teacher_logits)
    bundle = bundle.aligned_to(train, dev, source=cfg.teacher_logits)  # a subset (quick profile) is fine
    if bundle.train.task != task.name:
        raise StaleLogitsError(f"{cfg.teacher_logits} holds logits for task {bundle.train.task}, not {task.name}")
    stage_info["teacher"] = {"source": "logits bundle", "path": cfg.teacher_logits, "bundle": bundle.info}
    if test is not None and bundle.test is not None:  # a bundle that carries the test split gives the test row
        test_logits["teacher"] = bundle.test.aligned_to(test, source=f"{cfg.teacher_logits} test").logits
    return bundle.train, bundle.dev.logits


def teacher_stage(cfg: PipelineConfig, task: TaskSpec, train: PairDataset, dev: PairDataset, test: PairDataset | None,
                   out: Path, timer: StageTimer, stage_info: dict[str, Any],
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


def mined_stage(cfg: PipelineConfig, task: TaskSpec, train: PairDataset, stored: TeacherLogits,
                stage_info: dict[str, Any]) -> MinedRows | None:
    """The teacher-scored mined pairs of ``cfg.mined`` (a ``dsembed augment score`` bundle), or None.

    The bundle must come from the run's own teacher (same fingerprint as its training-pair logits): a
    student fitted to two teachers' scales learns neither. With ``mined_scope="run"`` only the pairs
    whose two sentences both occur in this run's labelled pairs are kept, so a run on a labelled
    subset sees recombinations of its own sentences and nothing else.
    """
    if not cfg.mined:
        return None
    scored = load_mined_bundle(cfg.mined)
    scored.check_task(task, source=cfg.mined)
    if scored.teacher_fingerprint and scored.teacher_fingerprint != stored.teacher_fingerprint:
        raise StaleLogitsError(f"{cfg.mined} was scored by another teacher ({scored.teacher}) than the run's "
                               "training-pair logits; score the mined pairs with the run's teacher")
    total = len(scored)
    if cfg.mined_scope == "run":
        own = set(train.sentence1) | set(train.sentence2)
        scored = scored.select([i for i, (a, b) in enumerate(scored.pairs.pairs()) if a in own and b in own])
    if not len(scored):
        raise ConfigError(f"none of the {total} mined pairs in {cfg.mined} joins two sentences of this run's "
                          f"{len(train)} training pairs (mined_scope={cfg.mined_scope!r})")
    budget = None if cfg.mined_budget is None else max(1, round(cfg.mined_budget * len(train)))
    # never empty: a strategy the pairs lack is an error, a budget keeps at least one pair
    scored = scored.restrict(cfg.mined_strategies, budget, source=f"{cfg.mined} (scope {cfg.mined_scope})")
    rows = scored.as_rows(task, source=cfg.mined)
    stage_info["mined"] = {"bundle": cfg.mined, "scope": cfg.mined_scope, "in_bundle": total, "used": len(rows),
                           "strategies": rows.strategy_counts(), "teacher": scored.teacher,
                           "strategy_filter": list(cfg.mined_strategies) if cfg.mined_strategies else None,
                           "budget_per_labelled_pair": cfg.mined_budget, "budget_pairs": budget}
    return rows


def student_configs(cfg: PipelineConfig, with_mined: bool = False) -> list[tuple[str, Any]]:
    """The students this run trains, or the one ``only_student`` names.

    With mined pairs: DSE + mined pairs, then the anchors (AugSBERT on the same pairs, plain DSE) at
    the same number of optimiser steps as the labelled-only run (equal compute), then label-only.
    """
    student = cfg.student
    steps = {} if student.max_steps is not None else {"equal_compute": True}  # a given budget holds for all
    runs = []
    if with_mined or cfg.only_student in ("dse_mined", "augsbert"):
        runs.append(("dse_mined_student", replace(student, **steps)))
        if cfg.augsbert_baseline or cfg.only_student == "augsbert":
            runs.append(("augsbert_student", replace(student, recipe="augsbert", **steps)))
        if cfg.plain_dse_baseline or cfg.only_student == "dse":
            runs.append(("dse_student", student))
    else:
        runs.append(("dse_student", student))
    if cfg.label_only_baseline or cfg.only_student == "label_only":
        runs.append(("label_only_student", replace(student, alpha=0.0)))
    if cfg.only_student is not None:
        runs = [(name, scfg) for name, scfg in runs if name == STUDENT_NAMES[cfg.only_student]]
    return runs


class _StudentEvaluation:
    """A student's logits on a split, kept beside it keyed by the model's and the pairs' hashes.

    The process that trained a student (``only_student``, a ``--jobs`` worker) evaluates it too, in
    parallel with the others; the recording run then reads the logits instead of evaluating again.
    """

    def __init__(self, model_dir: Path, run_dir: Path, task: TaskSpec, show_progress_bar: bool) -> None:
        self.model_dir, self.run_dir, self.task, self.progress = model_dir, run_dir, task, show_progress_bar
        self.model: DSEModel | None = None
        self.model_hash = folder_fingerprint(model_dir)

    def __call__(self, data: PairDataset, split: str) -> tuple[dict[str, float], np.ndarray]:
        from safetensors import safe_open
        from safetensors.numpy import save

        path = self.run_dir / STUDENT_EVAL.format(split=split)
        key = sha256_json({"model": self.model_hash, "pairs": data.fingerprint()})
        if path.is_file():
            with safe_open(str(path), "np") as handle:  # one read: the key, then the logits it vouches for
                if (handle.metadata() or {}).get("key") == key:
                    logits = handle.get_tensor("logits")
                    return compute_metrics(self.task, logits, data.labels), logits
        if self.model is None:
            self.model = DSEModel.load(self.model_dir)
        metrics, logits = evaluate_student(self.model, self.task, data, show_progress_bar=self.progress)
        atomic_write_bytes(path, save({"logits": np.ascontiguousarray(logits, np.float32)}, metadata={"key": key}))
        return metrics, logits


def students_stage(cfg: PipelineConfig, task: TaskSpec, train: PairDataset, dev: PairDataset,
                    test: PairDataset | None, out: Path, stored: TeacherLogits, timer: StageTimer,
                    stage_info: dict[str, Any], results: dict[str, dict[str, float]],
                    test_results: dict[str, dict[str, float]],
                    mined: MinedRows | None = None) -> dict[str, np.ndarray] | None:
    """Train (or reuse) each student and evaluate it on dev; None when ``only_student`` stops the run."""
    student_dev_logits: dict[str, np.ndarray] = {}
    for name, scfg in student_configs(cfg, with_mined=mined is not None):
        start = time.perf_counter()
        trained = distill(task, train, dev, out / name, stored.logits, scfg, show_progress_bar=cfg.show_progress_bar,
                          extend=False, mined=mined if name in MINED_ROWS else None)
        if trained.source != "reused":
            timer.add(f"{name}_train", time.perf_counter() - start)
        stage_info[name] = {"source": trained.source, "training": trained.record}
        evaluate = _StudentEvaluation(trained.path, out / name, task, cfg.show_progress_bar)
        metrics, logits = timer.run(f"{name}_dev_eval", evaluate, dev, "dev")
        if test is not None:
            test_results[name], _ = timer.run(f"{name}_test_eval", evaluate, test, "test")
        if cfg.only_student is not None:
            logger.info("%s is trained and evaluated in %s; run again without only_student to record", name,
                        out / name)
            return None
        results[name] = metrics
        student_dev_logits[name] = logits
    return student_dev_logits


def cosine_stage(cfg: PipelineConfig, task: TaskSpec, train: PairDataset, dev: PairDataset,
                  test: PairDataset | None, timer: StageTimer, stage_info: dict[str, Any],
                  results: dict[str, dict[str, float]], test_results: dict[str, dict[str, float]]) -> None:
    """The untouched pretrained student encoder with cosine: what a user has without dsembed."""
    if task.kind not in ("binary", "regression") or not cfg.cosine_baseline:
        return
    from sentence_transformers import SentenceTransformer

    from ..bases import resolve_model_path

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
