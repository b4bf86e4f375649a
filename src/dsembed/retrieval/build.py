"""The only writers of a candidate store: create, append (commit) a chunk, ingest, roll back, build.

A chunk is committed by writing (and fsyncing) its rows to every file and then atomically rewriting the
manifest's count, so a killed build resumes at the last committed chunk: :func:`ingest` first cuts every
file back to the committed rows. An ingest is recorded as *pending* in the manifest until its last chunk
commits, so rerunning the same input continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..artifacts import (
    STORE_COPIES,
    STORE_EMBEDDINGS,
    STORE_INT8_SCALE,
    STORE_MANIFEST,
    STORE_OFFSETS,
    STORE_PROJECTION,
    STORE_PROJECTION_BF16,
    STORE_TEXTS,
)
from ..errors import ConfigError, StoreError
from ..student.head import HeadScorer
from ..utils import atomic_write_json
from .ann import build_ann, has_ann, sync_ann
from .store import (
    PREFILTER_KINDS,
    STORE_FORMAT,
    STORE_VERSION,
    CandidateStore,
    model_fingerprint,
    open_store,
    sentences_fingerprint,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..student.model import DSEModel

logger = logging.getLogger("dsembed.retrieval")


# --------------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------------


def _fsync_append(path: Path, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` (dropping anything after it) and make it durable before returning."""
    with open(path, "r+b" if path.exists() else "w+b") as handle:
        handle.seek(offset)
        handle.write(data)
        handle.truncate()
        handle.flush()
        os.fsync(handle.fileno())


def _truncate(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size != size:
        with open(path, "r+b") as handle:
            handle.truncate(size)


def _to_bf16_bytes(rows: np.ndarray) -> bytes:
    return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)).to(torch.bfloat16).view(
        torch.int16).numpy().tobytes()


def _int8_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8 quantisation: (codes, scale) with ``rows ~ codes * scale``."""
    scale = np.abs(rows).max(axis=1).astype(np.float32) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(rows / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def write_manifest(store: CandidateStore) -> None:
    """Atomically rewrite the manifest from ``store.manifest`` (this is what commits rows)."""
    store.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    atomic_write_json(store.path / STORE_MANIFEST, store.manifest)


def _recover(store: CandidateStore) -> None:
    """Cut every file back to the committed rows (drops a chunk half-written by a killed run)."""
    for name, size in store.expected_sizes().items():
        _truncate(store.path / name, size)
    _truncate(store.path / STORE_TEXTS, int(store.manifest["texts_bytes"]))


# --------------------------------------------------------------------------------------------------
# create and append
# --------------------------------------------------------------------------------------------------


def create_store(path: str | os.PathLike[str], model: DSEModel,
                 copies: Sequence[str] = ("bfloat16",)) -> CandidateStore:
    """An empty store for ``model`` (refuses to overwrite an existing one)."""
    path = Path(path)
    for copy in copies:
        if copy not in STORE_COPIES:
            raise ConfigError(f"{path}: unknown copy dtype {copy!r}; choose from {', '.join(STORE_COPIES)}")
    if (path / STORE_MANIFEST).exists():
        raise StoreError(f"{path} already holds a store; open it, add to it, or remove it first")
    if path.exists() and any(path.iterdir()):
        raise StoreError(f"{path} exists and is not empty")
    path.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": STORE_FORMAT,
        "version": STORE_VERSION,
        "model_fingerprint": model_fingerprint(model),
        "model": {"base_model": model.config.base_model, "task": model.task.name, "kind": model.task.kind,
                  "pooling": model.config.pooling, "top_k": model.config.top_k},
        "embedding_dim": int(model.embedding_dim),
        "hidden": int(model.head.dense.out_features),
        "dtype": "float32",
        "copies": list(dict.fromkeys(copies)),
        "count": 0,
        "texts_bytes": 0,
        "sources": [],
        "pending": None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    for name in [STORE_EMBEDDINGS, STORE_PROJECTION, STORE_TEXTS, STORE_OFFSETS, *(STORE_COPIES[c] for c in copies)]:
        (path / name).touch()
    if "int8" in copies:
        (path / STORE_INT8_SCALE).touch()
    if "bfloat16" in copies:
        (path / STORE_PROJECTION_BF16).touch()
    atomic_write_json(path / STORE_MANIFEST, manifest)
    return CandidateStore(path)


def _check_rows(store: CandidateStore, emb: np.ndarray, texts: Sequence[str], ids: Sequence[str]) -> None:
    if emb.ndim != 2 or emb.shape[1] != store.dim:
        raise StoreError(f"{store.path} expects embeddings of shape [n, {store.dim}], got {emb.shape}")
    if not (len(emb) == len(texts) == len(ids)):
        raise StoreError(f"{store.path}: embeddings, texts and ids must have the same length")
    if not np.isfinite(emb).all():
        raise StoreError(f"{store.path}: embeddings contain NaN or inf")


def _write_copies(store: CandidateStore, emb: np.ndarray, sizes: dict[str, int]) -> None:
    """Append ``emb`` to each low-precision copy the store keeps."""
    for copy in store.copies:
        if copy == "bfloat16":
            data = _to_bf16_bytes(emb)
        elif copy == "float16":
            data = emb.astype(np.float16).tobytes()
        else:
            q, scale = _int8_rows(emb)
            data = q.tobytes()
            _fsync_append(store.path / STORE_INT8_SCALE, sizes[STORE_INT8_SCALE], scale.tobytes())
        _fsync_append(store.path / STORE_COPIES[copy], sizes[STORE_COPIES[copy]], data)


def append_rows(store: CandidateStore, embeddings: np.ndarray, texts: Sequence[str], ids: Sequence[str],
                scorer: HeadScorer) -> None:
    """Commit a chunk: write its rows to every file, then atomically advance the manifest's count."""
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    _check_rows(store, emb, texts, ids)
    n0 = store.count
    sizes = store.expected_sizes(n0)
    _fsync_append(store.path / STORE_EMBEDDINGS, sizes[STORE_EMBEDDINGS], emb.tobytes())
    proj = scorer.candidate_proj(emb).astype(np.float32)
    _fsync_append(store.path / STORE_PROJECTION, sizes[STORE_PROJECTION], proj.tobytes())
    if "bfloat16" in store.copies:
        _fsync_append(store.path / STORE_PROJECTION_BF16, sizes[STORE_PROJECTION_BF16], _to_bf16_bytes(proj))
    _write_copies(store, emb, sizes)
    lines = [(json.dumps({"id": str(i), "text": t}, ensure_ascii=False) + "\n").encode() for i, t in
             zip(ids, texts, strict=True)]
    base = int(store.manifest["texts_bytes"])
    offsets = base + np.concatenate([[0], np.cumsum([len(x) for x in lines])[:-1]]).astype(np.uint64)
    _fsync_append(store.path / STORE_TEXTS, base, b"".join(lines))
    _fsync_append(store.path / STORE_OFFSETS, sizes[STORE_OFFSETS], offsets.astype(np.uint64).tobytes())
    store.manifest["count"] = n0 + len(emb)
    store.manifest["texts_bytes"] = base + sum(len(x) for x in lines)
    write_manifest(store)


# --------------------------------------------------------------------------------------------------
# ingest: encode sentences in chunks and commit them, resumably
# --------------------------------------------------------------------------------------------------


def _encode_fn(model: DSEModel, batch_size: int) -> Callable[[list[str]], np.ndarray]:
    def run(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(texts, batch_size=batch_size, show_progress_bar=False), dtype=np.float32)

    return run


def _check_new_ids(store: CandidateStore, sentences: Sequence[str], ids: Sequence[str] | None) -> None:
    new_ids = [str(i) for i in ids] if ids is not None else [str(store.count + i) for i in range(len(sentences))]
    if len(set(new_ids)) != len(new_ids):
        raise StoreError(f"candidate ids must be unique (adding to {store.path})")
    if ids is not None and store.count:
        clash = set(store.ids()).intersection(new_ids)
        if clash:
            raise StoreError(f"{len(clash)} id(s) already in the store {store.path}, e.g. {sorted(clash)[:3]}")


def _begin_ingest(store: CandidateStore, sentences: Sequence[str], ids: Sequence[str] | None, sha: str,
                  source: str, allow_duplicate_source: bool) -> dict[str, Any]:
    """The pending record of this ingest: the unfinished one it resumes, or a new one (checked and saved)."""
    pending = store.manifest.get("pending")
    if pending and pending["sha256"] != sha:
        raise StoreError(
            f"store {store.path} has an unfinished ingest of another input ({pending.get('source')!r}, "
            f"{store.count - pending['start']}/{pending['total']} rows done): rerun that one to finish it, or "
            "discard it (`dsembed index add --discard-pending`)")
    if pending:
        return pending
    done = [s for s in store.manifest.get("sources", []) if s["sha256"] == sha]
    if done and not allow_duplicate_source:
        raise StoreError(f"this input was already added to {store.path} (rows {done[0]['start']}.."
                         f"{done[0]['start'] + done[0]['count'] - 1}); pass allow_duplicate_source to add it again")
    _check_new_ids(store, sentences, ids)
    pending = {"sha256": sha, "source": source, "start": store.count, "total": len(sentences),
               "ids": "given" if ids is not None else "row"}
    store.manifest["pending"] = pending
    write_manifest(store)
    return pending


def _append_chunks(store: CandidateStore, sentences: Sequence[str], ids: Sequence[str] | None, start: int,
                   encode: Callable[[list[str]], np.ndarray], scorer: HeadScorer, chunk_size: int,
                   show_progress_bar: bool) -> None:
    """Encode and commit every chunk of ``sentences`` past the rows already committed since ``start``."""
    done_rows = store.count - start
    bar = tqdm(total=len(sentences), initial=done_rows, desc="encoding candidates", unit="sent",
               disable=not show_progress_bar)
    try:
        for lo in range(done_rows, len(sentences), chunk_size):
            hi = min(lo + chunk_size, len(sentences))
            texts = list(sentences[lo:hi])
            chunk_ids = [str(x) for x in ids[lo:hi]] if ids is not None else [str(start + i) for i in range(lo, hi)]
            append_rows(store, encode(texts), texts, chunk_ids, scorer)
            bar.update(hi - lo)
    finally:
        bar.close()


def ingest(model: DSEModel, store: CandidateStore, sentences: Sequence[str], ids: Sequence[str] | None = None, *,
           source: str = "", chunk_size: int = 1024, batch_size: int = 32, show_progress_bar: bool = True,
           allow_duplicate_source: bool = False,
           encode: Callable[[list[str]], np.ndarray] | None = None) -> CandidateStore:
    """Encode ``sentences`` in chunks and append them to ``store``; a rerun after a kill resumes.

    The ingest is recorded as *pending* in the manifest until its last chunk commits, so rerunning the
    same input continues at the first uncommitted chunk; a different input is refused until the pending
    one finishes (or :func:`discard_pending` rolls it back). The store's ANN indexes are extended after.
    """
    store.check_model(model)
    if ids is not None and len(ids) != len(sentences):
        raise ConfigError(f"{len(ids)} ids for {len(sentences)} sentences (adding to {store.path})")
    if not sentences:
        raise ConfigError(f"no sentences to add to {store.path}")
    if chunk_size < 1 or batch_size < 1:
        raise ConfigError(f"chunk_size and batch_size must be >= 1, got {chunk_size} and {batch_size}")
    sha = sentences_fingerprint(sentences, ids)
    with store.write_lock:
        _recover(store)
        pending = _begin_ingest(store, sentences, ids, sha, source, allow_duplicate_source)
        start = int(pending["start"])
        _append_chunks(store, sentences, ids, start, encode or _encode_fn(model, batch_size),
                       HeadScorer(model.head), chunk_size, show_progress_bar)
        store.manifest.setdefault("sources", []).append(
            {"source": source, "sha256": sha, "start": start, "count": len(sentences),
             "added": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        store.manifest["pending"] = None
        write_manifest(store)
    sync_ann(store)
    return store


def discard_pending(store: CandidateStore) -> int:
    """Roll back an unfinished ingest (its committed rows are removed); returns the rows dropped.

    An ANN index that already holds some of the dropped rows is deleted (it cannot shrink); rebuild it.
    """
    with store.write_lock:
        pending = store.manifest.get("pending")
        if not pending:
            return 0
        dropped = store.count - int(pending["start"])
        if dropped:
            store.manifest["texts_bytes"] = store.text_offset(int(pending["start"]))
        store.manifest["count"] = int(pending["start"])
        store.manifest["pending"] = None
        write_manifest(store)
        _recover(store)
    for kind in PREFILTER_KINDS:
        meta_file = store.ann_files(kind)[1]
        if meta_file.is_file() and json.loads(meta_file.read_text()).get("count", 0) > store.count:
            for file in store.ann_files(kind):
                file.unlink(missing_ok=True)
    return dropped


# --------------------------------------------------------------------------------------------------
# build: create or resume, then the ANN indexes
# --------------------------------------------------------------------------------------------------


def build_store(model: DSEModel, sentences: Sequence[str], path: str | os.PathLike[str], *,
                ids: Sequence[str] | None = None, source: str = "", copies: Sequence[str] = ("bfloat16",),
                chunk_size: int = 1024, batch_size: int = 32, show_progress_bar: bool = True,
                ann: str | None = None, ann_kinds: Sequence[str] = ("cosine",)) -> CandidateStore:
    """Create (or resume building) a store over ``sentences``; optionally build its ANN index too.

    Rerunning after an interruption continues from the last committed chunk; rerunning a finished build
    of the same input is a no-op.
    """
    path = Path(path)
    if (path / STORE_MANIFEST).is_file():
        store = open_store(path, model)
        sha = sentences_fingerprint(sentences, ids)
        pending = store.manifest.get("pending")
        finished = [s for s in store.manifest.get("sources", []) if s["sha256"] == sha]
        if finished and not pending:
            logger.info("%s already holds this input (%d rows); nothing to do", path, store.count)
        elif pending and pending["sha256"] == sha:
            logger.info("resuming the build of %s at row %d/%d", path, store.count - pending["start"],
                        pending["total"])
            ingest(model, store, sentences, ids, source=source, chunk_size=chunk_size, batch_size=batch_size,
                   show_progress_bar=show_progress_bar)
        else:
            raise StoreError(f"{path} already holds a store built from other input; use `dsembed index add` to "
                             "append to it, or choose a new folder")
    else:
        store = create_store(path, model, copies=copies)
        ingest(model, store, sentences, ids, source=source, chunk_size=chunk_size, batch_size=batch_size,
               show_progress_bar=show_progress_bar)
    if ann and ann != "none":
        for kind in ann_kinds:
            if not has_ann(store, kind):
                build_ann(store, ann, kind=kind, model=model, show_progress_bar=show_progress_bar)
    return store
