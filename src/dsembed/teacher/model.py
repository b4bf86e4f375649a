"""Teacher inference: a cross-encoder folder or hub id (or an ensemble of them) giving raw pair logits.

Any ready-made sequence-classification model can be a teacher; :func:`load_teacher` takes one, or
several comma-separated members whose logits are averaged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ..artifacts import TEACHER_INFO
from ..errors import ConfigError
from ..tasks import TaskSpec
from ..utils import folder_fingerprint, resolve_device


class _PairScorer:
    """``predict`` on the student's scale, for anything with ``task`` and ``predict_logits``."""

    task: TaskSpec

    def predict_logits(self, pairs: list[tuple[str, str]], batch_size: int = 64,
                       show_progress_bar: bool | None = None) -> np.ndarray:
        raise NotImplementedError

    def predict(self, pairs: list[tuple[str, str]], batch_size: int = 64,
                show_progress_bar: bool | None = None) -> np.ndarray:
        """Pair scores on the student's scale (P(positive), regression value, class probabilities)."""
        from ..student.loss import logits_to_scores

        logits = self.task.teacher_to_student_logits(self.predict_logits(pairs, batch_size, show_progress_bar))
        return logits_to_scores(self.task, torch.as_tensor(logits)).numpy()


class Teacher(_PairScorer):
    """Inference over a cross-encoder folder or hub id: raw logits for pairs."""

    def __init__(self, model_name_or_path: str | Path, task: TaskSpec, max_length: int | None = None,
                 device: str | None = None) -> None:
        from ..bases import load_pretrained, resolve_model_path

        self.device = str(resolve_device(device))  # None/auto: a GPU if there is one; cuda without one: one line
        self.path = resolve_model_path(str(model_name_or_path))
        self.task = task
        self.tokenizer = load_pretrained(AutoTokenizer, self.path, "teacher tokenizer")
        self.model = load_pretrained(AutoModelForSequenceClassification, self.path, "cross-encoder teacher")
        self.model = self.model.to(self.device).eval()
        info_file = Path(self.path) / TEACHER_INFO
        self.info: dict[str, Any] = json.loads(info_file.read_text()) if info_file.is_file() else {}
        self.max_length = max_length or self.info.get("max_length") or task.max_length
        got = self.model.config.num_labels
        if got != task.num_labels:
            raise ConfigError(f"teacher {self.path} has {got} outputs but task {task.name} needs {task.num_labels}")

    def fingerprint(self) -> str:
        """Identity of the teacher's weights + config + inference length; keys the logit cache."""
        base = folder_fingerprint(self.path) if Path(self.path).is_dir() else f"hub:{self.path}"
        return f"{base}:len{self.max_length}"

    @torch.inference_mode()
    def predict_logits(self, pairs: list[tuple[str, str]], batch_size: int = 64,
                       show_progress_bar: bool | None = None) -> np.ndarray:
        """Raw logits [n, num_labels]; pairs are length-sorted into batches for speed, then unsorted."""
        out = np.zeros((len(pairs), self.task.num_labels), dtype=np.float32)
        if not pairs:
            return out
        order = np.argsort([-(len(a) + len(b)) for a, b in pairs], kind="stable")
        show = len(pairs) > 4 * batch_size if show_progress_bar is None else show_progress_bar
        for start in tqdm(range(0, len(pairs), batch_size), desc="teacher", disable=not show, unit="batch"):
            idx = order[start:start + batch_size]
            enc = self.tokenizer([pairs[i][0] for i in idx], [pairs[i][1] for i in idx], truncation=True,
                                 max_length=self.max_length, padding=True, return_tensors="pt").to(self.device)
            logits = self.model(**enc).logits.float().cpu().numpy()
            out[idx] = logits
        return out



class EnsembleTeacher(_PairScorer):
    """Mean of several cross-encoders' logits: steadier, usually stronger than any one member."""

    def __init__(self, members: list[str | Path], task: TaskSpec, max_length: int | None = None,
                 device: str | None = None) -> None:
        if len(members) < 2:
            raise ConfigError("an ensemble teacher needs at least two cross-encoders")
        self.members = [Teacher(m, task, max_length=max_length, device=device) for m in members]
        self.task = task
        self.path = ",".join(str(m.path) for m in self.members)
        self.max_length = self.members[0].max_length
        self.info: dict[str, Any] = {"members": [dict(m.info, path=str(m.path)) for m in self.members]}

    def fingerprint(self) -> str:
        # order-independent: the mean does not depend on the order of the members
        return "ensemble:" + "+".join(sorted(m.fingerprint() for m in self.members))

    def predict_logits(self, pairs: list[tuple[str, str]], batch_size: int = 64,
                       show_progress_bar: bool | None = None) -> np.ndarray:
        return np.mean([m.predict_logits(pairs, batch_size, show_progress_bar) for m in self.members], axis=0)



def load_teacher(spec: str | Path, task: TaskSpec, max_length: int | None = None,
                 device: str | None = None) -> Teacher | EnsembleTeacher:
    """One cross-encoder (folder or hub id), or an ensemble given as comma-separated members."""
    members = [m.strip() for m in str(spec).split(",") if m.strip()]
    if len(members) > 1:
        return EnsembleTeacher(members, task, max_length=max_length, device=device)
    return Teacher(members[0], task, max_length=max_length, device=device)
