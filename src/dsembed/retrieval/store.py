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

Opening checks what is cheap enough for every open (a CLI search opens the store once per call): the
manifest's schema, that every file holds the committed bytes, the offsets file whole (CRC-32 per chunk,
monotone, inside the texts file: 8 bytes a row, ~20 ms per million rows) and the texts file's last byte.
The big files (embeddings, projections, copies, texts: ~2 KB a row) are checked in full by
:func:`dsembed.retrieval.verify.verify_store` (``dsembed index verify``, and once when ``serve`` starts);
the scan itself refuses a row whose scores are not finite. A store with a pending (unfinished) ingest
opens, so that the writers can resume or discard it, but :meth:`CandidateStore.require_complete` keeps
it from being searched.
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
from .manifest import (
    REBUILD_ANN,
    checksum,
    chunks,
    damaged,
    hex32,
    read_json,
    read_manifest,
    row_bytes,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..student.model import DSEModel

# The ANN prefilter kinds; defined with the store's file layout because info() lists each kind's files.
PREFILTER_KINDS = ("cosine", "head")


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
    try:
        return np.memmap(path, dtype=dtype, mode=mode, shape=(rows, cols))
    except (OSError, ValueError) as exc:  # removed or cut short since the store was opened
        raise damaged(path, f"cannot map {rows} committed rows ({exc})") from None


def read_range(file: Path, start: int, stop: int) -> bytes:
    """Bytes ``[start, stop)`` of a store file; a missing or short file is a one-line error naming it."""
    try:
        with open(file, "rb") as handle:
            handle.seek(start)
            data = handle.read(stop - start)
    except OSError as exc:
        raise damaged(file, f"cannot read it ({exc.strerror or exc})") from None
    if len(data) != stop - start:
        raise damaged(file, f"it ends at byte {start + len(data)}, before the committed byte {stop}")
    return data


class CandidateStore:
    """An on-disk, append-only set of encoded candidates for one model (see the module docstring).

    Opening validates the manifest, that every file holds at least the committed rows, and the offsets
    (given ``model``, its identity first); creating and appending are
    :func:`dsembed.retrieval.build.create_store` and :func:`~dsembed.retrieval.build.append_rows`.
    """

    def __init__(self, path: str | os.PathLike[str], model: DSEModel | None = None) -> None:
        self.path = Path(path)
        self.manifest: dict[str, Any] = read_manifest(self.path)
        self.write_lock = threading.Lock()  # held by the writers in .build while they change files
        if model is not None:  # before the sizes: a manifest edited to another width fails as what it is
            self.check_model(model)
        self._check_sizes()
        self._check_offsets()

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
        widths = {"embedding_dim": int(model.embedding_dim), "hidden": int(model.head.dense.out_features)}
        for key, want in widths.items():
            if self.manifest[key] != want:
                raise ModelMismatchError(
                    f"{self.path / STORE_MANIFEST}: {key} is {self.manifest[key]} but the model's is {want}, although "
                    "the model fingerprint matches: the manifest was edited or damaged; rebuild the store")

    def require_complete(self) -> None:
        """Refuse to search a store whose last ingest is unfinished (its rows are a partial input)."""
        pending = self.manifest.get("pending")
        if pending:
            done, source = self.count - int(pending["start"]), pending.get("source") or "an input"
            raise StoreError(
                f"{self.path / STORE_MANIFEST}: the store has an unfinished ingest of {source!r} ({done}/"
                f"{pending['total']} rows committed), so it is not searched: re-run the same `dsembed index build` "
                f"or `dsembed index add` to resume it, or roll it back with `dsembed index discard {self.path}`")

    # -- file layout ----------------------------------------------------------------------------------
    def expected_sizes(self, count: int | None = None) -> dict[str, int]:
        """Bytes each fixed-width file holds for ``count`` rows (default: the committed rows)."""
        n = self.count if count is None else count
        return {name: n * width for name, width in row_bytes(self.manifest).items()}

    def _check_sizes(self) -> None:
        sizes = {**self.expected_sizes(), STORE_TEXTS: int(self.manifest["texts_bytes"])}
        for name, size in sizes.items():
            file = self.path / name
            if not file.is_file():
                raise damaged(file, f"the file is missing (the manifest commits {size} bytes of it)")
            actual = file.stat().st_size
            if actual < size:
                raise damaged(file, f"it holds {actual} bytes but the manifest commits {size}")
        if sizes[STORE_TEXTS] and read_range(self.path / STORE_TEXTS, sizes[STORE_TEXTS] - 1,
                                             sizes[STORE_TEXTS]) != b"\n":
            raise damaged(self.path / STORE_TEXTS, "the last committed record does not end with a newline")

    def _check_offsets(self) -> None:
        """The whole offsets file: its CRC-32 per chunk, then start at 0, increasing, inside the texts file."""
        n, file = self.count, self.path / STORE_OFFSETS
        if n == 0:
            return
        raw = read_range(file, 0, n * 8)
        offsets = np.frombuffer(raw, dtype=np.uint64).astype(np.int64)
        for chunk in chunks(self.manifest) or []:
            if hex32(checksum(raw[chunk.row_start * 8:chunk.row_stop * 8])) != chunk.crc[STORE_OFFSETS]:
                raise damaged(file, f"{chunk.rows} differ from their checksum in {STORE_MANIFEST}")
            if offsets[chunk.row_start] != chunk.text_start:
                raise damaged(file, f"{chunk.rows} do not start at byte {chunk.text_start} of {STORE_TEXTS}")
        ok = np.ones(n, dtype=bool)  # row i's offset is where row i-1's record ends or later, inside the texts
        ok[0] = offsets[0] == 0
        ok[1:] = offsets[1:] > offsets[:-1]
        ok &= offsets < int(self.manifest["texts_bytes"])
        if not ok.all():
            bad = int(np.argmin(ok))
            raise damaged(file, f"the offset of row {bad} ({offsets[bad]}) is not after the previous row's inside "
                                f"{STORE_TEXTS}")

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

    def parse_record(self, line: bytes, row: int) -> tuple[str, str]:
        """(id, text) of one texts line; anything else is a damaged texts file, named with the row."""
        try:
            obj = json.loads(line.decode("utf-8"))
            if not line.endswith(b"\n") or not isinstance(obj, dict) or not isinstance(obj["text"], str):
                raise ValueError("not a record")
            return str(obj["id"]), obj["text"]
        except (ValueError, KeyError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise damaged(self.path / STORE_TEXTS, f"row {row} is not an id/text record ({exc})") from None

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
                out.append(self.parse_record(handle.readline(), i))
        return out

    def ids(self) -> list[str]:
        """Every candidate id in row order (reads the whole texts file)."""
        with open(self.path / STORE_TEXTS, "rb") as handle:
            return [self.parse_record(handle.readline(), row)[0] for row in range(self.count)]

    def info(self) -> dict[str, Any]:
        """The manifest plus file sizes and ANN state, for `dsembed index info`."""
        out = dict(self.manifest)
        out.pop("chunks", None)  # one checksum record per chunk: for `dsembed index verify`, not for reading
        out["chunks"] = len(self.manifest.get("chunks") or [])
        out["path"] = str(self.path)
        out["bytes"] = {p.name: p.stat().st_size for p in sorted(self.path.iterdir()) if p.is_file()}
        metas = {kind: self.ann_files(kind)[1] for kind in PREFILTER_KINDS}
        out["ann"] = {kind: read_json(meta, f"{kind} ANN index metadata", REBUILD_ANN) for kind, meta in metas.items()
                      if meta.is_file()}
        return out


def open_store(path: str | os.PathLike[str] | CandidateStore, model: DSEModel | None = None) -> CandidateStore:
    """Open a store (and, given ``model``, refuse it when it was built with another model)."""
    if isinstance(path, CandidateStore):
        if model is not None:
            path.check_model(model)
        return path
    return CandidateStore(path, model)


