"""Scale-out on existing engines: Ray Data for the embarrassingly parallel jobs.

:func:`teacher_logits_ray` scores a large pair set into the teacher-logits cache, :func:`build_store_ray`
encodes a large candidate file into a store; both write exactly what the single-process path writes and
resume from what either path committed. Distributed training needs nothing here: launch ``dsembed distill``
or ``dsembed teacher train`` with ``torchrun`` / ``accelerate launch`` (see :mod:`dsembed.training`).
Ray is imported only when a job runs, so ``import dsembed.scale`` works without it.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {"teacher_logits_ray": "ray_logits", "build_store_ray": "ray_store", "ray_session": "ray_pool",
           "RayOptions": "ray_pool"}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dsembed.scale' has no attribute {name!r}")
