"""How head logits become a ranking: which output, a monotone key, the user-facing score; the scorer cache.

Shared by the exact scan (``search``), the head-surrogate prefilter (``ann``) and all-pairs (``allpairs``);
it sits below all three so that none of them has to import another for these few lines.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..student.head import HeadScorer

if TYPE_CHECKING:  # pragma: no cover
    from ..student.model import DSEModel


def resolve_label(task: Any, label: int | str | None) -> int:
    """Which output a multiclass ranking sorts by: an index or class name; default ``entailment`` or the last."""
    if task.kind != "multiclass":
        return 0
    labels = list(task.labels)
    if label is None:
        return labels.index("entailment") if "entailment" in labels else len(labels) - 1
    if isinstance(label, str) and not label.lstrip("-").isdigit():
        if label not in labels:
            raise ConfigError(f"unknown label {label!r}; the task's labels are {', '.join(labels)}")
        return labels.index(label)
    index = int(label)
    if not 0 <= index < len(labels):
        raise ConfigError(f"label index {index} out of range for {len(labels)} classes")
    return index


def ranking_key(logits: Tensor, kind: str, label: int) -> Tensor:
    """A scalar per pair that orders candidates like the user-facing score (monotone in it)."""
    if kind == "multiclass":
        return torch.log_softmax(logits, dim=-1)[..., label]
    return logits[..., 0]


def key_to_score(key: np.ndarray, kind: str) -> np.ndarray:
    """The user-facing score of a :func:`ranking_key`: P(positive), the regression value, or P(label)."""
    if kind == "binary":
        return 1.0 / (1.0 + np.exp(-key))
    if kind == "multiclass":
        return np.exp(key)
    return key


_SCORERS: weakref.WeakKeyDictionary[Any, tuple[Any, HeadScorer]] = weakref.WeakKeyDictionary()


def scorer_for(model: DSEModel) -> HeadScorer:
    """A cached :class:`HeadScorer` for the model's current head weights (rebuilt after any weight change)."""
    key = tuple((p.data_ptr(), p._version) for p in model.head.parameters())
    hit = _SCORERS.get(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    scorer = HeadScorer(model.head)
    _SCORERS[model] = (key, scorer)
    return scorer
