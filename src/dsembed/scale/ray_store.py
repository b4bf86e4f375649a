"""Encoding a large candidate file into a store on a Ray actor pool, through the store's own writer.

The actors only encode. The driver commits every chunk, in row order, with
:func:`~dsembed.retrieval.ingest`, whose ``encode`` hook the pool feeds; so the files, the manifest and
the resume point are exactly those of :func:`~dsembed.retrieval.build_store`, and a killed Ray build
resumes at its last committed chunk, with Ray or with a plain ``dsembed index build``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import STORE_MANIFEST
from ..errors import ModelMismatchError, StoreError
from ..retrieval import (
    CandidateStore,
    build_ann,
    create_store,
    has_ann,
    ingest,
    model_fingerprint,
    open_store,
    sentences_fingerprint,
)
from ..student import DSEModel
from .ray_pool import RayOptions, chunk_results, ray_session, run_pool

logger = logging.getLogger("dsembed.scale")


class EncoderActor:
    """One actor of the pool: loads the student once, then encodes whole chunks of candidates."""

    def __init__(self, model_path: str, device: str, fingerprint: str, batch_size: int, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.model = DSEModel.load(model_path, device=device)
        if model_fingerprint(self.model) != fingerprint:  # e.g. another model at the same path on this node
            raise ModelMismatchError(f"student {model_path} on this Ray node is not the driver's student")
        self.batch_size = batch_size

    def __call__(self, batch: Any) -> dict[str, np.ndarray]:
        chunks, parts = [], []
        for chunk, texts in zip(batch["chunk"].to_pylist(), batch["texts"].to_pylist(), strict=True):
            # the single-process encode (retrieval.build) exactly: same call, same batches, float32
            parts.append(np.asarray(self.model.encode(texts, batch_size=self.batch_size, show_progress_bar=False),
                                    dtype=np.float32))
            chunks.append(chunk)
        return chunk_results(chunks, parts)


class PoolFeed:
    """``ingest``'s ``encode`` hook, fed by the pool: the pool starts on the first chunk ``ingest`` asks for
    (its resume point), and every embedding block is handed over in row order, checked against its texts."""

    def __init__(self, store: CandidateStore, sentences: Sequence[str], actor_kwargs: dict[str, Any],
                 chunk_size: int, options: RayOptions) -> None:
        self.store, self.sentences, self.actor_kwargs = store, sentences, actor_kwargs
        self.chunk_size, self.options = chunk_size, options
        self._stack = ExitStack()
        self._results: Iterator[tuple[int, np.ndarray]] | None = None
        self._starts: list[int] = []
        self._ahead: dict[int, np.ndarray] = {}
        self._next = 0

    def _start(self) -> None:
        pending = self.store.manifest.get("pending") or {}
        first = self.store.count - int(pending.get("start", self.store.count))  # rows this ingest already has
        self._starts = list(range(first, len(self.sentences), self.chunk_size))
        rows = [{"chunk": i, "texts": list(self.sentences[lo:lo + self.chunk_size])}
                for i, lo in enumerate(self._starts)]
        logger.info("encoding %d chunks of %s on Ray (%d rows already committed)", len(rows), self.store.path, first)
        ray = self._stack.enter_context(ray_session(self.options.address))
        self._results = run_pool(ray, rows, EncoderActor, self.actor_kwargs, self.options, ordered=True)

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self._results is None:
            self._start()
        assert self._results is not None
        index, self._next = self._next, self._next + 1
        lo = self._starts[index] if index < len(self._starts) else len(self.sentences)
        if list(texts) != list(self.sentences[lo:lo + len(texts)]):
            raise StoreError(f"{self.store.path}: the store asked for rows the Ray pool was not given (chunk {index})")
        while index not in self._ahead:
            try:
                chunk, embeddings = next(self._results)
            except StopIteration:
                raise StoreError(f"{self.store.path}: the Ray pool ended before chunk {index}") from None
            self._ahead[chunk] = embeddings
        return self._ahead.pop(index)

    def close(self) -> None:
        if self._results is not None:
            self._results.close()  # type: ignore[attr-defined]
        self._stack.close()


def _open_for_build(student: DSEModel, sentences: Sequence[str], ids: Sequence[str] | None, path: Path,
                    copies: Sequence[str]) -> tuple[CandidateStore, bool]:
    """The store at ``path`` and whether this input still needs rows, by the rules of ``build_store``."""
    if not (path / STORE_MANIFEST).is_file():
        return create_store(path, student, copies=copies), True
    store = open_store(path, student)
    sha = sentences_fingerprint(sentences, ids)
    pending = store.manifest.get("pending")
    if pending and pending["sha256"] == sha:
        logger.info("resuming the build of %s at row %d/%d", path, store.count - pending["start"], pending["total"])
        return store, True
    if not pending and any(s["sha256"] == sha for s in store.manifest.get("sources", [])):
        logger.info("%s already holds this input (%d rows); nothing to do", path, store.count)
        return store, False
    raise StoreError(f"{path} already holds a store built from other input; use `dsembed index add` to append to it, "
                     "or choose a new folder")


def build_store_ray(model: str | os.PathLike[str], sentences: Sequence[str], path: str | os.PathLike[str], *,
                    ids: Sequence[str] | None = None, source: str = "", copies: Sequence[str] = ("bfloat16",),
                    chunk_size: int = 1024, batch_size: int = 32, show_progress_bar: bool = True,
                    ann: str | None = None, ann_kinds: Sequence[str] = ("cosine",), address: str | None = None,
                    concurrency: int = 2, num_cpus: float = 1.0, num_gpus: float = 0.0) -> CandidateStore:
    """:func:`~dsembed.retrieval.build_store` with the chunks encoded by a Ray actor pool.

    ``model`` is a student folder every Ray node can read at that path (the driver loads it too, on
    its CPU, to create and check the store and to project the rows; each actor checks it loaded the
    same weights). The store is written by the driver only, so it can live on the driver's own disk.
    """
    options = RayOptions(address, concurrency, num_cpus, num_gpus)
    student = DSEModel.load(model, device="cpu")
    path = Path(path)
    store, todo = _open_for_build(student, sentences, ids, path, copies)
    if todo:
        kwargs = {"model_path": str(model), "device": options.device, "fingerprint": model_fingerprint(student),
                  "batch_size": batch_size, "threads": options.threads}
        feed = PoolFeed(store, sentences, kwargs, chunk_size, options)
        try:
            ingest(student, store, sentences, ids, source=source, chunk_size=chunk_size, batch_size=batch_size,
                   show_progress_bar=show_progress_bar, encode=feed)
        finally:
            feed.close()
    if ann and ann != "none":
        for kind in ann_kinds:
            if not has_ann(store, kind):
                build_ann(store, ann, kind=kind, model=student, show_progress_bar=show_progress_bar)
    return store
