"""Teacher-scored extra (mined) pairs as the student takes them, and the one reader of a mined bundle.

A teacher can score many more pairs than the few thousand labelled ones; :class:`MinedRows` is the
small container :func:`dsembed.student.distill` accepts for them, so the student room does not
depend on the stage that mines them. :func:`load_mined_rows` reads the bundle folder that stage
writes (``pairs.jsonl`` + ``logits.safetensors`` + ``bundle.json``); it is the one place to swap
for that stage's own loader.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import MINED_INFO, MINED_LOGITS, MINED_PAIRS
from ..data import PairDataset, read_pairs
from ..data.records import Problems, json_rows
from ..errors import ConfigError, CorruptFileError, InputNotFoundError
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


# --------------------------------------------------------------------------------------------------
# the bundle folder (swap this section for the augment stage's own loader once it is merged)
# --------------------------------------------------------------------------------------------------


def _bundle_info(folder: Path) -> dict[str, Any]:
    path = folder / MINED_INFO
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CorruptFileError(f"{path}: not a readable JSON file ({exc})") from exc
    missing = [key for key in ("teacher", "task", "num_labels", "n_pairs") if not isinstance(info, dict)
               or key not in info]
    if missing:
        raise CorruptFileError(f"{path}: missing key {missing[0]!r}")
    return info


def _bundle_logits(path: Path) -> np.ndarray:
    from safetensors.numpy import load_file

    try:
        arrays = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for a damaged header or body
        raise CorruptFileError(f"{path} is not a readable safetensors file ({exc})") from exc
    if "logits" not in arrays:
        raise CorruptFileError(f"{path}: no tensor named 'logits' (found: {', '.join(sorted(arrays)) or 'none'})")
    logits = arrays["logits"]
    if logits.dtype != np.float32 or logits.ndim != 2:
        raise CorruptFileError(f"{path}: 'logits' must be float32 (n, num_labels), got {logits.dtype} "
                               f"{tuple(logits.shape)}")
    return logits


def _strategies(path: Path) -> list[str]:
    names = []
    for number, obj in json_rows(path, Problems(path, skip_bad=False)):
        name = obj.get("strategy") if isinstance(obj, dict) else None
        if not isinstance(name, str) or not name:
            raise CorruptFileError(f"{path}:{number}: missing or empty 'strategy' (a string)")
        names.append(name)
    return names


def load_mined_rows(folder: str | Path, task: TaskSpec) -> MinedRows:
    """Read a mined-pairs bundle folder, checked against ``task``: row counts agree everywhere, the
    logits are finite and as wide as the task's teacher output. Any problem is one DsembedError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputNotFoundError(f"{folder}: mined-pairs bundle folder not found")
    for name in (MINED_INFO, MINED_PAIRS, MINED_LOGITS):
        if not (folder / name).is_file():
            raise InputNotFoundError(f"{folder}: not a mined-pairs bundle ({name} is missing)")
    info = _bundle_info(folder)
    if str(info["task"]) != task.name:
        raise ConfigError(f"{folder / MINED_INFO}: the bundle was mined for task {info['task']!r}, not {task.name!r}")
    if int(info["num_labels"]) != task.num_labels:
        raise ConfigError(f"{folder / MINED_INFO}: num_labels {info['num_labels']} but task {task.name!r} has "
                          f"{task.num_labels}")
    pairs = read_pairs(folder / MINED_PAIRS, task, require_labels=False)
    strategy = _strategies(folder / MINED_PAIRS)
    logits = _bundle_logits(folder / MINED_LOGITS)
    counts = {f"{MINED_INFO} n_pairs": int(info["n_pairs"]), MINED_PAIRS: len(pairs), MINED_LOGITS: len(logits)}
    if len(set(counts.values())) != 1:
        raise CorruptFileError(f"{folder}: row counts disagree (" + ", ".join(f"{k} {v}" for k, v in counts.items())
                               + ")")
    try:
        mined = MinedRows(PairDataset(pairs.sentence1, pairs.sentence2, None, source=str(folder)), logits, strategy,
                          str(info["teacher"]))
    except ConfigError as exc:
        raise CorruptFileError(f"{folder}: {exc}") from exc
    mined.check_task(task)
    return mined
