"""One command, all stages: teacher -> teacher logits -> DSE student -> label-only student -> baselines.

Each stage reuses what an earlier (possibly interrupted) run already finished in the same
output folder, and the run writes a JSON record with metrics, wall times, machine and versions.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import TEACHER_INFO
from .data import PairDataset, load_glue, read_pairs
from .evaluation import compute_metrics, cosine_baseline, evaluate_student, relative_degradation, teacher_fidelity
from .student.model import DSEModel
from .student.train import DistillConfig, distill, distill_run_config
from .tasks import TaskSpec, custom_task, get_task
from .teacher import load_teacher, train_teacher
from .teacher.logits import compute_teacher_logits
from .teacher.train import TeacherRecipe, teacher_run_config
from .utils import (
    RunConfigMismatch,
    atomic_write_json,
    check_run_config,
    dev_curve_from_checkpoints,
    environment_record,
    load_average,
)

logger = logging.getLogger("dsembed.pipeline")

PROFILES: dict[str, dict[str, Any]] = {
    # Everything, default hyper-parameters (hours on a 2-core CPU, minutes on a GPU).
    "full": {},
    # The main job: finishes in minutes on a laptop-class CPU; numbers are indicative only.
    # A subset and short sequences; a higher teacher lr makes up for the few steps.
    "quick": {"max_train_pairs": 1000, "teacher_epochs": 3.0, "teacher_learning_rate": 6e-5,
              "student_epochs": 2.0, "max_length": 64},
}


@dataclass
class PipelineConfig:
    task: str = "mrpc"
    output_dir: str = "runs/mrpc"
    profile: str = "full"
    teacher: str | None = None  # a ready cross-encoder (folder or hub id); None: fine-tune one
    teacher_logits: str | None = None  # bundle folder(s) from `dsembed teacher export-logits`; skips the teacher
    teacher_base: str = "all-MiniLM-L6-v2"
    teacher_epochs: float = 3.0
    teacher_learning_rate: float = 3e-5
    teacher_batch_size: int = 16
    student_base: str = "all-MiniLM-L6-v2"
    student_epochs: float = 8.0  # the official count; see DistillConfig.epochs
    learning_rate: float = 2e-5
    head_learning_rate: float | None = 1e-3  # None: the encoder's rate (the official single rate)
    batch_size: int = 32
    alpha: float = 0.5
    pooling: str = "topk"
    top_k: int = 4
    max_length: int | None = None
    max_train_pairs: int | None = None
    max_dev_pairs: int | None = None
    data_dir: str | None = None
    data_source: str = "auto"
    train_file: str | None = None  # own data instead of GLUE (with kind, and labels for classification)
    dev_file: str | None = None
    kind: str | None = None
    labels: tuple[str, ...] = ()
    skip_bad: bool = False
    seed: int = 42
    label_only_baseline: bool = True
    # "dse" or "label_only": train just that student and stop (no evaluation, no record), so the two
    # students of one run can train in two processes side by side; a later full run reuses both
    only_student: str | None = None
    plot: bool = True
    show_progress_bar: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_profile(cls, profile: str, **overrides: Any) -> PipelineConfig:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        values = {**PROFILES[profile], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(profile=profile, **values)

    @classmethod
    def from_record(cls, config: dict[str, Any], **overrides: Any) -> PipelineConfig:
        """The config a record.json stored (JSON turned the labels tuple into a list), to re-run that run."""
        values = {**config, **overrides}
        values["labels"] = tuple(values.get("labels") or ())
        return cls(**values)


class _Timer:
    """Wall time per stage, plus the machine's load average after it (shared machines are noisy)."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self.load_after: dict[str, list[float]] = {}

    def run(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - start
        load = load_average()
        if load is not None:
            self.load_after[name] = load
        return result


def _task(cfg: PipelineConfig) -> TaskSpec:
    if cfg.kind:
        return custom_task(cfg.task, cfg.kind, tuple(cfg.labels))  # type: ignore[arg-type]
    return get_task(cfg.task)


def load_pipeline_data(cfg: PipelineConfig, task: TaskSpec) -> tuple[PairDataset, PairDataset]:
    """The train and dev pairs a pipeline run with ``cfg`` uses (own files or GLUE, then subsets).

    Public so that diagnostics see exactly the pairs the students were trained and selected on.
    """
    if bool(cfg.train_file) != bool(cfg.dev_file):
        raise ValueError("own data needs both a train file and a dev file")
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


def _check_finished_epochs(folder: Path, trained: float | None, wanted: float, extend_with: str) -> None:
    """Reuse a finished model only for the epoch count it was trained for.

    The run-config guard leaves epochs out so that a run can be extended with more of them; the
    pipeline must not pass a 3-epoch model off as an 8-epoch one in its record.
    """
    if trained is not None and float(trained) != float(wanted):
        raise RunConfigMismatch(f"{folder} holds a model trained for {float(trained):g} epochs, this run asks for "
                                f"{float(wanted):g}; use another output folder, or extend that run with "
                                f"`{extend_with}`")


def _teacher_stage(cfg: PipelineConfig, task: TaskSpec, train: PairDataset, dev: PairDataset, out: Path,
                   timer: _Timer, stage_info: dict[str, Any]) -> tuple[Any, np.ndarray]:
    """Train (or reuse) the teacher, then its dev logits and its cached training-pair logits."""
    progress = cfg.show_progress_bar
    if cfg.teacher:
        teacher_path: str | Path = cfg.teacher
        stage_info["teacher"] = {"source": "given", "path": str(cfg.teacher)}
    else:
        teacher_path = out / "teacher" / "model"
        recipe = TeacherRecipe(base=cfg.teacher_base, epochs=cfg.teacher_epochs,
                               learning_rate=cfg.teacher_learning_rate, batch_size=cfg.teacher_batch_size,
                               max_length=cfg.max_length, seed=cfg.seed)
        if (teacher_path / TEACHER_INFO).is_file():
            check_run_config(out / "teacher", teacher_run_config(task, recipe, train, dev))
            trained = json.loads((teacher_path / TEACHER_INFO).read_text()).get("recipe", {}).get("epochs")
            _check_finished_epochs(out / "teacher", trained, recipe.epochs, "dsembed teacher train --epochs N")
            stage_info["teacher"] = {"source": "reused"}
        else:
            teacher_path = timer.run("teacher_train", train_teacher, task, train, dev, out / "teacher", recipe,
                                     show_progress_bar=progress)
            stage_info["teacher"] = {"source": "trained"}
    teacher = load_teacher(teacher_path, task, max_length=cfg.max_length)
    stage_info["teacher"].update({k: teacher.info[k] for k in ("recipe", "train_seconds", "best_checkpoint")
                                  if k in teacher.info})
    teacher_dev_logits = timer.run("teacher_dev_eval", teacher.predict_logits, dev.pairs(),
                                   show_progress_bar=progress)
    stored = timer.run("teacher_logits", compute_teacher_logits, teacher, train, cache=out / "logits_cache",
                       show_progress_bar=progress)
    return stored, teacher_dev_logits


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    """Run (or resume) every stage for one task and return the record that was written."""
    task = _task(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timer = _Timer()
    train, dev = timer.run("load_data", load_pipeline_data, cfg, task)
    logger.info("%s: %d train pairs, %d dev pairs", task.name, len(train), len(dev))
    progress = cfg.show_progress_bar
    stage_info: dict[str, Any] = {}

    # 1-2. teacher and its logits: either carried in as a bundle (made on another machine) or made here
    if cfg.teacher_logits:
        from .teacher.logits import load_logits_bundles

        bundle = load_logits_bundles(cfg.teacher_logits)
        bundle = bundle.aligned_to(train, dev, source=cfg.teacher_logits)  # a subset (quick profile) is fine
        if bundle.train.task != task.name:
            raise ValueError(f"{cfg.teacher_logits} holds logits for task {bundle.train.task}, not {task.name}")
        stored, teacher_dev_logits = bundle.train, bundle.dev.logits
        stage_info["teacher"] = {"source": "logits bundle", "path": cfg.teacher_logits, "bundle": bundle.info}
    else:
        stored, teacher_dev_logits = _teacher_stage(cfg, task, train, dev, out, timer, stage_info)
    results: dict[str, dict[str, float]] = {"teacher": compute_metrics(task, teacher_dev_logits, dev.labels,
                                                                         teacher=True)}

    # 3. students
    base_cfg = DistillConfig(base=cfg.student_base, alpha=cfg.alpha, pooling=cfg.pooling, top_k=cfg.top_k,
                             epochs=cfg.student_epochs, learning_rate=cfg.learning_rate,
                             head_learning_rate=cfg.head_learning_rate, batch_size=cfg.batch_size,
                             max_length=cfg.max_length, seed=cfg.seed)
    runs = [("dse_student", base_cfg)]
    if cfg.label_only_baseline or cfg.only_student == "label_only":
        runs.append(("label_only_student", replace(base_cfg, alpha=0.0)))
    if cfg.only_student is not None:
        wanted = f"{cfg.only_student}_student"
        if wanted not in {name for name, _ in runs}:
            raise ValueError(f"only_student must be 'dse' or 'label_only', not {cfg.only_student!r}")
        runs = [(name, dcfg) for name, dcfg in runs if name == wanted]
    student_dev_logits: dict[str, np.ndarray] = {}
    for name, dcfg in runs:
        folder = out / name
        if (folder / "model" / "dse_config.json").is_file() and (folder / "training.json").is_file():
            check_run_config(folder, distill_run_config(task, dcfg, train, dev, stored.logits))
            training = json.loads((folder / "training.json").read_text())
            _check_finished_epochs(folder, training.get("epochs"), dcfg.epochs, "dsembed distill --epochs N")
            stage_info[name] = {"source": "reused"}
        else:
            timer.run(f"{name}_train", distill, task, train, dev, folder, stored.logits, dcfg,
                      show_progress_bar=progress)
            stage_info[name] = {"source": "trained"}
            training = json.loads((folder / "training.json").read_text())
        if cfg.only_student is not None:
            logger.info("%s is trained in %s; run again without only_student to evaluate and record", name, folder)
            return {"task": task.name, "only_student": name, "folder": str(folder),
                    "stage_seconds": timer.stages, "stages": stage_info}
        if "dev_curve" not in training:  # recorded before curves were kept: read it from the checkpoints
            curve = dev_curve_from_checkpoints(folder / "checkpoints")
            if curve is not None:
                training["dev_curve"] = curve
        stage_info[name]["training"] = training
        model = DSEModel.load(folder / "model")
        metrics, logits = timer.run(f"{name}_dev_eval", evaluate_student, model, task, dev,
                                    show_progress_bar=progress)
        results[name] = metrics
        student_dev_logits[name] = logits
        del model

    # 4. the untouched pretrained encoder with cosine
    if task.kind in ("binary", "regression"):
        from sentence_transformers import SentenceTransformer

        from .bases import resolve_model_path

        st = SentenceTransformer(resolve_model_path(cfg.student_base), local_files_only=True)
        baseline = timer.run("cosine_baseline", cosine_baseline,
                             lambda s: st.encode(s, batch_size=64, show_progress_bar=progress), task, train, dev)
        results["pretrained_cosine"] = baseline.metrics
        stage_info["pretrained_cosine"] = {"threshold": baseline.threshold, "encoder": cfg.student_base}

    main = task.main_metric
    degradation = {name: relative_degradation(results["teacher"][main], results[name][main])
                   for name in results if name != "teacher"}
    # how closely each student reproduces the teacher on the dev pairs (distillation should tighten this)
    fidelity = {name: teacher_fidelity(task, logits, teacher_dev_logits) for name, logits in student_dev_logits.items()}
    record = {
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
    atomic_write_json(out / "record.json", record)
    if cfg.plot:
        from .evaluation.plots import plot_student_vs_teacher

        teacher_targets = task.teacher_to_student_logits(teacher_dev_logits)
        plot_student_vs_teacher(task, teacher_targets, student_dev_logits, dev.labels, out / "student_vs_teacher.png")
    return record


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
    return "\n".join([head, *lines])
