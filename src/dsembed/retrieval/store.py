"""One query against many candidates: an on-disk candidate store, exact head ranking, ANN prefilter, all-pairs.

The student's head scores a pair from ``[u, v, u*v, |u-v|]`` through ``dense`` (hidden units), ReLU and ``out``.
With ``dense.weight = [W1 W2 W3 W4]`` and ``|u-v| = u + v - 2 min(u, v)`` the pre-activation splits exactly into

    z = (W1 + W4) u                   per query, once
      + (W2 + W4) v + b               per candidate only: precomputed in the store ("cand_proj")
      + (W3 * u) v                    one GEMM per query over the candidate block
      - 2 W4 min(u, v)                one elementwise min and one GEMM per query over the block

so one query against N candidates costs two N x d x hidden GEMMs instead of the naive head's four, with no
approximation (the tests compare against :meth:`DSEModel.head_logits`). Everything runs blockwise in bounded
memory over memory-mapped files.

Store layout (a folder)::

    manifest.json         format, model fingerprint, dims, committed row count, copies, sources, pending ingest
    embeddings.f32        N x d float32 (raw, unnormalised embeddings, append-only)
    cand_proj.f32         N x hidden float32: (W2 + W4) v + b
    embeddings.bf16|f16|i8 (+ .scale.f32), cand_proj.bf16   optional low-precision copies (bf16 screening scan)
    texts.jsonl           one {"id", "text"} object per row;  texts.offsets.u64: byte offset of each row
    ann.faiss/.json       optional FAISS index over the L2-normalised embeddings (cosine prefilter)
    ann-head.faiss/.json/.surrogate.npz   optional FAISS index over the head surrogate (head prefilter)

A chunk is committed by writing its rows to every file and then atomically rewriting the manifest's count, so
a killed build resumes at the last committed chunk (any partial rows past the count are cut off on reopen).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import ModelMismatchError, StoreError
from ..utils import atomic_write_json

if TYPE_CHECKING:  # pragma: no cover
    from ..student.model import DSEModel, PairHead

logger = logging.getLogger("dsembed.retrieval")

STORE_FORMAT = "dsembed-candidate-store"
STORE_VERSION = 1
MANIFEST = "manifest.json"
EMB_FILE = "embeddings.f32"
PROJ_FILE = "cand_proj.f32"
TEXTS_FILE = "texts.jsonl"
OFFSETS_FILE = "texts.offsets.u64"
COPY_FILES = {"bfloat16": "embeddings.bf16", "float16": "embeddings.f16", "int8": "embeddings.i8"}
INT8_SCALE_FILE = "embeddings.i8.scale.f32"
PROJ_BF16_FILE = "cand_proj.bf16"  # written with the bfloat16 copy: the screening scan reads only bf16
PRECISIONS = ("fp32", "bf16")


# --------------------------------------------------------------------------------------------------
# model identity
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


# --------------------------------------------------------------------------------------------------
# head algebra
# --------------------------------------------------------------------------------------------------


class HeadScorer:
    """The pair head rewritten for one-query-many-candidates scoring (see the module docstring).

    With ``relu(u - v) = u - min(u, v)`` the nonlinear term becomes ``2 W4 u - 2 W4 min(u, v)``: the first
    part joins the per-query vector and ``min`` is a single elementwise pass over the candidate block.
    """

    def __init__(self, head: PairHead) -> None:
        weight = head.dense.weight.detach().float().cpu()
        d = head.embedding_dim
        w1, w2, w3, w4 = (weight[:, i * d:(i + 1) * d] for i in range(4))
        self.dim = d
        self.hidden = weight.shape[0]
        self.q_lin_t = (w1 + w4).t().contiguous()  # d x h: (W1 - W4) u + 2 W4 u
        self.c_lin_t = (w2 + w4).t().contiguous()  # d x h
        self.bias = head.dense.bias.detach().float().cpu().clone()
        self.w3 = w3.contiguous()  # h x d
        self.w4n_t = (-2.0 * w4).t().contiguous()  # d x h, multiplies min(u, v)
        self.out_w_t = head.out.weight.detach().float().cpu().t().contiguous()  # h x k
        self.out_b = head.out.bias.detach().float().cpu().clone()
        self.outputs = self.out_w_t.shape[1]
        self.w4n_t_bf16 = self.w4n_t.to(torch.bfloat16)

    # -- precomputation ----------------------------------------------------------------------------
    @torch.inference_mode()
    def candidate_proj(self, v: np.ndarray | Tensor) -> np.ndarray:
        """The candidate-only part of the first layer, ``(W2 + W4) v + b`` (stored per candidate)."""
        vt = torch.as_tensor(np.asarray(v, dtype=np.float32)) if not isinstance(v, Tensor) else v.float()
        return torch.addmm(self.bias, vt, self.c_lin_t).numpy()

    # -- scoring -------------------------------------------------------------------------------------
    @torch.inference_mode()
    def block_logits(self, u: Tensor, v: Tensor, cand_proj: Tensor, precision: str = "fp32") -> Tensor:
        """Head logits ``[Q, B, k]`` of queries ``u [Q, d]`` against a candidate block ``v [B, d]``.

        ``precision="bf16"`` runs both GEMMs (and the elementwise min) in bfloat16 (AMX/AVX-512 on recent
        CPUs): a fast approximate screen, always followed by an fp32 rescoring of its shortlist in :func:`rank`.
        """
        u = u.float()
        queries, rows = u.shape[0], v.shape[0]
        out = torch.empty(queries, rows, self.outputs)
        a = u @ self.q_lin_t
        if precision == "fp32":
            vf = v.float()
            proj = cand_proj.float()
            mins = torch.empty_like(vf)
            for q in range(queries):
                z = torch.addmm(proj, vf, (self.w3 * u[q]).t())
                z += a[q]
                torch.minimum(vf, u[q], out=mins)
                z.addmm_(mins, self.w4n_t)
                z.relu_()
                torch.addmm(self.out_b, z, self.out_w_t, out=out[q])
            return out
        if precision != "bf16":
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        vb = v if v.dtype == torch.bfloat16 else v.to(torch.bfloat16)
        proj_b = cand_proj if cand_proj.dtype == torch.bfloat16 else cand_proj.to(torch.bfloat16)
        ub = u.to(torch.bfloat16)
        ab = a.to(torch.bfloat16)
        mins = torch.empty_like(vb)
        for q in range(queries):
            z = torch.addmm(proj_b, vb, (self.w3 * u[q]).t().to(torch.bfloat16))
            z += ab[q]
            torch.minimum(vb, ub[q], out=mins)
            z.addmm_(mins, self.w4n_t_bf16)
            z.relu_()
            out[q] = (z @ self.out_w_t.to(torch.bfloat16)).float() + self.out_b
        return out

    @torch.inference_mode()
    def pair_logits(self, u: Tensor, v: Tensor, cand_proj: Tensor) -> Tensor:
        """Logits ``[n, k]`` of aligned rows (``u[i]`` with ``v[i]``), e.g. for a prefiltered candidate graph."""
        u, v = u.float(), v.float()
        z = cand_proj + u @ self.q_lin_t
        z += (u * v) @ self.w3.t()
        z.addmm_(torch.minimum(u, v), self.w4n_t)
        z.relu_()
        return torch.addmm(self.out_b, z, self.out_w_t)


def _ranking_key(logits: Tensor, kind: str, label: int) -> Tensor:
    """A scalar per pair that orders candidates like the user-facing score (monotone in it)."""
    if kind == "multiclass":
        return torch.log_softmax(logits, dim=-1)[..., label]
    return logits[..., 0]


def _key_to_score(key: np.ndarray, kind: str) -> np.ndarray:
    if kind == "binary":
        return 1.0 / (1.0 + np.exp(-key))
    if kind == "multiclass":
        return np.exp(key)
    return key


def resolve_label(task: Any, label: int | str | None) -> int:
    """Which output a multiclass ranking sorts by: an index or class name; default ``entailment`` or the last."""
    if task.kind != "multiclass":
        return 0
    labels = list(task.labels)
    if label is None:
        return labels.index("entailment") if "entailment" in labels else len(labels) - 1
    if isinstance(label, str) and not label.lstrip("-").isdigit():
        if label not in labels:
            raise ValueError(f"unknown label {label!r}; the task's labels are {', '.join(labels)}")
        return labels.index(label)
    index = int(label)
    if not 0 <= index < len(labels):
        raise ValueError(f"label index {index} out of range for {len(labels)} classes")
    return index


# --------------------------------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------------------------------


def _memmap(path: Path, dtype: Any, rows: int, cols: int, mode: str = "c") -> np.ndarray:
    """A [rows, cols] view of a raw file (copy-on-write mode: writable for torch, never written back)."""
    if rows == 0:
        return np.zeros((0, cols), dtype=dtype)
    return np.memmap(path, dtype=dtype, mode=mode, shape=(rows, cols))


def _fsync_append(path: Path, offset: int, data: bytes) -> None:
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
    scale = np.abs(rows).max(axis=1).astype(np.float32) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(rows / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def sentences_fingerprint(sentences: Sequence[str], ids: Sequence[str] | None) -> str:
    """Identity of an ingest (texts and ids in order): a rerun with the same input resumes it."""
    digest = hashlib.sha256(b"dsembed-ingest-v1\0")
    for i, text in enumerate(sentences):
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
        if ids is not None:
            digest.update(str(ids[i]).encode() + b"\1")
    return digest.hexdigest()


class CandidateStore:
    """An on-disk, append-only set of encoded candidates for one model (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            raise StoreError(f"{self.path} is not a dsembed candidate store ({MANIFEST} is missing); "
                             "build one with `dsembed index build`")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != STORE_FORMAT:
            raise StoreError(f"{manifest_path} is not a dsembed candidate store manifest")
        if manifest.get("version", 0) > STORE_VERSION:
            raise StoreError(f"{self.path} was written by a newer dsembed (store version {manifest['version']})")
        self.manifest: dict[str, Any] = manifest
        self._lock = threading.Lock()
        self._check_sizes()

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], model: DSEModel,
               copies: Sequence[str] = ("bfloat16",)) -> CandidateStore:
        """An empty store for ``model`` (refuses to overwrite an existing one)."""
        path = Path(path)
        for copy in copies:
            if copy not in COPY_FILES:
                raise ValueError(f"unknown copy dtype {copy!r}; choose from {', '.join(COPY_FILES)}")
        if (path / MANIFEST).exists():
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
        for name in [EMB_FILE, PROJ_FILE, TEXTS_FILE, OFFSETS_FILE, *(COPY_FILES[c] for c in copies)]:
            (path / name).touch()
        if "int8" in copies:
            (path / INT8_SCALE_FILE).touch()
        if "bfloat16" in copies:
            (path / PROJ_BF16_FILE).touch()
        atomic_write_json(path / MANIFEST, manifest)
        return cls(path)

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

    def _expected_sizes(self, count: int | None = None) -> dict[str, int]:
        n = self.count if count is None else count
        sizes = {EMB_FILE: n * self.dim * 4, PROJ_FILE: n * self.hidden * 4, OFFSETS_FILE: n * 8}
        for copy in self.copies:
            sizes[COPY_FILES[copy]] = n * self.dim * {"bfloat16": 2, "float16": 2, "int8": 1}[copy]
        if "int8" in self.copies:
            sizes[INT8_SCALE_FILE] = n * 4
        if "bfloat16" in self.copies:
            sizes[PROJ_BF16_FILE] = n * self.hidden * 2
        return sizes

    def _check_sizes(self) -> None:
        for name, size in self._expected_sizes().items():
            file = self.path / name
            actual = file.stat().st_size if file.exists() else -1
            if actual < size:
                raise StoreError(f"{file} holds {max(actual, 0)} bytes but the manifest commits {size}: the store "
                                 "is damaged; rebuild it")
        texts = self.path / TEXTS_FILE
        if texts.stat().st_size < int(self.manifest["texts_bytes"]):
            raise StoreError(f"{texts} is shorter than the manifest says: the store is damaged; rebuild it")

    def _recover(self) -> None:
        """Cut every file back to the committed rows (drops a chunk half-written by a killed run)."""
        for name, size in self._expected_sizes().items():
            _truncate(self.path / name, size)
        _truncate(self.path / TEXTS_FILE, int(self.manifest["texts_bytes"]))

    def _write_manifest(self) -> None:
        self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_json(self.path / MANIFEST, self.manifest)

    # -- reading --------------------------------------------------------------------------------------
    def embeddings(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """float32 rows ``[start, stop)`` as a memory map (no copy)."""
        return _memmap(self.path / EMB_FILE, np.float32, self.count, self.dim)[start:stop]

    def cand_proj(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return _memmap(self.path / PROJ_FILE, np.float32, self.count, self.hidden)[start:stop]

    def copy_block(self, copy: str, start: int, stop: int) -> Tensor:
        """Rows of a low-precision copy as a bfloat16 tensor (what the screening scan multiplies)."""
        if copy == "bfloat16":
            raw = _memmap(self.path / COPY_FILES[copy], np.int16, self.count, self.dim)[start:stop]
            return torch.from_numpy(np.ascontiguousarray(raw)).view(torch.bfloat16)
        if copy == "float16":
            raw = _memmap(self.path / COPY_FILES[copy], np.float16, self.count, self.dim)[start:stop]
            return torch.from_numpy(np.ascontiguousarray(raw)).to(torch.bfloat16)
        if copy == "int8":
            raw = _memmap(self.path / COPY_FILES[copy], np.int8, self.count, self.dim)[start:stop]
            scale = _memmap(self.path / INT8_SCALE_FILE, np.float32, self.count, 1)[start:stop]
            return (torch.from_numpy(np.ascontiguousarray(raw)).float()
                    * torch.from_numpy(np.ascontiguousarray(scale))).to(torch.bfloat16)
        raise ValueError(f"unknown copy {copy!r}")

    def cand_proj_bf16(self, start: int, stop: int) -> Tensor:
        """bfloat16 rows of ``cand_proj`` (stored with the bfloat16 copy; converted on the fly otherwise)."""
        if "bfloat16" in self.copies:
            raw = _memmap(self.path / PROJ_BF16_FILE, np.int16, self.count, self.hidden)[start:stop]
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

    def records(self, indices: Sequence[int] | np.ndarray) -> list[tuple[str, str]]:
        """(id, text) of rows, read through the offsets file (no full load of the texts)."""
        offsets = _memmap(self.path / OFFSETS_FILE, np.uint64, self.count, 1)
        out: list[tuple[str, str]] = []
        with open(self.path / TEXTS_FILE, "rb") as handle:
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
        with open(self.path / TEXTS_FILE, "rb") as handle:
            for _ in range(self.count):
                out.append(str(json.loads(handle.readline())["id"]))
        return out

    def info(self) -> dict[str, Any]:
        """The manifest plus file sizes and ANN state, for `dsembed index info`."""
        out = dict(self.manifest)
        out["path"] = str(self.path)
        out["bytes"] = {p.name: p.stat().st_size for p in sorted(self.path.iterdir()) if p.is_file()}
        out["ann"] = {kind: json.loads(_ann_paths(self, kind)[1].read_text()) for kind in PREFILTER_KINDS
                      if _ann_paths(self, kind)[1].is_file()}
        return out

    # -- writing --------------------------------------------------------------------------------------
    def append(self, embeddings: np.ndarray, texts: Sequence[str], ids: Sequence[str], scorer: HeadScorer) -> None:
        """Commit a chunk: write its rows to every file, then atomically advance the manifest's count."""
        emb = np.ascontiguousarray(embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[1] != self.dim:
            raise ValueError(f"expected embeddings of shape [n, {self.dim}], got {emb.shape}")
        if not (len(emb) == len(texts) == len(ids)):
            raise ValueError("embeddings, texts and ids must have the same length")
        if not np.isfinite(emb).all():
            raise ValueError("embeddings contain NaN or inf")
        n0 = self.count
        sizes = self._expected_sizes(n0)
        _fsync_append(self.path / EMB_FILE, sizes[EMB_FILE], emb.tobytes())
        proj = scorer.candidate_proj(emb).astype(np.float32)
        _fsync_append(self.path / PROJ_FILE, sizes[PROJ_FILE], proj.tobytes())
        if "bfloat16" in self.copies:
            _fsync_append(self.path / PROJ_BF16_FILE, sizes[PROJ_BF16_FILE], _to_bf16_bytes(proj))
        for copy in self.copies:
            if copy == "bfloat16":
                data = _to_bf16_bytes(emb)
            elif copy == "float16":
                data = emb.astype(np.float16).tobytes()
            else:
                q, scale = _int8_rows(emb)
                data = q.tobytes()
                _fsync_append(self.path / INT8_SCALE_FILE, sizes[INT8_SCALE_FILE], scale.tobytes())
            _fsync_append(self.path / COPY_FILES[copy], sizes[COPY_FILES[copy]], data)
        lines = [(json.dumps({"id": str(i), "text": t}, ensure_ascii=False) + "\n").encode() for i, t in
                 zip(ids, texts, strict=True)]
        base = int(self.manifest["texts_bytes"])
        offsets = base + np.concatenate([[0], np.cumsum([len(x) for x in lines])[:-1]]).astype(np.uint64)
        _fsync_append(self.path / TEXTS_FILE, base, b"".join(lines))
        _fsync_append(self.path / OFFSETS_FILE, sizes[OFFSETS_FILE], offsets.astype(np.uint64).tobytes())
        self.manifest["count"] = n0 + len(emb)
        self.manifest["texts_bytes"] = base + sum(len(x) for x in lines)
        self._write_manifest()


def open_store(path: str | os.PathLike[str] | CandidateStore, model: DSEModel | None = None) -> CandidateStore:
    """Open a store (and, given ``model``, refuse it when it was built with another model)."""
    store = path if isinstance(path, CandidateStore) else CandidateStore(path)
    if model is not None:
        store.check_model(model)
    return store


def _encode_fn(model: DSEModel, batch_size: int) -> Callable[[list[str]], np.ndarray]:
    def run(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(texts, batch_size=batch_size, show_progress_bar=False), dtype=np.float32)

    return run


def ingest(model: DSEModel, store: CandidateStore, sentences: Sequence[str], ids: Sequence[str] | None = None, *,
           source: str = "", chunk_size: int = 1024, batch_size: int = 32, show_progress_bar: bool = True,
           allow_duplicate_source: bool = False,
           encode: Callable[[list[str]], np.ndarray] | None = None) -> CandidateStore:
    """Encode ``sentences`` in chunks and append them to ``store``; a rerun after a kill resumes.

    The ingest is recorded as *pending* in the manifest until its last chunk commits, so rerunning the
    same input continues at the first uncommitted chunk; a different input is refused until the pending
    one finishes (or :func:`discard_pending` rolls it back).
    """
    store.check_model(model)
    if ids is not None and len(ids) != len(sentences):
        raise ValueError(f"{len(ids)} ids for {len(sentences)} sentences")
    if not sentences:
        raise ValueError("no sentences to add")
    sha = sentences_fingerprint(sentences, ids)
    with store._lock:
        store._recover()
        pending = store.manifest.get("pending")
        if pending and pending["sha256"] != sha:
            raise StoreError(
                f"store {store.path} has an unfinished ingest of another input ({pending.get('source')!r}, "
                f"{store.count - pending['start']}/{pending['total']} rows done): rerun that one to finish it, or "
                "discard it (`dsembed index add --discard-pending`)")
        if not pending:
            done = [s for s in store.manifest.get("sources", []) if s["sha256"] == sha]
            if done and not allow_duplicate_source:
                raise StoreError(f"this input was already added to {store.path} (rows {done[0]['start']}.."
                                 f"{done[0]['start'] + done[0]['count'] - 1}); pass allow_duplicate_source to add "
                                 "it again")
            new_ids = [str(i) for i in ids] if ids is not None else \
                [str(store.count + i) for i in range(len(sentences))]
            if len(set(new_ids)) != len(new_ids):
                raise StoreError("candidate ids must be unique")
            if ids is not None and store.count:
                clash = set(store.ids()).intersection(new_ids)
                if clash:
                    raise StoreError(f"{len(clash)} id(s) already in the store, e.g. {sorted(clash)[:3]}")
            pending = {"sha256": sha, "source": source, "start": store.count, "total": len(sentences),
                       "ids": "given" if ids is not None else "row"}
            store.manifest["pending"] = pending
            store._write_manifest()
        start = int(pending["start"])
        done_rows = store.count - start
        scorer = HeadScorer(model.head)
        encode = encode or _encode_fn(model, batch_size)
        bar = tqdm(total=len(sentences), initial=done_rows, desc="encoding candidates", unit="sent",
                   disable=not show_progress_bar)
        try:
            for lo in range(done_rows, len(sentences), chunk_size):
                hi = min(lo + chunk_size, len(sentences))
                texts = list(sentences[lo:hi])
                chunk_ids = [str(x) for x in ids[lo:hi]] if ids is not None else \
                    [str(start + i) for i in range(lo, hi)]
                store.append(encode(texts), texts, chunk_ids, scorer)
                bar.update(hi - lo)
        finally:
            bar.close()
        store.manifest.setdefault("sources", []).append(
            {"source": source, "sha256": sha, "start": start, "count": len(sentences),
             "added": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        store.manifest["pending"] = None
        store._write_manifest()
    _sync_ann(store)
    return store


def discard_pending(store: CandidateStore) -> int:
    """Roll back an unfinished ingest (its committed rows are removed); returns the rows dropped."""
    with store._lock:
        pending = store.manifest.get("pending")
        if not pending:
            return 0
        dropped = store.count - int(pending["start"])
        if dropped:
            offsets = _memmap(store.path / OFFSETS_FILE, np.uint64, store.count, 1)
            store.manifest["texts_bytes"] = int(offsets[int(pending["start"]), 0])
        store.manifest["count"] = int(pending["start"])
        store.manifest["pending"] = None
        store._write_manifest()
        store._recover()
    for kind in PREFILTER_KINDS:
        meta_file = _ann_paths(store, kind)[1]
        if meta_file.is_file() and json.loads(meta_file.read_text()).get("count", 0) > store.count:
            for file in _ann_paths(store, kind):
                file.unlink(missing_ok=True)
    return dropped


def build_store(model: DSEModel, sentences: Sequence[str], path: str | os.PathLike[str], *,
                ids: Sequence[str] | None = None, source: str = "", copies: Sequence[str] = ("bfloat16",),
                chunk_size: int = 1024, batch_size: int = 32, show_progress_bar: bool = True,
                ann: str | None = None, ann_kinds: Sequence[str] = ("cosine",)) -> CandidateStore:
    """Create (or resume building) a store over ``sentences``; optionally build its ANN index too.

    Rerunning after an interruption continues from the last committed chunk; rerunning a finished build
    of the same input is a no-op.
    """
    path = Path(path)
    if (path / MANIFEST).is_file():
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
        store = CandidateStore.create(path, model, copies=copies)
        ingest(model, store, sentences, ids, source=source, chunk_size=chunk_size, batch_size=batch_size,
               show_progress_bar=show_progress_bar)
    if ann and ann != "none":
        for kind in ann_kinds:
            if not has_ann(store, kind):
                build_ann(store, ann, kind=kind, model=model, show_progress_bar=show_progress_bar)
    return store


# --------------------------------------------------------------------------------------------------
# exact ranking
# --------------------------------------------------------------------------------------------------


@dataclass
class Hit:
    """One ranked candidate."""

    row: int
    id: str
    text: str
    score: float
    logits: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "score": self.score, "logits": self.logits, "row": self.row}


@dataclass
class RankTimings:
    """Where the time of one :func:`rank` call went (seconds)."""

    encode: float = 0.0
    scan: float = 0.0
    prefilter: float = 0.0
    rescore: float = 0.0
    fetch: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _as_queries(model: DSEModel, query: str | Sequence[str] | np.ndarray, batch_size: int) -> tuple[np.ndarray, bool]:
    if isinstance(query, str):
        return np.asarray(model.encode([query], batch_size=batch_size, show_progress_bar=False),
                          dtype=np.float32), True
    if isinstance(query, np.ndarray | Tensor):
        arr = np.asarray(query, dtype=np.float32)
        return (arr[None, :], True) if arr.ndim == 1 else (arr, False)
    texts = list(query)
    if not texts:
        raise ValueError("no queries given")
    return np.asarray(model.encode(texts, batch_size=batch_size, show_progress_bar=False), dtype=np.float32), False


def _merge_topk(best_key: Tensor, best_idx: Tensor, key: Tensor, offset: int, k: int) -> tuple[Tensor, Tensor]:
    idx = torch.arange(offset, offset + key.shape[1]).expand(key.shape[0], -1)
    all_key = torch.cat([best_key, key], dim=1)
    all_idx = torch.cat([best_idx, idx], dim=1)
    top = torch.topk(all_key, min(k, all_key.shape[1]), dim=1)
    return top.values, torch.gather(all_idx, 1, top.indices)


def scan_topk(scorer: HeadScorer, store: CandidateStore, u: np.ndarray, k: int, *, kind: str, label: int = 0,
              precision: str = "fp32", block_rows: int = 4096, copy: str | None = None,
              show_progress_bar: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows by head score for each query over the whole store, blockwise (bounded memory)."""
    ut = torch.from_numpy(np.ascontiguousarray(u, dtype=np.float32))
    queries = ut.shape[0]
    best_key = torch.full((queries, 0), -math.inf)
    best_idx = torch.zeros((queries, 0), dtype=torch.long)
    n = store.count
    if precision == "bf16" and copy is None:
        copy = next((c for c in ("bfloat16", "float16", "int8") if c in store.copies), None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for lo in tqdm(range(0, n, block_rows), desc="scan", unit="block", disable=not show_progress_bar):
            hi = min(lo + block_rows, n)
            if precision == "bf16":
                proj = store.cand_proj_bf16(lo, hi)
                v = store.copy_block(copy, lo, hi) if copy is not None else \
                    torch.from_numpy(store.embeddings(lo, hi)).to(torch.bfloat16)
            else:
                proj = torch.from_numpy(store.cand_proj(lo, hi))
                v = torch.from_numpy(store.embeddings(lo, hi))
            logits = scorer.block_logits(ut, v, proj, precision)
            best_key, best_idx = _merge_topk(best_key, best_idx, _ranking_key(logits, kind, label), lo, k)
    return best_key.numpy(), best_idx.numpy()


def rescore(scorer: HeadScorer, store: CandidateStore, u: np.ndarray, rows: np.ndarray, k: int, *, kind: str,
            label: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact fp32 head scores of candidate ``rows [Q, M]`` (-1 = none) for each query; keep the top ``k``.

    Returns (keys, rows, logits) each ``[Q, k']`` sorted by score, ``k' = min(k, M)``; missing rows get -inf.
    """
    queries, m = rows.shape
    kk = min(k, m)
    keys = np.full((queries, kk), -np.inf, dtype=np.float32)
    out_rows = np.full((queries, kk), -1, dtype=np.int64)
    out_logits = np.zeros((queries, kk, scorer.outputs), dtype=np.float32)
    for q in range(queries):
        valid = rows[q][rows[q] >= 0]
        valid = np.unique(valid)
        if not len(valid):
            continue
        emb, proj = store.rows(valid)
        logits = scorer.block_logits(torch.from_numpy(u[q:q + 1]), torch.from_numpy(emb), torch.from_numpy(proj))[0]
        key = _ranking_key(logits, kind, label)
        top = torch.topk(key, min(kk, len(valid)))
        n_top = len(top.indices)
        keys[q, :n_top] = top.values.numpy()
        out_rows[q, :n_top] = valid[top.indices.numpy()]
        out_logits[q, :n_top] = logits[top.indices].numpy()
    return keys, out_rows, out_logits


def screen_rows(scorer: HeadScorer, store: CandidateStore, u: np.ndarray, rows: np.ndarray, k: int, *, kind: str,
                label: int = 0) -> np.ndarray:
    """The ``k`` best of candidate ``rows [Q, M]`` by a bf16 head pass (for a cheaper exact rescoring after)."""
    out = np.full((len(u), k), -1, dtype=np.int64)
    for q in range(len(u)):
        valid = np.unique(rows[q][rows[q] >= 0])
        if not len(valid):
            continue
        emb, proj = store.rows(valid)
        logits = scorer.block_logits(torch.from_numpy(u[q:q + 1]), torch.from_numpy(emb), torch.from_numpy(proj),
                                     "bf16")[0]
        top = torch.topk(_ranking_key(logits, kind, label), min(k, len(valid))).indices.numpy()
        out[q, :len(top)] = valid[top]
    return out


def rank(model: DSEModel, query: str | Sequence[str] | np.ndarray, store: CandidateStore | str | os.PathLike[str],
         top_k: int = 10, *, prefilter: int | None = None, prefilter_kind: str = "auto",
         nprobe: int | None = None, precision: str = "fp32",
         label: int | str | None = None, shortlist: int | None = None, block_rows: int = 4096,
         batch_size: int = 32, timings: RankTimings | None = None,
         ann: AnnIndex | None = None) -> list[Hit] | list[list[Hit]]:
    """Rank every candidate of ``store`` against ``query`` with the trained head (not cosine).

    ``query``: one sentence (returns a list of hits), a list of sentences or an embedding matrix (returns
    one list per query). Exact by default: every candidate is scored in fp32. ``precision="bf16"`` screens
    all candidates with bfloat16 GEMMs and rescores a shortlist (``shortlist``, default ``max(4 top_k, 64)``)
    exactly. ``prefilter=M`` takes the top ``M`` from the store's FAISS index instead (``prefilter_kind``:
    ``cosine``, ``head`` for the head surrogate, see :class:`HeadSurrogate`, or ``auto``: head if the store
    has that index, else cosine) and re-ranks those with the
    exact head (approximate overall: see :func:`ann_recall`); with ``precision="bf16"`` the ``M`` are
    screened in bf16 first and only the shortlist is rescored in fp32. Scores are P(positive) for binary tasks,
    the value for regression, and the probability of class ``label`` for multiclass tasks.
    """
    timings = timings if timings is not None else RankTimings()
    store = open_store(store, model)
    if top_k < 1:
        raise ValueError("top_k must be >= 1")
    kind = model.task.kind
    lab = resolve_label(model.task, label)
    scorer = _scorer_for(model)
    t0 = time.perf_counter()
    u, single = _as_queries(model, query, batch_size)
    if u.shape[1] != store.dim:
        raise ValueError(f"query embeddings have {u.shape[1]} dims, the store {store.dim}")
    t1 = time.perf_counter()
    timings.encode += t1 - t0
    if store.count == 0:
        return [] if single else [[] for _ in range(len(u))]
    if prefilter is not None:
        if ann is None and prefilter_kind == "auto":
            prefilter_kind = "head" if has_ann(store, "head") else "cosine"
        index = ann or load_ann(store, prefilter_kind)
        cand = index.search(u, prefilter, nprobe=nprobe)
        t2 = time.perf_counter()
        timings.prefilter += t2 - t1
        short = shortlist or max(4 * top_k, 64)
        if precision == "bf16" and prefilter > short:
            cand = screen_rows(scorer, store, u, cand, short, kind=kind, label=lab)
        keys, rows, logits = rescore(scorer, store, u, cand, top_k, kind=kind, label=lab)
        timings.rescore += time.perf_counter() - t2
    elif precision == "bf16":
        short = shortlist or max(4 * top_k, 64)
        _, cand = scan_topk(scorer, store, u, short, kind=kind, label=lab, precision="bf16", block_rows=block_rows)
        t2 = time.perf_counter()
        timings.scan += t2 - t1
        keys, rows, logits = rescore(scorer, store, u, cand, top_k, kind=kind, label=lab)
        timings.rescore += time.perf_counter() - t2
    elif precision == "fp32":
        keys, rows = scan_topk(scorer, store, u, top_k, kind=kind, label=lab, precision="fp32",
                               block_rows=block_rows)
        t2 = time.perf_counter()
        timings.scan += t2 - t1
        logits = np.zeros((*rows.shape, scorer.outputs), dtype=np.float32)
        for q in range(len(u)):  # logits of the winners (cheap: k rows)
            emb, proj = store.rows(rows[q])
            logits[q] = scorer.block_logits(torch.from_numpy(u[q:q + 1]), torch.from_numpy(emb),
                                            torch.from_numpy(proj))[0].numpy()
        timings.rescore += time.perf_counter() - t2
    else:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    t3 = time.perf_counter()
    results = []
    for q in range(len(u)):
        ok = rows[q] >= 0
        recs = store.records(rows[q][ok])
        scores = _key_to_score(keys[q][ok].astype(np.float64), kind)
        results.append([Hit(int(r), rid, text, float(s), [float(x) for x in lg]) for r, (rid, text), s, lg in
                        zip(rows[q][ok], recs, scores, logits[q][ok], strict=True)])
    timings.fetch += time.perf_counter() - t3
    return results[0] if single else results


_SCORERS: weakref.WeakKeyDictionary[Any, tuple[Any, HeadScorer]] = weakref.WeakKeyDictionary()


def _scorer_for(model: DSEModel) -> HeadScorer:
    """A cached :class:`HeadScorer` for the model's current head weights (rebuilt after any weight change)."""
    key = tuple((p.data_ptr(), p._version) for p in model.head.parameters())
    hit = _SCORERS.get(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    scorer = HeadScorer(model.head)
    _SCORERS[model] = (key, scorer)
    return scorer


# --------------------------------------------------------------------------------------------------
# ANN prefilter (FAISS)
# --------------------------------------------------------------------------------------------------

PREFILTER_KINDS = ("cosine", "head")


def auto_factory(n: int) -> str:
    """Exact inner product up to 50k rows; IVF (about sqrt(N) lists) with 8-bit scalar quantisation above."""
    if n <= 50_000:
        return "Flat"
    nlist = int(2 ** round(math.log2(max(64.0, min(4096.0, math.sqrt(n))))))
    return f"IVF{nlist},SQ8"


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.array(x, dtype=np.float32, copy=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms


@dataclass
class HeadSurrogate:
    """A linear stand-in for the head, so that a plain inner-product index can prefilter by head score.

    With each hidden unit replaced by its activation rate ``m_h`` on high-scoring pairs (ReLU -> constant gate)
    and ``|x| ~ x^2 / (2 tau) + tau / 2`` per dimension, the logit becomes ``const(u) + D(v) + g(u) . v``:
    an inner product of ``phi(v) = [v, D(v)]`` with ``psi(u) = [g(u), 1]``. Unlike cosine, this keeps the
    head's candidate-only preferences (``D``) and its per-dimension weighting. An IVF index stores
    ``[phi, sqrt(R^2 - |phi|^2)]`` (every candidate on one sphere: the usual maximum-inner-product ->
    nearest-neighbour transform) and searches ``[psi, 0]``: lists are built and probed by L2 on the sphere
    (balanced lists), and scanned by inner product, where the extra coordinate meets the query's 0, so its
    8-bit code costs no precision. Only the prefilter uses the surrogate; returned scores come from the exact head.
    """

    r: np.ndarray  # [h] output weight x activation rate
    w3r: np.ndarray  # [d] r @ W3
    omega: np.ndarray  # [d] r @ (-2 W4)
    tau: np.ndarray  # [d] typical |u_j - v_j|
    radius: float = 0.0  # R (IVF only): the largest |phi(v)| when the index was built, with headroom

    def phi(self, emb: np.ndarray, proj: np.ndarray) -> np.ndarray:
        emb = np.asarray(emb, dtype=np.float32)
        d = np.asarray(proj, dtype=np.float32) @ self.r - (emb * emb) @ (self.omega / (4.0 * self.tau))
        return np.concatenate([emb, d[:, None].astype(np.float32)], axis=1)

    @staticmethod
    def width(columns: int) -> int:
        """Index width: zero-padded to a multiple of 16 (FAISS's SIMD scalar-quantizer kernels need it)."""
        return -(-columns // 16) * 16

    @classmethod
    def _pad(cls, x: np.ndarray) -> np.ndarray:
        extra = cls.width(x.shape[1]) - x.shape[1]
        return np.pad(x, ((0, 0), (0, extra))) if extra else x

    def candidate_vectors(self, emb: np.ndarray, proj: np.ndarray) -> np.ndarray:
        """``phi`` (Flat index), or ``[phi, sqrt(R^2 - |phi|^2)]`` once a radius is set (IVF index); padded."""
        phi = self.phi(emb, proj)
        return self._pad(self.augment(phi) if self.radius > 0 else phi)

    def augment(self, phi: np.ndarray) -> np.ndarray:
        """``[phi, sqrt(R^2 - |phi|^2)]``: every candidate on the sphere of radius R."""
        extra = np.sqrt(np.maximum(self.radius ** 2 - (phi.astype(np.float64) ** 2).sum(1), 0.0))
        return np.concatenate([phi, extra[:, None].astype(np.float32)], axis=1)

    def query_vectors(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.float32)
        g = u * self.w3r + 0.5 * self.omega * (1.0 + u / self.tau)
        pad = np.zeros((len(u), 2 if self.radius > 0 else 1), dtype=np.float32)
        pad[:, 0] = 1.0
        return self._pad(np.concatenate([g, pad], axis=1).astype(np.float32))

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, r=self.r, w3r=self.w3r, omega=self.omega, tau=self.tau, radius=np.float64(self.radius))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> HeadSurrogate:
        with np.load(path) as data:
            return cls(**{k: data[k] for k in ("r", "w3r", "omega", "tau")}, radius=float(data["radius"]))


@torch.inference_mode()
def fit_surrogate(scorer: HeadScorer, store: CandidateStore, *, kind: str = "binary", label: int = 0,
                  queries: int = 32, candidates: int = 2048, top_fraction: float = 0.05,
                  seed: int = 0) -> HeadSurrogate:
    """Fit :class:`HeadSurrogate` on store rows used as sample queries against a sample of candidates."""
    rng = np.random.default_rng(seed)
    n = store.count
    q_rows = np.sort(rng.choice(n, size=min(n, queries), replace=False))
    c_rows = np.sort(rng.choice(n, size=min(n, candidates), replace=False))
    u, _ = store.rows(q_rows)
    v, proj = store.rows(c_rows)
    ut, vt, pt = torch.from_numpy(u), torch.from_numpy(v), torch.from_numpy(proj)
    a = ut @ scorer.q_lin_t
    active = torch.zeros(scorer.hidden)
    weights = torch.zeros(scorer.outputs)
    tau = torch.zeros(scorer.dim)
    counted = 0
    for q in range(len(u)):
        z = pt + a[q] + vt @ (scorer.w3 * ut[q]).t() + torch.minimum(vt, ut[q]) @ scorer.w4n_t
        logits = torch.addmm(scorer.out_b, z.clamp_min(0.0), scorer.out_w_t)
        key = _ranking_key(logits, kind, label)
        top = torch.topk(key, max(1, int(top_fraction * len(key)))).indices
        active += (z[top] > 0).float().sum(0)
        if kind == "multiclass":
            weights += torch.softmax(logits[top], dim=-1).sum(0)
        counted += len(top)
        tau += (vt - ut[q]).abs().mean(0)
    rate = active / max(counted, 1)
    out_w = scorer.out_w_t  # h x k
    if kind == "multiclass":  # d log p_c = d logit_c - sum_k p_k d logit_k
        p = weights / max(counted, 1)
        o = out_w[:, label] - out_w @ p
    else:
        o = out_w[:, 0]
    r = (o * rate).float()
    tau = (tau / len(u)).clamp_min(1e-4)
    return HeadSurrogate(r=r.numpy(), w3r=(r @ scorer.w3).numpy(), omega=(r @ scorer.w4n_t.t()).numpy(),
                         tau=tau.numpy())


def _ann_paths(store: CandidateStore, kind: str) -> tuple[Path, Path, Path]:
    if kind not in PREFILTER_KINDS:
        raise ValueError(f"prefilter kind must be one of {PREFILTER_KINDS}, got {kind!r}")
    stem = "ann" if kind == "cosine" else f"ann-{kind}"
    return store.path / f"{stem}.faiss", store.path / f"{stem}.json", store.path / f"{stem}.surrogate.npz"


class AnnIndex:
    """A FAISS inner-product index over the store: ``cosine`` (normalised embeddings) or ``head`` (surrogate)."""

    def __init__(self, index: Any, meta: dict[str, Any], surrogate: HeadSurrogate | None = None) -> None:
        self.index = index
        self.meta = meta
        self.surrogate = surrogate
        self._lock = threading.Lock()

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind", "cosine"))

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    def set_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        import faiss

        if nprobe is not None and "IVF" in self.meta["factory"]:
            faiss.extract_index_ivf(self.index).nprobe = int(nprobe)
        if ef_search is not None and "HNSW" in self.meta["factory"]:
            faiss.downcast_index(self.index).hnsw.efSearch = int(ef_search)

    def vectors(self, emb: np.ndarray, proj: np.ndarray | None = None) -> np.ndarray:
        """What the index stores for candidate rows."""
        if self.kind == "cosine":
            return _normalised(emb)
        assert self.surrogate is not None and proj is not None
        return self.surrogate.candidate_vectors(emb, proj)

    def add_rows(self, emb: np.ndarray, proj: np.ndarray) -> None:
        """Append candidate rows."""
        self.index.add(np.ascontiguousarray(self.vectors(emb, proj), dtype=np.float32))

    def search(self, u: np.ndarray, m: int, nprobe: int | None = None) -> np.ndarray:
        """Row ids ``[Q, m]`` of the top-``m`` candidates (-1 where fewer exist)."""
        if m < 1:
            raise ValueError("prefilter size must be >= 1")
        query = _normalised(u) if self.kind == "cosine" else self.surrogate.query_vectors(u)  # type: ignore[union-attr]
        with self._lock:  # nprobe is index state: keep concurrent searches from changing it under each other
            if nprobe is not None:
                self.set_params(nprobe=nprobe)
            _, idx = self.index.search(np.ascontiguousarray(query, dtype=np.float32), int(m))
            if nprobe is not None:
                self.set_params(nprobe=self.meta.get("nprobe"))
        return idx.astype(np.int64)

    def save(self, store: CandidateStore) -> None:
        import faiss

        file, meta_file, sur_file = _ann_paths(store, self.kind)
        tmp = file.with_name(f".{file.name}.tmp")
        faiss.write_index(self.index, str(tmp))
        if self.surrogate is not None:
            self.surrogate.save(sur_file)
        os.replace(tmp, file)
        self.meta["count"] = self.count
        atomic_write_json(meta_file, self.meta)


def build_ann(store: CandidateStore, factory: str = "auto", *, kind: str = "cosine", model: DSEModel | None = None,
              nprobe: int | None = None, label: int | str | None = None, train_size: int = 50_000,
              chunk_rows: int = 65_536, seed: int = 0, show_progress_bar: bool = True) -> AnnIndex:
    """Build and save a FAISS index over the store.

    ``factory``: ``auto``, ``Flat``, ``IVF1024,SQ8``, ``IVF1024,Flat``, ``HNSW32``... ``kind="cosine"`` indexes
    the normalised embeddings; ``kind="head"`` the :class:`HeadSurrogate` vectors (needs ``model``).
    """
    import faiss

    n = store.count
    if n == 0:
        raise StoreError("the store is empty")
    factory = auto_factory(n) if factory == "auto" else factory
    start = time.perf_counter()
    surrogate = None
    lab = 0
    if kind == "head":
        if model is None:
            raise ValueError("a head prefilter index needs the model")
        store.check_model(model)
        lab = resolve_label(model.task, label)
        surrogate = fit_surrogate(_scorer_for(model), store, kind=model.task.kind, label=lab, seed=seed)
    elif kind != "cosine":
        raise ValueError(f"prefilter kind must be one of {PREFILTER_KINDS}, got {kind!r}")
    nlist = int(factory.split(",")[0][3:]) if factory.startswith("IVF") else 0
    if surrogate is not None and nlist:  # the sphere radius for the MIPS -> nearest-neighbour transform
        top = 0.0
        for lo in range(0, n, chunk_rows):
            hi = min(n, lo + chunk_rows)
            phi = surrogate.phi(np.asarray(store.embeddings(lo, hi)), np.asarray(store.cand_proj(lo, hi)))
            top = max(top, float(np.sqrt((phi.astype(np.float64) ** 2).sum(1).max())))
        surrogate.radius = 1.05 * top  # headroom for rows added later
    dim = HeadSurrogate.width(store.dim + (2 if nlist else 1)) if kind == "head" else store.dim
    meta: dict[str, Any] = {"kind": kind, "factory": factory, "dim": dim, "model_fingerprint": store.fingerprint,
                            "metric": "inner_product", "label": lab}
    if nlist:
        meta["nprobe"] = nprobe or min(128, max(8, nlist // 32))
    rng = np.random.default_rng(seed)
    if nlist:  # ~40 points per list is enough for k-means
        train_size = min(train_size, max(40 * nlist, 10_000))
    sample = np.sort(rng.choice(n, size=min(n, train_size), replace=False))
    if kind == "head" and nlist:
        # lists built and probed by L2 on the sphere, scanned by inner product (see HeadSurrogate)
        codec = factory.split(",", 1)[1] if "," in factory else "Flat"
        quantizer = faiss.IndexFlatL2(dim)
        qtypes = {"SQ8": faiss.ScalarQuantizer.QT_8bit, "SQfp16": faiss.ScalarQuantizer.QT_fp16,
                  "SQ4": faiss.ScalarQuantizer.QT_4bit}
        if codec == "Flat":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        elif codec in qtypes:
            index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, qtypes[codec], faiss.METRIC_INNER_PRODUCT)
        else:
            raise ValueError(f"the head prefilter supports Flat and IVF<n>,{{Flat,SQ8,SQfp16,SQ4}}, not {factory!r}")
        index.own_fields = True
        quantizer.this.disown()
        index.cp.niter = 10
        ann = AnnIndex(index, meta, surrogate)
    else:
        if kind == "head" and factory != "Flat":
            raise ValueError(f"the head prefilter supports Flat and IVF indexes, not {factory!r}")
        ann = AnnIndex(faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT), meta, surrogate)
        if nlist:
            faiss.extract_index_ivf(ann.index).cp.niter = 10
    if not ann.index.is_trained:
        emb, proj = store.rows(sample)
        ann.index.train(np.ascontiguousarray(ann.vectors(emb, proj), dtype=np.float32))
    for lo in tqdm(range(0, n, chunk_rows), desc=f"ANN index ({kind})", unit="chunk", disable=not show_progress_bar):
        hi = min(n, lo + chunk_rows)
        ann.add_rows(np.asarray(store.embeddings(lo, hi)), np.asarray(store.cand_proj(lo, hi)))
    meta["build_seconds"] = round(time.perf_counter() - start, 3)
    ann.set_params(nprobe=meta.get("nprobe"))
    ann.save(store)
    return ann


def has_ann(store: CandidateStore, kind: str = "cosine") -> bool:
    return _ann_paths(store, kind)[0].is_file()


def load_ann(store: CandidateStore, kind: str = "cosine") -> AnnIndex:
    """The store's saved FAISS index of ``kind`` (brought up to date with rows added since it was built)."""
    import faiss

    file, meta_file, sur_file = _ann_paths(store, kind)
    if not file.is_file():
        raise StoreError(f"{store.path} has no {kind} ANN index; build one with `dsembed index ann` "
                         "(or --ann at build time)")
    meta = json.loads(meta_file.read_text())
    if meta.get("model_fingerprint") != store.fingerprint:
        raise ModelMismatchError(f"the ANN index in {store.path} belongs to another model; rebuild it")
    surrogate = HeadSurrogate.load(sur_file) if kind == "head" else None
    ann = AnnIndex(faiss.read_index(str(file)), meta, surrogate)
    if ann.count > store.count:
        raise StoreError(f"the {kind} ANN index in {store.path} has more rows than the store; rebuild it")
    if ann.count < store.count:
        _extend_ann(store, ann)
    ann.set_params(nprobe=meta.get("nprobe"), ef_search=meta.get("ef_search"))
    return ann


def _extend_ann(store: CandidateStore, ann: AnnIndex, chunk_rows: int = 65_536) -> None:
    for lo in range(ann.count, store.count, chunk_rows):
        hi = min(store.count, lo + chunk_rows)
        ann.add_rows(np.asarray(store.embeddings(lo, hi)), np.asarray(store.cand_proj(lo, hi)))
    ann.save(store)


def _sync_ann(store: CandidateStore) -> None:
    for kind in PREFILTER_KINDS:
        if has_ann(store, kind):
            load_ann(store, kind)  # adds the new rows and saves


def _drop_ann(store: CandidateStore) -> None:
    for kind in PREFILTER_KINDS:
        for file in _ann_paths(store, kind):
            file.unlink(missing_ok=True)


def ann_recall(model: DSEModel, store: CandidateStore, queries: str | Sequence[str] | np.ndarray, *,
               top_k: int = 10, prefilters: Sequence[int] = (50, 100, 200, 500, 1000), kind: str = "cosine",
               nprobe: int | None = None, label: int | str | None = None, precision: str = "fp32",
               exact: list[list[Hit]] | None = None) -> dict[int, dict[str, float]]:
    """recall@``top_k`` of ANN prefilter + exact re-rank against the exact head ranking, per prefilter size."""
    u, _ = _as_queries(model, queries, 32)
    exact = exact if exact is not None else rank(model, u, store, top_k, label=label)
    ann = load_ann(store, kind)
    out: dict[int, dict[str, float]] = {}
    for m in prefilters:
        times = []
        hits = 0
        for q in range(len(u)):
            t0 = time.perf_counter()
            got = rank(model, u[q], store, top_k, prefilter=m, nprobe=nprobe, label=label, ann=ann,
                       precision=precision)
            times.append(time.perf_counter() - t0)
            hits += len({h.row for h in got} & {h.row for h in exact[q]})
        total = sum(min(top_k, len(e)) for e in exact)
        out[int(m)] = {"recall": hits / max(total, 1), "median_seconds": float(np.median(times))}
    return out


# --------------------------------------------------------------------------------------------------
# all pairs within a set
# --------------------------------------------------------------------------------------------------


@dataclass
class PairBlock:
    """Matching pairs found in one tile: row indices ``i < j`` (or ordered, unsymmetrised) and scores."""

    i: np.ndarray
    j: np.ndarray
    score: np.ndarray


def _tile_scores(scorer: HeadScorer, emb: np.ndarray, proj: np.ndarray, rows_q: slice, rows_c: slice, kind: str,
                 label: int, precision: str) -> np.ndarray:
    logits = scorer.block_logits(torch.from_numpy(emb[rows_q]), torch.from_numpy(emb[rows_c]),
                                 torch.from_numpy(proj[rows_c]), precision)
    return _key_to_score(_ranking_key(logits, kind, label).numpy().astype(np.float64), kind)


def iter_all_pairs(model: DSEModel, sentences: Sequence[str] | np.ndarray, *, threshold: float,
                   symmetrize: str = "mean", tile: int = 512, label: int | str | None = None,
                   precision: str = "fp32", batch_size: int = 32,
                   show_progress_bar: bool = False) -> Iterator[PairBlock]:
    """Head scores of every pair in a set, tile by tile in bounded memory; yields the pairs ``>= threshold``.

    The head is not symmetric, so ``symmetrize`` combines ``s(i, j)`` and ``s(j, i)`` (``mean``, ``max``,
    ``min``) into one score per unordered pair ``i < j``; ``none`` yields ordered pairs ``i != j``.
    """
    if symmetrize not in ("mean", "max", "min", "none"):
        raise ValueError("symmetrize must be mean, max, min or none")
    emb = np.asarray(sentences, dtype=np.float32) if isinstance(sentences, np.ndarray) else \
        np.asarray(model.encode(list(sentences), batch_size=batch_size, show_progress_bar=show_progress_bar),
                   dtype=np.float32)
    kind = model.task.kind
    lab = resolve_label(model.task, label)
    scorer = _scorer_for(model)
    proj = scorer.candidate_proj(emb)
    n = len(emb)
    starts = list(range(0, n, tile))
    pairs = [(a, b) for ai, a in enumerate(starts) for b in starts[ai:]]
    combine = {"mean": np.add, "max": np.maximum, "min": np.minimum}
    for a, b in tqdm(pairs, desc="all pairs", unit="tile", disable=not show_progress_bar):
        ra, rb = slice(a, min(a + tile, n)), slice(b, min(b + tile, n))
        s_ab = _tile_scores(scorer, emb, proj, ra, rb, kind, lab, precision)  # [|a|, |b|]
        s_ba = s_ab.T if a == b else _tile_scores(scorer, emb, proj, rb, ra, kind, lab, precision).T
        ii, jj = np.meshgrid(np.arange(ra.start, ra.stop), np.arange(rb.start, rb.stop), indexing="ij")
        if symmetrize == "none":
            for scores, (x, y) in ((s_ab, (ii, jj)), (s_ba, (jj, ii))):
                keep = (scores >= threshold) & (x != y)
                if a == b and scores is s_ba:
                    continue
                yield PairBlock(x[keep], y[keep], scores[keep].astype(np.float32))
            continue
        scores = combine[symmetrize](s_ab, s_ba)
        if symmetrize == "mean":
            scores = scores / 2.0
        keep = (scores >= threshold) & (ii < jj)
        yield PairBlock(ii[keep], jj[keep], scores[keep].astype(np.float32))


def all_pairs_matrix(model: DSEModel, sentences: Sequence[str] | np.ndarray, *, tile: int = 512,
                     label: int | str | None = None, precision: str = "fp32", batch_size: int = 32) -> np.ndarray:
    """The full ``N x N`` matrix of head scores ``s(i, j)`` (row = first sentence); for small sets."""
    emb = np.asarray(sentences, dtype=np.float32) if isinstance(sentences, np.ndarray) else \
        np.asarray(model.encode(list(sentences), batch_size=batch_size), dtype=np.float32)
    scorer = _scorer_for(model)
    proj = scorer.candidate_proj(emb)
    lab = resolve_label(model.task, label)
    n = len(emb)
    out = np.empty((n, n), dtype=np.float32)
    for a in range(0, n, tile):
        for b in range(0, n, tile):
            out[a:a + tile, b:b + tile] = _tile_scores(scorer, emb, proj, slice(a, min(a + tile, n)),
                                                       slice(b, min(b + tile, n)), model.task.kind, lab, precision)
    return out


def describe_store_request(store: CandidateStore) -> dict[str, Any]:
    """A short summary for logs and the server's /health."""
    return {"path": str(store.path), "count": store.count, "dim": store.dim, "hidden": store.hidden,
            "copies": store.copies, "ann": [kind for kind in PREFILTER_KINDS if has_ann(store, kind)],
            "fingerprint": store.fingerprint[:12]}
