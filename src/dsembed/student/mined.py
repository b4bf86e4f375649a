"""Teacher-scored extra (mined) pairs as the student takes them.

A teacher can score many more pairs than the few thousand labelled ones; :class:`MinedRows` is the
small container :func:`dsembed.student.distill` accepts for them, so the student room does not
depend on the stage that mines them (``dsembed.augment.load_mined_rows`` reads its bundles).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data import PairDataset
from ..errors import ConfigError
from ..tasks import TaskSpec
from ..utils import sha256_bytes, sha256_json

RECIPES = ("dse", "augsbert")
MINED_SAMPLINGS = ("mixed", "concat")


@dataclass
class MinedRows:
    """Unlabelled pairs with the teacher's raw logits (same layout as stored teacher logits).

    ``strategy`` names how each pair was found (e.g. "bm25", "random") and ``teacher`` which teacher
    scored them; both are recorded, neither is trained on.
    """

    pairs: PairDataset
    teacher_logits: np.ndarray
    strategy: list[str] | None = None
    teacher: str | None = None

    def __post_init__(self) -> None:
        self.teacher_logits = np.asarray(self.teacher_logits, dtype=np.float32)
        if self.teacher_logits.ndim != 2 or len(self.teacher_logits) != len(self.pairs):
            raise ConfigError(f"mined pairs: {len(self.pairs)} pairs but teacher logits of shape "
                              f"{self.teacher_logits.shape} (expected ({len(self.pairs)}, num_labels))")
        if len(self.pairs) == 0:
            raise ConfigError("mined pairs: the set is empty")
        if not np.isfinite(self.teacher_logits).all():
            row = int(np.flatnonzero(~np.isfinite(self.teacher_logits).all(axis=1))[0])
            raise ConfigError(f"mined pairs: teacher logits of row {row} are not finite")
        if self.strategy is not None and len(self.strategy) != len(self.pairs):
            raise ConfigError(f"mined pairs: {len(self.strategy)} strategy names for {len(self.pairs)} pairs")

    def __len__(self) -> int:
        return len(self.pairs)

    def check_task(self, task: TaskSpec) -> None:
        """Refuse logits whose width is not the task's teacher output (another task's bundle)."""
        if self.teacher_logits.shape[1] != task.num_labels:
            raise ConfigError(f"mined pairs carry {self.teacher_logits.shape[1]} teacher logits per pair, task "
                              f"{task.name!r} has {task.num_labels}")

    def fingerprint(self) -> str:
        """Hash of the pair texts and their logits: what a run trained on them depends on (strategy names not)."""
        logits = sha256_bytes(np.ascontiguousarray(self.teacher_logits, np.float32).tobytes())
        return sha256_json({"pairs": self.pairs.fingerprint(), "logits": logits})

    def strategy_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.strategy or ["unknown"] * len(self)).items()))


def teacher_labels(task: TaskSpec, teacher_logits: np.ndarray) -> np.ndarray:
    """The AugSBERT targets: the teacher's hard label (binary: logit[1] - logit[0] > 0; multiclass:
    argmax), or its predicted score for regression; float32 like :class:`PairDataset` labels."""
    logits = np.asarray(teacher_logits, dtype=np.float32)
    if task.kind == "binary":
        return (logits[:, 1] - logits[:, 0] > 0).astype(np.float32)
    if task.kind == "regression":
        return logits[:, 0].copy()
    return logits.argmax(axis=1).astype(np.float32)


def mined_record(mined: MinedRows, ratio: float, sampling: str, recipe: str, steps: int) -> dict[str, Any]:
    """What a student's ``training.json`` says about the mined pairs it trained on."""
    return {"count": len(mined), "strategies": mined.strategy_counts(), "fingerprint": mined.fingerprint(),
            "teacher": mined.teacher, "ratio": ratio, "sampling": sampling, "recipe": recipe, "steps": steps}
