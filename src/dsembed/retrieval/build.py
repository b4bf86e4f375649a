"""The only writers of a candidate store: create, append (commit) a chunk, ingest, roll back, build.

A chunk is committed by writing (and fsyncing) its rows to every file and then atomically rewriting the
manifest's count together with the chunk's checksum record (:mod:`.manifest`), so a killed build resumes at
the last committed chunk: :func:`ingest` first cuts every file back to the committed rows. An ingest is
recorded as *pending* in the manifest until its last chunk commits, so rerunning the same input continues
where it stopped. Rows are checked before any byte is written (:mod:`.rows`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
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
from .manifest import CHECKSUM, STORE_FORMAT, STORE_VERSION, StoreCorruptError, chunk_record, read_json
from .rows import check_rows, checked_parts
from .store import PREFILTER_KINDS, CandidateStore, model_fingerprint, open_store, sentences_fingerprint

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
        "checksum": CHECKSUM,
        "chunks": [],
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


def append_rows(store: CandidateStore, embeddings: np.ndarray, texts: Sequence[str], ids: Sequence[str],
                scorer: HeadScorer, *, first_input_row: int | None = None, source: str = "") -> None:
    """Commit a chunk: check its rows, write them to every file, then atomically advance the manifest.

    ``first_input_row``/``source``: where the chunk starts in the caller's input, so that a refused row is
    named as the user knows it (default: the store row it would have become).
    """
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    if not len(emb):
        check_rows(store, emb, texts, ids, first_input_row, source)
        return
    parts = checked_parts(store, emb, texts, ids, scorer, first_input_row, source)
    sizes = store.expected_sizes()
    base = int(store.manifest["texts_bytes"])
    for name, data in parts.items():
        _fsync_append(store.path / name, base if name == STORE_TEXTS else sizes[name], data)
    store.manifest["count"] = store.count + len(emb)
    store.manifest["texts_bytes"] = base + len(parts[STORE_TEXTS])
    if "chunks" in store.manifest:  # a store written before checksums stays without them
        store.manifest["chunks"].append(chunk_record(len(emb), parts))
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
    done = [s for s in store.manifest.get("sources", []) if s.get("sha256") == sha]
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
                   show_progress_bar: bool, source: str) -> None:
    """Encode and commit every chunk of ``sentences`` past the rows already committed since ``start``."""
    done_rows = store.count - start
    bar = tqdm(total=len(sentences), initial=done_rows, desc="encoding candidates", unit="sent",
               disable=not show_progress_bar)
    try:
        for lo in range(done_rows, len(sentences), chunk_size):
            hi = min(lo + chunk_size, len(sentences))
            texts = list(sentences[lo:hi])
            chunk_ids = [str(x) for x in ids[lo:hi]] if ids is not None else [str(start + i) for i in range(lo, hi)]
            append_rows(store, encode(texts), texts, chunk_ids, scorer, first_input_row=lo, source=source)
            bar.update(hi - lo)
    finally:
        bar.close()


def _check_input(sentences: Sequence[str], ids: Sequence[str] | None, chunk_size: int, batch_size: int,
                 doing: str) -> None:
    """What an ingest needs, checked before anything is created or written."""
    if ids is not None and len(ids) != len(sentences):
        raise ConfigError(f"{len(ids)} ids for {len(sentences)} sentences ({doing})")
    if not len(sentences):
        raise ConfigError(f"no sentences given ({doing}); nothing was written")
    if chunk_size < 1 or batch_size < 1:
        raise ConfigError(f"chunk_size and batch_size must be >= 1, got {chunk_size} and {batch_size}")


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
    _check_input(sentences, ids, chunk_size, batch_size, f"adding to {store.path}")
    sha = sentences_fingerprint(sentences, ids)
    with store.write_lock:
        _recover(store)
        pending = _begin_ingest(store, sentences, ids, sha, source, allow_duplicate_source)
        start = int(pending["start"])
        _append_chunks(store, sentences, ids, start, encode or _encode_fn(model, batch_size),
                       HeadScorer(model.head), chunk_size, show_progress_bar, source)
        store.manifest.setdefault("sources", []).append(
            {"source": source, "sha256": sha, "start": start, "count": len(sentences),
             "added": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        store.manifest["pending"] = None
        write_manifest(store)
    sync_ann(store)
    return store


def _ann_count(meta_file: Path) -> float:
    """Rows an ANN index holds by its metadata; unreadable metadata counts as too many (the index is dropped)."""
    try:
        meta = read_json(meta_file, "ANN index metadata")
    except StoreCorruptError:
        return math.inf
    return meta.get("count", 0) if isinstance(meta, dict) else math.inf


def discard_pending(store: CandidateStore) -> int:
    """Roll back an unfinished ingest (its committed rows are removed); returns the rows dropped.

    An ANN index that already holds some of the dropped rows is deleted (it cannot shrink); rebuild it.
    """
    with store.write_lock:
        pending = store.manifest.get("pending")
        if not pending:
            return 0
        start = int(pending["start"])
        dropped = store.count - start
        if dropped:
            store.manifest["texts_bytes"] = store.text_offset(start)
        if store.manifest.get("chunks") is not None:  # the ingest began at a chunk boundary: keep those before it
            ends = np.cumsum([rec["rows"] for rec in store.manifest["chunks"]])
            store.manifest["chunks"] = store.manifest["chunks"][:int(np.searchsorted(ends, start, "right"))]
        store.manifest["count"] = start
        store.manifest["pending"] = None
        write_manifest(store)
        _recover(store)
    for kind in PREFILTER_KINDS:
        meta_file = store.ann_files(kind)[1]
        if meta_file.is_file() and _ann_count(meta_file) > store.count:
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
    _check_input(sentences, ids, chunk_size, batch_size, f"building {path}")  # before any folder is created

    def fill(store: CandidateStore) -> None:
        ingest(model, store, sentences, ids, source=source, chunk_size=chunk_size, batch_size=batch_size,
               show_progress_bar=show_progress_bar)

    if (path / STORE_MANIFEST).is_file():
        store = open_store(path, model)
        sha = sentences_fingerprint(sentences, ids)
        pending = store.manifest.get("pending")
        finished = [s for s in store.manifest.get("sources", []) if s.get("sha256") == sha]
        if finished and not pending:
            logger.info("%s already holds this input (%d rows); nothing to do", path, store.count)
        elif pending and pending["sha256"] == sha:
            logger.info("resuming the build of %s at row %d/%d", path, store.count - pending["start"],
                        pending["total"])
            fill(store)
        elif not pending and store.count == 0 and not store.manifest.get("sources"):
            logger.info("%s is an empty store (a build that never added a row); filling it", path)
            fill(store)
        else:
            raise StoreError(f"{path} already holds a store built from other input; use `dsembed index add` to "
                             "append to it, or choose a new folder")
    else:
        store = create_store(path, model, copies=copies)
        fill(store)
    if ann and ann != "none":
        for kind in ann_kinds:
            if not has_ann(store, kind):
                build_ann(store, ann, kind=kind, model=model, show_progress_bar=show_progress_bar)
    return store
