"""Full verification of a store: every committed byte of every file, against the manifest's chunk checksums.

Opening a store (:mod:`.store`) checks only what is cheap enough for every open: the manifest, the file
sizes and the offsets (8 bytes a row). This reads everything else once, sequentially, in bounded memory:
each chunk's part of every file against its CRC-32, finiteness of every float row (embeddings, head
projections, low-precision copies), and that each texts line is an id/text record starting where the
offsets file says. The cost is one read of the store (about 2.4 KB a row for a 384-dim student with the
bfloat16 copy) at disk or page-cache speed plus ~4 GB/s of CRC-32, and ~1 us a row of JSON parsing: well
under a second per 100k rows from cache. ``dsembed index verify`` runs it, and so does ``dsembed serve``
once at start-up, so a service never answers from a damaged store. ANN index files are read back too.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
from ..errors import ModelMismatchError
from .ann import HeadSurrogate, read_index
from .manifest import REBUILD_ANN, Chunk, checksum, chunks, damaged, hex32, read_json, row_bytes
from .store import PREFILTER_KINDS, CandidateStore, open_store, read_range

BLOCK_BYTES = 16 << 20  # read at most this much of a file at a time
LEGACY_ROWS = 65_536  # rows per verified block of a store written without chunk checksums
FLOATS = {STORE_EMBEDDINGS: "f32", STORE_PROJECTION: "f32", STORE_INT8_SCALE: "f32",
          STORE_COPIES["float16"]: "f16", STORE_COPIES["bfloat16"]: "bf16", STORE_PROJECTION_BF16: "bf16"}


@dataclass
class VerifyReport:
    """What :func:`verify_store` read and found sound."""

    path: str
    rows: int
    chunks: int
    checksums: bool  # False: a store written before chunk checksums (structure and finiteness checked only)
    pending: bool
    bytes_read: int
    seconds: float
    files: list[str] = field(default_factory=list)
    ann: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        what = f"{self.chunks} chunk checksums" if self.checksums else "no checksums recorded (older store): " \
            "structure and finiteness"
        extra = "; an unfinished ingest is pending" if self.pending else ""
        ann = f", ANN {'+'.join(self.ann)}" if self.ann else ""
        return (f"ok: {self.path}: {self.rows} rows, {len(self.files)} files{ann}, {what} verified, "
                f"{self.bytes_read / 1e6:.1f} MB in {self.seconds:.2f} s{extra}")


def _finite_rows(data: bytes, kind: str, width: int) -> np.ndarray:
    """Per row of ``data`` (``width`` bytes a row): whether every value is finite."""
    if kind == "bf16":  # bfloat16 is the top half of a float32
        values = (np.frombuffer(data, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    else:
        values = np.frombuffer(data, dtype=np.float32 if kind == "f32" else np.float16)
    return np.isfinite(values.reshape(len(data) // width, -1)).all(axis=1)


def _check_fixed(file: Path, width: int, chunk: Chunk) -> int:
    """Stream one chunk's rows of a fixed-width file: CRC-32 against the manifest, floats finite per row."""
    kind, crc = FLOATS.get(file.name), 0
    step = max(1, BLOCK_BYTES // width) * width
    for lo in range(chunk.row_start * width, chunk.row_stop * width, step):
        data = read_range(file, lo, min(lo + step, chunk.row_stop * width))
        crc = checksum(data, crc)
        if kind is not None:
            finite = _finite_rows(data, kind, width)
            if not finite.all():
                raise damaged(file, f"row {lo // width + int(np.argmin(finite))} holds NaN or inf values")
    expected = chunk.crc.get(file.name)
    if expected is not None and hex32(crc) != expected:
        raise damaged(file, f"{chunk.rows} differ from their checksum in {STORE_MANIFEST}")
    return (chunk.row_stop - chunk.row_start) * width


def _check_texts(store: CandidateStore, chunk: Chunk, offsets: np.ndarray) -> int:
    """One chunk of the texts file: its CRC-32, one id/text record a row, each where the offsets say."""
    file = store.path / STORE_TEXTS
    data = read_range(file, chunk.text_start, chunk.text_stop)
    expected = chunk.crc.get(STORE_TEXTS)
    if expected is not None and hex32(checksum(data)) != expected:
        raise damaged(file, f"{chunk.rows} differ from their checksum in {STORE_MANIFEST}")
    lines = data.split(b"\n")
    rows = chunk.row_stop - chunk.row_start
    if lines[-1] or len(lines) - 1 != rows:
        raise damaged(file, f"{chunk.rows} hold {len(lines) - 1} complete records, not {rows}")
    starts = chunk.text_start + np.concatenate([[0], np.cumsum([len(x) + 1 for x in lines[:-2]])]).astype(np.int64)
    wrong = starts != offsets[chunk.row_start:chunk.row_stop]
    if wrong.any():
        row = chunk.row_start + int(np.argmax(wrong))
        raise damaged(store.path / STORE_OFFSETS, f"the offset of row {row} does not point at its record")
    for i, line in enumerate(lines[:-1]):
        store.parse_record(line + b"\n", chunk.row_start + i)
    return len(data)


def _blocks(store: CandidateStore, offsets: np.ndarray) -> tuple[list[Chunk], bool]:
    """The chunks to verify: the committed ones, or (no checksums recorded) blocks cut along the offsets."""
    recorded = chunks(store.manifest)
    if recorded is not None:
        return recorded, True
    n, end = store.count, int(store.manifest["texts_bytes"])
    starts = list(range(0, n, LEGACY_ROWS))
    return [Chunk(i, a, min(a + LEGACY_ROWS, n), int(offsets[a]), int(offsets[a + LEGACY_ROWS])
                  if a + LEGACY_ROWS < n else end, {}) for i, a in enumerate(starts)], False


def _check_ann(store: CandidateStore) -> list[str]:
    """Read back each ANN index the store has (read-only: :func:`load_ann` would extend and save it)."""
    found = []
    for kind in PREFILTER_KINDS:
        file, meta_file, sur_file = store.ann_files(kind)
        if not (file.exists() or meta_file.exists()):
            continue
        meta = read_json(meta_file, f"{kind} ANN index metadata", REBUILD_ANN)
        if not isinstance(meta, dict) or meta.get("model_fingerprint") != store.fingerprint:
            raise ModelMismatchError(f"{meta_file}: the {kind} ANN index belongs to another model; rebuild it")
        if kind == "head":
            HeadSurrogate.load(sur_file)
        if read_index(file).ntotal > store.count:
            raise damaged(file, f"the {kind} ANN index holds more rows than the store's {store.count}", REBUILD_ANN)
        found.append(kind)
    return found


def verify_store(store: CandidateStore | str | os.PathLike[str], *,
                 show_progress_bar: bool = False) -> VerifyReport:
    """Read every committed byte of ``store`` and check it; a one-line :class:`StoreError` names the first damage."""
    start = time.perf_counter()
    store = open_store(store)  # the cheap checks (manifest, sizes, offsets) first
    offsets = np.frombuffer(read_range(store.path / STORE_OFFSETS, 0, store.count * 8), dtype=np.uint64)
    offsets = offsets.astype(np.int64)
    blocks, has_checksums = _blocks(store, offsets)
    widths = row_bytes(store.manifest)
    done = 0
    for chunk in tqdm(blocks, desc="verify", unit="chunk", disable=not show_progress_bar):
        for name, width in widths.items():
            done += _check_fixed(store.path / name, width, chunk)
        done += _check_texts(store, chunk, offsets)
    ann = _check_ann(store)
    return VerifyReport(str(store.path), store.count, len(blocks) if has_checksums else 0, has_checksums,
                        bool(store.manifest.get("pending")), done, round(time.perf_counter() - start, 3),
                        sorted([*widths, STORE_TEXTS]), ann)
