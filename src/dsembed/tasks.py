"""Task registry: what a pair task is (labels, head size, losses, metrics).

Every other stage asks the task how to read labels, how many logits the teacher and the
student have, and which metric selects checkpoints, so adding a task is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .errors import ConfigError

TaskKind = Literal["binary", "regression", "multiclass"]


@dataclass(frozen=True)
class TaskSpec:
    """A sentence-pair task.

    ``labels`` lists the class names in index order for classification tasks; raw label strings
    are mapped through ``label_aliases`` first (so ``"1"``, ``"entailment"`` both work).
    """

    name: str
    kind: TaskKind
    labels: tuple[str, ...] = ()
    label_aliases: dict[str, str] = field(default_factory=dict)
    metrics: tuple[str, ...] = ("accuracy",)
    main_metric: str = "accuracy"
    # Hugging Face `datasets` location (path, config, column names, split names).
    hf_path: str | None = None
    hf_config: str | None = None
    hf_columns: tuple[str, str, str] = ("sentence1", "sentence2", "label")
    hf_splits: dict[str, str] = field(default_factory=dict)
    local_dir: str | None = None  # folder name under the shared GLUE data directory
    max_length: int = 128
    label_range: tuple[float, float] | None = None  # regression: allowed values

    @property
    def num_labels(self) -> int:
        """Number of classes of the *teacher* (cross-encoder) output."""
        return 1 if self.kind == "regression" else len(self.labels)

    @property
    def student_outputs(self) -> int:
        """Binary tasks distil one logit (teacher logit[1] - logit[0]), as the paper does."""
        if self.kind == "multiclass":
            return len(self.labels)
        return 1

    def parse_label(self, raw: str) -> float:
        """Turn a label string into a float (class index or score); ValueError says why not."""
        text = raw.strip()
        if self.kind == "regression":
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"label {raw!r} is not a number") from None
            if value != value:  # NaN
                raise ValueError(f"label {raw!r} is not a number")
            if self.label_range is not None:
                low, high = self.label_range
                if not low <= value <= high:
                    raise ValueError(f"label {value} is outside [{low}, {high}]")
            return value
        name = self.label_aliases.get(text.lower(), text)
        if name in self.labels:
            return float(self.labels.index(name))
        # integer class ids are accepted too ("0", "1", "2")
        try:
            index = int(text)
        except ValueError:
            index = -1
        if 0 <= index < len(self.labels) and str(index) == text:
            return float(index)
        raise ValueError(f"unknown label {raw!r} (expected one of {', '.join(self.labels)})")

    def teacher_to_student_logits(self, logits):  # noqa: ANN001 - numpy or torch
        """Map stored teacher logits [n, num_labels] to the student's targets [n, outputs]."""
        if self.kind == "binary":
            return logits[:, 1:2] - logits[:, 0:1]
        return logits


_BINARY_01 = ("0", "1")
_ENTAIL = ("entailment", "not_entailment")

TASKS: dict[str, TaskSpec] = {
    "mrpc": TaskSpec(
        name="mrpc",
        kind="binary",
        labels=_BINARY_01,
        label_aliases={"not_equivalent": "0", "equivalent": "1"},
        metrics=("accuracy", "f1"),
        main_metric="f1",
        hf_path="nyu-mll/glue",
        hf_config="mrpc",
        hf_splits={"train": "train", "dev": "validation", "test": "test"},
        local_dir="MRPC",
    ),
    "stsb": TaskSpec(
        name="stsb",
        kind="regression",
        metrics=("pearson", "spearman"),
        main_metric="spearman",
        hf_path="nyu-mll/glue",
        hf_config="stsb",
        hf_splits={"train": "train", "dev": "validation"},
        local_dir="STS-B",
        label_range=(0.0, 5.0),
    ),
    "rte": TaskSpec(
        name="rte",
        kind="binary",
        # GLUE's RTE uses 0 = entailment; the positive class (index 1) here is entailment so
        # that a higher student score always means "more related".
        labels=("not_entailment", "entailment"),
        metrics=("accuracy",),
        main_metric="accuracy",
        hf_path="nyu-mll/glue",
        hf_config="rte",
        hf_splits={"train": "train", "dev": "validation"},
        local_dir="RTE",
        max_length=256,
    ),
    "qnli": TaskSpec(
        name="qnli",
        kind="binary",
        labels=("not_entailment", "entailment"),
        metrics=("accuracy",),
        main_metric="accuracy",
        hf_path="nyu-mll/glue",
        hf_config="qnli",
        hf_columns=("question", "sentence", "label"),
        hf_splits={"train": "train", "dev": "validation"},
        local_dir="QNLI",
        max_length=256,
    ),
    "qqp": TaskSpec(
        name="qqp",
        kind="binary",
        labels=_BINARY_01,
        metrics=("accuracy", "f1"),
        main_metric="f1",
        hf_path="nyu-mll/glue",
        hf_config="qqp",
        hf_columns=("question1", "question2", "label"),
        hf_splits={"train": "train", "dev": "validation"},
        local_dir="QQP",
    ),
    "mnli": TaskSpec(
        name="mnli",
        kind="multiclass",
        labels=("entailment", "neutral", "contradiction"),
        metrics=("accuracy",),
        main_metric="accuracy",
        hf_path="nyu-mll/glue",
        hf_config="mnli",
        hf_columns=("premise", "hypothesis", "label"),
        hf_splits={"train": "train", "dev": "validation_matched", "dev_mismatched": "validation_mismatched"},
        local_dir="MNLI",
    ),
}

# GLUE's Hugging Face copies store class ids in their own order; map them to ours.
HF_LABEL_NAMES: dict[str, tuple[str, ...]] = {
    "rte": ("entailment", "not_entailment"),
    "qnli": ("entailment", "not_entailment"),
    "mnli": ("entailment", "neutral", "contradiction"),
    "mrpc": ("0", "1"),
    "qqp": ("0", "1"),
}


def get_task(name: str) -> TaskSpec:
    """Look a task up by name (case and dashes ignored: ``STS-B`` == ``stsb``)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in TASKS:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[key]


def custom_task(name: str, kind: TaskKind, labels: tuple[str, ...] = (), metrics: tuple[str, ...] | None = None,
                max_length: int = 128) -> TaskSpec:
    """A user-defined task over their own files (no GLUE location)."""
    if kind not in ("binary", "regression", "multiclass"):
        raise ConfigError(f"unknown task kind {kind!r}; choose binary, regression or multiclass")
    if kind != "regression" and len(labels) < 2:
        raise ConfigError("a classification task needs at least two labels (--labels a,b)")
    if kind == "regression":
        default_metrics, main = ("pearson", "spearman"), "spearman"
    elif kind == "binary":
        default_metrics, main = ("accuracy", "f1"), "f1"
    else:
        default_metrics, main = ("accuracy",), "accuracy"
    metrics = metrics or default_metrics
    return TaskSpec(name=name, kind=kind, labels=tuple(labels), metrics=metrics,
                    main_metric=main if main in metrics else metrics[0], max_length=max_length)
