"""Teacher logits over a large pair set on a Ray actor pool, into the single-process cache format.

The driver finds the chunks the cache still lacks (any earlier run's committed chunks are kept, Ray or
not), sends only those to the pool, and commits each returned chunk through the same
:class:`~dsembed.teacher.LogitsCache` the single-process loop uses. The finished logits are then
assembled by :func:`~dsembed.teacher.compute_teacher_logits` itself, so the final file, its keys and
the cache clean-up are exactly the single-process ones.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..artifacts import LOGITS_FILE
from ..data import PairDataset
from ..errors import ConfigError, StaleLogitsError
from ..tasks import TaskSpec
from ..teacher import TeacherLogits, cached_teacher_logits, compute_teacher_logits, load_teacher, open_logits_cache
from .ray_pool import RayOptions, chunk_results, ray_session, run_pool

logger = logging.getLogger("dsembed.scale")


class TeacherActor:
    """One actor of the pool: loads the teacher once, then scores whole chunks of pairs."""

    def __init__(self, spec: str, task: TaskSpec, max_length: int | None, device: str, fingerprint: str,
                 batch_size: int, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.teacher = load_teacher(spec, task, max_length=max_length, device=device)
        if self.teacher.fingerprint() != fingerprint:  # e.g. another model at the same path on this node
            raise StaleLogitsError(f"teacher {spec} on this Ray node is not the driver's teacher")
        self.batch_size = batch_size

    def __call__(self, batch: Any) -> dict[str, np.ndarray]:
        chunks, parts = [], []
        for chunk, first, second in zip(batch["chunk"].to_pylist(), batch["a"].to_pylist(), batch["b"].to_pylist(),
                                        strict=True):
            pairs = list(zip(first, second, strict=True))
            parts.append(self.teacher.predict_logits(pairs, batch_size=self.batch_size, show_progress_bar=False))
            chunks.append(chunk)
        return chunk_results(chunks, parts)


def teacher_logits_ray(teacher: str | Path, task: TaskSpec, data: PairDataset, *, cache: str | Path | None = None,
                       batch_size: int = 64, chunk_size: int = 2048, max_length: int | None = None,
                       use_cache: bool = True, show_progress_bar: bool = True, address: str | None = None,
                       concurrency: int = 2, num_cpus: float = 1.0, num_gpus: float = 0.0) -> TeacherLogits:
    """:func:`~dsembed.teacher.compute_teacher_logits` with the chunks scored by a Ray actor pool.

    ``teacher`` is a cross-encoder folder or hub id (comma-separated: an ensemble) that every Ray node
    can load at that path. The driver loads it too, on its CPU: its fingerprint keys the cache, and
    every actor checks that it loaded the same teacher. Killed, the job resumes from the committed
    chunks, here or in the single-process path (and vice versa).
    """
    if chunk_size < 1 or batch_size < 1:
        raise ConfigError(f"chunk_size and batch_size must be >= 1, got {chunk_size} and {batch_size}")
    options = RayOptions(address, concurrency, num_cpus, num_gpus)
    local = load_teacher(str(teacher), task, max_length=max_length, device="cpu")
    fingerprint = local.fingerprint()
    if use_cache and (stored := cached_teacher_logits(fingerprint, data, cache)) is not None:
        return stored
    entry = open_logits_cache(fingerprint, data, task.num_labels, cache=cache, chunk_size=chunk_size)
    if not use_cache:  # everything is scored again; the assembly below must not take the old file
        (entry.folder / LOGITS_FILE).unlink(missing_ok=True)
    todo = [c for c in range(entry.n_chunks) if not use_cache or entry.load(c) is None]
    logger.info("teacher logits in %s: %d of %d chunks to score on Ray", entry.folder, len(todo), entry.n_chunks)
    if todo:
        rows = [{"chunk": c, "a": data.sentence1[slice(*entry.bounds(c))], "b": data.sentence2[slice(*entry.bounds(c))]}
                for c in todo]
        kwargs = {"spec": str(teacher), "task": task, "max_length": max_length, "device": options.device,
                  "fingerprint": fingerprint, "batch_size": batch_size, "threads": options.threads}
        with ray_session(options.address) as ray, \
                tqdm(total=len(todo), desc="teacher logits (ray)", unit="chunk", disable=not show_progress_bar) as bar:
            for chunk, part in run_pool(ray, rows, TeacherActor, kwargs, options):
                entry.commit(chunk, part)
                bar.update(1)
    # every chunk is committed now: the single-process path only reads, checks and assembles them
    return compute_teacher_logits(local, data, cache=cache, batch_size=batch_size, chunk_size=chunk_size,
                                  show_progress_bar=False)
