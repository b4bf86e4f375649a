"""A chunk's rows as the bytes each store file appends, checked first (no I/O here; :mod:`.build` writes them).

Checked before any byte is written: finite embeddings and head projections (a NaN row would rank first in
every search), texts that are strings and encode as UTF-8 (a lone surrogate cannot). A refused row is named
by its input row and id, so the user can find it in the file they ingested.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..artifacts import (
    STORE_COPIES,
    STORE_EMBEDDINGS,
    STORE_INT8_SCALE,
    STORE_OFFSETS,
    STORE_PROJECTION,
    STORE_PROJECTION_BF16,
    STORE_TEXTS,
)
from ..errors import StoreError
from ..student.head import HeadScorer

if TYPE_CHECKING:  # pragma: no cover
    from .store import CandidateStore


def to_bf16_bytes(rows: np.ndarray) -> bytes:
    return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)).to(torch.bfloat16).view(
        torch.int16).numpy().tobytes()


def int8_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8 quantisation: (codes, scale) with ``rows ~ codes * scale``."""
    scale = np.abs(rows).max(axis=1).astype(np.float32) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(rows / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def row_error(store: CandidateStore, bad: np.ndarray, ids: Sequence[str], first: int | None, source: str,
              problem: str) -> StoreError:
    """A one-line refusal naming the first bad row: by input row (an ingest) or by the store row it would be."""
    i = int(np.argmax(bad))
    where = f"{source or 'input'} row {first + i} (0-based)" if first is not None else f"row {store.count + i}"
    return StoreError(f"{where}, id {str(ids[i])!r}: {problem}; none of its chunk was written to {store.path}")


def check_rows(store: CandidateStore, emb: np.ndarray, texts: Sequence[str], ids: Sequence[str],
               first: int | None, source: str) -> None:
    if emb.ndim != 2 or emb.shape[1] != store.dim:
        raise StoreError(f"{store.path} expects embeddings of shape [n, {store.dim}], got {emb.shape}")
    if not (len(emb) == len(texts) == len(ids)):
        raise StoreError(f"{store.path}: embeddings, texts and ids must have the same length")
    finite = np.isfinite(emb).all(axis=1)
    if not finite.all():
        raise row_error(store, ~finite, ids, first, source, "its embedding has NaN or inf values")


def text_lines(store: CandidateStore, texts: Sequence[str], ids: Sequence[str], first: int | None,
                source: str) -> list[bytes]:
    """One UTF-8 JSON line per row; a text that is not a string or not encodable (lone surrogate) is refused."""
    lines = []
    for i, (rid, text) in enumerate(zip(ids, texts, strict=True)):
        try:
            if not isinstance(text, str):
                raise TypeError(f"the text is a {type(text).__name__}, not a string")
            lines.append((json.dumps({"id": str(rid), "text": text}, ensure_ascii=False) + "\n").encode())
        except (TypeError, UnicodeEncodeError) as exc:
            bad = np.arange(len(texts)) == i
            raise row_error(store, bad, ids, first, source, f"its text cannot be stored ({exc})") from None
    return lines


def _copy_parts(store: CandidateStore, emb: np.ndarray) -> dict[str, bytes]:
    """The bytes ``emb`` appends to each low-precision copy the store keeps."""
    parts: dict[str, bytes] = {}
    for copy in store.copies:
        if copy == "bfloat16":
            parts[STORE_COPIES[copy]] = to_bf16_bytes(emb)
        elif copy == "float16":
            parts[STORE_COPIES[copy]] = emb.astype(np.float16).tobytes()
        else:
            q, scale = int8_rows(emb)
            parts[STORE_COPIES[copy]] = q.tobytes()
            parts[STORE_INT8_SCALE] = scale.tobytes()
    return parts


def chunk_parts(store: CandidateStore, emb: np.ndarray, proj: np.ndarray, lines: list[bytes]) -> dict[str, bytes]:
    """What a chunk appends to every file of the store, by file name."""
    base = int(store.manifest["texts_bytes"])
    ends = np.cumsum(np.fromiter((len(x) for x in lines), dtype=np.int64, count=len(lines)))
    offsets = (base + np.concatenate([[0], ends[:-1]])).astype(np.uint64)
    parts = {STORE_EMBEDDINGS: emb.tobytes(), STORE_PROJECTION: proj.tobytes()}
    if "bfloat16" in store.copies:
        parts[STORE_PROJECTION_BF16] = to_bf16_bytes(proj)
    parts.update(_copy_parts(store, emb))
    parts[STORE_TEXTS] = b"".join(lines)
    parts[STORE_OFFSETS] = offsets.tobytes()
    return parts


def checked_parts(store: CandidateStore, emb: np.ndarray, texts: Sequence[str], ids: Sequence[str],
                  scorer: HeadScorer, first: int | None, source: str) -> dict[str, bytes]:
    """Every file's bytes for the rows ``emb``/``texts``/``ids``, or a :class:`StoreError` naming a bad row."""
    check_rows(store, emb, texts, ids, first, source)
    proj = np.ascontiguousarray(scorer.candidate_proj(emb), dtype=np.float32)
    finite = np.isfinite(proj).all(axis=1)
    if not finite.all():
        raise row_error(store, ~finite, ids, first, source, "its head projection has NaN or inf values")
    return chunk_parts(store, emb, proj, text_lines(store, texts, ids, first, source))
