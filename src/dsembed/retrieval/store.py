"""The on-disk candidate store, read side: opening, validating and reading a store folder.

Store layout (a folder; every name comes from :mod:`dsembed.artifacts`)::

    STORE_MANIFEST           format, model fingerprint, dims, committed row count, copies, sources, pending ingest
    STORE_EMBEDDINGS         N x d float32 (raw, unnormalised embeddings, append-only)
    STORE_PROJECTION         N x hidden float32: (W2 + W4) v + b (see :mod:`dsembed.student.head`)
    STORE_COPIES[...]        optional low-precision copies (bf16/f16/int8, + STORE_INT8_SCALE for int8);
    STORE_PROJECTION_BF16    written with the bfloat16 copy: the bf16 screening scan reads only bf16
    STORE_TEXTS              one {"id", "text"} object per row;  STORE_OFFSETS: byte offset of each row
    ann.faiss/.json          optional FAISS index over the L2-normalised embeddings (cosine prefilter)
    ann-head.faiss/.json/.surrogate.npz   optional FAISS index over the head surrogate (head prefilter)

A chunk is committed by writing its rows to every file and then atomically rewriting the manifest's count
(see :mod:`.build`, the only writer), so readers trust the manifest and ignore any bytes past its count.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

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
from ..errors import ConfigError, ModelMismatchError, StoreError

if TYPE_CHECKING:  # pragma: no cover
    from ..student.model import DSEModel

STORE_FORMAT = "dsembed-candidate-store"
STORE_VERSION = 1
# The ANN prefilter kinds; defined with the store's file layout because info() lists each kind's files.
PREFILTER_KINDS = ("cosine", "head")
COPY_BYTES = {"bfloat16": 2, "float16": 2, "int8": 1}  # bytes per value of each low-precision copy


# --------------------------------------------------------------------------------------------------
# identity of a model and of an ingest
# --------------------------------------------------------------------------------------------------


def model_fingerprint(model: DSEModel) -> str:
    """Content hash of everything that shapes embeddings and head scores (weights, pooling, lengths).

    Computed from the in-memory tensors, so a model loaded from a folder and the same model before saving
    agree; cached on the model until any parameter changes (tensor version counters).
    """
    tensors = [*model.encoder.state_dict().items(), *(("head." + k, v) for k, v in model.head.state_dict().items())]
    key = tuple((t.data_ptr(), t._version) for _, t in tensors)
    cached = getattr(model, "_dsembed_fingerprint", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    meta = {
        "pooling": model.config.pooling, "top_k": model.config.top_k, "embedding_dim": model.config.embedding_dim,
        "head_hidden": model.config.head_hidden, "outputs": model.task.student_outputs, "kind": model.task.kind,
        "max_seq_length": getattr(model.encoder, "max_seq_length", None),
    }
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name, tensor in sorted(tensors, key=lambda item: item[0]):
        t = tensor.detach().cpu().contiguous()
        digest.update(name.encode() + b"\0" + str(t.dtype).encode() + str(tuple(t.shape)).encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    value = digest.hexdigest()
    object.__setattr__(model, "_dsembed_fingerprint", (key, value))
    return value


def sentences_fingerprint(sentences: Sequence[str], ids: Sequence[str] | None) -> str:
    """Identity of an ingest (texts and ids in order): a rerun with the same input resumes it."""
    digest = hashlib.sha256(b"dsembed-ingest-v1\0")
    for i, text in enumerate(sentences):
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
        if ids is not None:
            digest.update(str(ids[i]).encode() + b"\1")
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------------------------------


def _memmap(path: Path, dtype: Any, rows: int, cols: int, mode: str = "c") -> np.ndarray:
    """A [rows, cols] view of a raw file (copy-on-write mode: writable for torch, never written back)."""
    if rows == 0:
        return np.zeros((0, cols), dtype=dtype)
    return np.memmap(path, dtype=dtype, mode=mode, shape=(rows, cols))


class CandidateStore:
    """An on-disk, append-only set of encoded candidates for one model (see the module docstring).

    Opening validates the manifest and that every file holds at least the committed rows; creating and
    appending are :func:`dsembed.retrieval.build.create_store` and :func:`~dsembed.retrieval.build.append_rows`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        manifest_path = self.path / STORE_MANIFEST
        if not manifest_path.is_file():
            raise StoreError(f"{self.path} is not a dsembed candidate store ({STORE_MANIFEST} is missing); "
                             "build one with `dsembed index build`")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != STORE_FORMAT:
            raise StoreError(f"{manifest_path} is not a dsembed candidate store manifest")
        if manifest.get("version", 0) > STORE_VERSION:
            raise StoreError(f"{self.path} was written by a newer dsembed (store version {manifest['version']})")
        self.manifest: dict[str, Any] = manifest
        self.write_lock = threading.Lock()  # held by the writers in .build while they change files
        self._check_sizes()

    # -- properties -----------------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return int(self.manifest["count"])

    def __len__(self) -> int:
        return self.count

    @property
    def dim(self) -> int:
        return int(self.manifest["embedding_dim"])

    @property
    def hidden(self) -> int:
        return int(self.manifest["hidden"])

    @property
    def copies(self) -> list[str]:
        return list(self.manifest.get("copies", []))

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["model_fingerprint"])

    def check_model(self, model: DSEModel) -> None:
        """Raise :class:`ModelMismatchError` unless ``model`` is the one this store was built with."""
        got = model_fingerprint(model)
        if got != self.fingerprint:
            built = self.manifest.get("model", {})
            raise ModelMismatchError(
                f"store {self.path} was built with another model (fingerprint {self.fingerprint[:12]}, "
                f"base {built.get('base_model')!r}, task {built.get('task')!r}); this model's fingerprint is "
                f"{got[:12]}. Rebuild the store with this model (`dsembed index build`).")

    # -- file layout ----------------------------------------------------------------------------------
    def expected_sizes(self, count: int | None = None) -> dict[str, int]:
        """Bytes each fixed-width file holds for ``count`` rows (default: the committed rows)."""
        n = self.count if count is None else count
        sizes = {STORE_EMBEDDINGS: n * self.dim * 4, STORE_PROJECTION: n * self.hidden * 4, STORE_OFFSETS: n * 8}
        for copy in self.copies:
            sizes[STORE_COPIES[copy]] = n * self.dim * COPY_BYTES[copy]
        if "int8" in self.copies:
            sizes[STORE_INT8_SCALE] = n * 4
        if "bfloat16" in self.copies:
            sizes[STORE_PROJECTION_BF16] = n * self.hidden * 2
        return sizes

    def _check_sizes(self) -> None:
        for name, size in self.expected_sizes().items():
            file = self.path / name
            actual = file.stat().st_size if file.exists() else -1
            if actual < size:
                raise StoreError(f"{file} holds {max(actual, 0)} bytes but the manifest commits {size}: the store "
                                 "is damaged; rebuild it")
        texts = self.path / STORE_TEXTS
        if texts.stat().st_size < int(self.manifest["texts_bytes"]):
            raise StoreError(f"{texts} is shorter than the manifest says: the store is damaged; rebuild it")

    def ann_files(self, kind: str) -> tuple[Path, Path, Path]:
        """(index, metadata, surrogate) files of the store's ANN prefilter index of ``kind``."""
        if kind not in PREFILTER_KINDS:
            raise ConfigError(f"{self.path}: prefilter kind must be one of {PREFILTER_KINDS}, got {kind!r}")
        stem = "ann" if kind == "cosine" else f"ann-{kind}"
        return self.path / f"{stem}.faiss", self.path / f"{stem}.json", self.path / f"{stem}.surrogate.npz"

    # -- reading --------------------------------------------------------------------------------------
    def embeddings(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """float32 rows ``[start, stop)`` as a memory map (no copy)."""
        return _memmap(self.path / STORE_EMBEDDINGS, np.float32, self.count, self.dim)[start:stop]

    def cand_proj(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return _memmap(self.path / STORE_PROJECTION, np.float32, self.count, self.hidden)[start:stop]

    def copy_block(self, copy: str, start: int, stop: int) -> Tensor:
        """Rows of a low-precision copy as a bfloat16 tensor (what the screening scan multiplies)."""
        if copy not in STORE_COPIES:
            raise ConfigError(f"unknown copy {copy!r}; choose from {', '.join(STORE_COPIES)}")
        file = self.path / STORE_COPIES[copy]
        if copy == "bfloat16":
            raw = _memmap(file, np.int16, self.count, self.dim)[start:stop]
            return torch.from_numpy(np.ascontiguousarray(raw)).view(torch.bfloat16)
        if copy == "float16":
            raw = _memmap(file, np.float16, self.count, self.dim)[start:stop]
            return torch.from_numpy(np.ascontiguousarray(raw)).to(torch.bfloat16)
        raw = _memmap(file, np.int8, self.count, self.dim)[start:stop]
        scale = _memmap(self.path / STORE_INT8_SCALE, np.float32, self.count, 1)[start:stop]
        return (torch.from_numpy(np.ascontiguousarray(raw)).float()
                * torch.from_numpy(np.ascontiguousarray(scale))).to(torch.bfloat16)

    def cand_proj_bf16(self, start: int, stop: int) -> Tensor:
        """bfloat16 rows of ``cand_proj`` (stored with the bfloat16 copy; converted on the fly otherwise)."""
        if "bfloat16" in self.copies:
            raw = _memmap(self.path / STORE_PROJECTION_BF16, np.int16, self.count, self.hidden)[start:stop]
            return torch.from_numpy(np.ascontiguousarray(raw)).view(torch.bfloat16)
        return torch.from_numpy(self.cand_proj(start, stop)).to(torch.bfloat16)

    def rows(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings, cand_proj) of arbitrary rows (sorted reads from the memory maps)."""
        indices = np.asarray(indices, dtype=np.int64)
        order = np.argsort(indices, kind="stable")
        emb = np.empty((len(indices), self.dim), dtype=np.float32)
        proj = np.empty((len(indices), self.hidden), dtype=np.float32)
        if len(indices):
            emb[order] = self.embeddings()[indices[order]]
            proj[order] = self.cand_proj()[indices[order]]
        return emb, proj

    def text_offset(self, row: int) -> int:
        """Byte offset of committed ``row`` in the texts file."""
        return int(_memmap(self.path / STORE_OFFSETS, np.uint64, self.count, 1)[row, 0])

    def records(self, indices: Sequence[int] | np.ndarray) -> list[tuple[str, str]]:
        """(id, text) of rows, read through the offsets file (no full load of the texts)."""
        offsets = _memmap(self.path / STORE_OFFSETS, np.uint64, self.count, 1)
        out: list[tuple[str, str]] = []
        with open(self.path / STORE_TEXTS, "rb") as handle:
            for i in indices:
                i = int(i)
                if not 0 <= i < self.count:
                    raise IndexError(f"row {i} out of range for a store of {self.count}")
                handle.seek(int(offsets[i, 0]))
                obj = json.loads(handle.readline())
                out.append((str(obj["id"]), obj["text"]))
        return out

    def ids(self) -> list[str]:
        """Every candidate id in row order (reads the whole texts file)."""
        out = []
        with open(self.path / STORE_TEXTS, "rb") as handle:
            for _ in range(self.count):
                out.append(str(json.loads(handle.readline())["id"]))
        return out

    def info(self) -> dict[str, Any]:
        """The manifest plus file sizes and ANN state, for `dsembed index info`."""
        out = dict(self.manifest)
        out["path"] = str(self.path)
        out["bytes"] = {p.name: p.stat().st_size for p in sorted(self.path.iterdir()) if p.is_file()}
        metas = {kind: self.ann_files(kind)[1] for kind in PREFILTER_KINDS}
        out["ann"] = {kind: json.loads(meta.read_text()) for kind, meta in metas.items() if meta.is_file()}
        return out


def open_store(path: str | os.PathLike[str] | CandidateStore, model: DSEModel | None = None) -> CandidateStore:
    """Open a store (and, given ``model``, refuse it when it was built with another model)."""
    store = path if isinstance(path, CandidateStore) else CandidateStore(path)
    if model is not None:
        store.check_model(model)
    return store
