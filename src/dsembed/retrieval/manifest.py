"""The store manifest: reading it with one-line errors that name the file, its schema, the chunk checksums.

A chunk is what one :func:`~dsembed.retrieval.build.append_rows` call commits. The manifest lists every
chunk in ``chunks``: its rows, its bytes of the texts file and a CRC-32 of the bytes it appended to each
file. CRC-32 (zlib, ~4 GB/s on one core here, against ~1.8 GB/s for sha256) is there to catch damage (a
truncated copy, zeroed pages, a flipped bit), not tampering: whoever can write the files can rewrite the
manifest too. Stores written before checksums existed have no ``chunks``; they open with the structural
checks alone.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from ..errors import StoreCorruptError, StoreError

STORE_FORMAT = "dsembed-candidate-store"
STORE_VERSION = 1
CHECKSUM = "crc32"  # the manifest's name for the per-chunk checksum (a key of each chunk record)
COPY_BYTES = {"bfloat16": 2, "float16": 2, "int8": 1}  # bytes per value of each low-precision copy
REBUILD = "the store is damaged; rebuild it (`dsembed index build` into a new folder)"
REBUILD_ANN = "the ANN index is damaged; rebuild it (`dsembed index ann`)"


def damaged(file: Path, problem: str, fix: str = REBUILD) -> StoreCorruptError:
    """The one error for damaged bytes: names the file, says what is wrong and what to do."""
    return StoreCorruptError(f"{file}: {problem}: {fix}")


def checksum(data: bytes | memoryview, running: int = 0) -> int:
    """CRC-32 of ``data``, continuing ``running`` (so a range can be checked block by block)."""
    return zlib.crc32(data, running)


def hex32(value: int) -> str:
    return f"{value & 0xFFFFFFFF:08x}"


def read_json(file: Path, what: str, fix: str = REBUILD) -> Any:
    """A JSON file the store depends on; unreadable, undecodable or invalid JSON -> one line naming the file."""
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise StoreError(f"{file}: cannot read the {what} ({exc.strerror or exc})") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise damaged(file, f"the {what} is not UTF-8 text (byte {exc.start})", fix) from None
    except json.JSONDecodeError as exc:
        raise damaged(file, f"the {what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                      fix) from None


# --------------------------------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------------------------------


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _whole(record: dict[str, Any], key: str, file: Path, minimum: int, where: str = "") -> int:
    value = record.get(key)
    if type(value) is not int or value < minimum:  # bool is an int subclass: refuse it too
        raise damaged(file, f"{where}{key!r} must be a whole number >= {minimum}, got {_short(value)}")
    return value


def row_bytes(manifest: dict[str, Any]) -> dict[str, int]:
    """Bytes per row of every fixed-width file of a store with this manifest (the texts file is not one)."""
    dim, hidden = int(manifest["embedding_dim"]), int(manifest["hidden"])
    copies = manifest.get("copies", [])
    widths = {STORE_EMBEDDINGS: dim * 4, STORE_PROJECTION: hidden * 4, STORE_OFFSETS: 8}
    for copy in copies:
        widths[STORE_COPIES[copy]] = dim * COPY_BYTES[copy]
    if "int8" in copies:
        widths[STORE_INT8_SCALE] = 4
    if "bfloat16" in copies:
        widths[STORE_PROJECTION_BF16] = hidden * 2
    return widths


def _check_identity(manifest: Any, file: Path) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT:
        raise StoreError(f"{file} is not a dsembed candidate store manifest")
    version = _whole(manifest, "version", file, 1)
    if version > STORE_VERSION:
        raise StoreError(f"{file}: written by a newer dsembed (store version {version}); upgrade dsembed")
    fingerprint = manifest.get("model_fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise damaged(file, f"'model_fingerprint' must be a non-empty string, got {_short(fingerprint)}")


def _check_copies(manifest: dict[str, Any], file: Path) -> None:
    copies = manifest.get("copies", [])
    if not isinstance(copies, list) or any(c not in STORE_COPIES for c in copies) or len(set(copies)) != len(copies):
        raise damaged(file, f"'copies' must list distinct names from {sorted(STORE_COPIES)}, got {_short(copies)}")


def _check_pending(manifest: dict[str, Any], file: Path) -> None:
    pending = manifest.get("pending")
    if pending is None:
        return
    if not isinstance(pending, dict) or not isinstance(pending.get("sha256"), str):
        raise damaged(file, f"'pending' must be null or an ingest record, got {_short(pending)}")
    start = _whole(pending, "start", file, 0, "pending ")
    total = _whole(pending, "total", file, 1, "pending ")
    if not start <= manifest["count"] <= start + total:
        raise damaged(file, f"the pending ingest (rows {start}.. of {total}) does not fit the count "
                            f"{manifest['count']}")


def validate_manifest(manifest: Any, file: Path) -> dict[str, Any]:
    """Raise a one-line :class:`StoreError` naming ``file`` unless ``manifest`` is a usable store manifest."""
    _check_identity(manifest, file)
    _whole(manifest, "embedding_dim", file, 1)
    _whole(manifest, "hidden", file, 1)
    count = _whole(manifest, "count", file, 0)
    texts = _whole(manifest, "texts_bytes", file, 0)
    if (count and texts < 2 * count) or (not count and texts):
        raise damaged(file, f"'texts_bytes' {texts} cannot hold {count} rows")
    _check_copies(manifest, file)
    if not isinstance(manifest.get("sources", []), list):
        raise damaged(file, f"'sources' must be a list, got {_short(manifest.get('sources'))}")
    _check_pending(manifest, file)
    _check_chunks(manifest, file)
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    """The validated manifest of the store in ``folder`` (a missing one says how to build a store)."""
    file = folder / STORE_MANIFEST
    if not file.is_file():
        raise StoreError(f"{folder} is not a dsembed candidate store ({STORE_MANIFEST} is missing); "
                         "build one with `dsembed index build`")
    return validate_manifest(read_json(file, "store manifest"), file)


# --------------------------------------------------------------------------------------------------
# chunks
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """One committed chunk: its rows, its byte range of the texts file, the CRC-32 of each file's part."""

    index: int
    row_start: int
    row_stop: int
    text_start: int
    text_stop: int
    crc: dict[str, str]

    @property
    def rows(self) -> str:
        return f"rows {self.row_start}..{self.row_stop - 1} (chunk {self.index})"


def chunk_record(rows: int, parts: dict[str, bytes]) -> dict[str, Any]:
    """The manifest record of a chunk about to be committed: rows, texts bytes, a CRC-32 of every file's part."""
    return {"rows": rows, "texts_bytes": len(parts[STORE_TEXTS]),
            CHECKSUM: {name: hex32(checksum(data)) for name, data in parts.items()}}


def _check_chunks(manifest: dict[str, Any], file: Path) -> None:
    records = manifest.get("chunks")
    if records is None:
        return
    if not isinstance(records, list):
        raise damaged(file, f"'chunks' must be a list, got {_short(records)}")
    names = {*row_bytes(manifest), STORE_TEXTS}
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise damaged(file, f"chunk {i} must be a record, got {_short(rec)}")
        _whole(rec, "rows", file, 1, f"chunk {i} ")
        _whole(rec, "texts_bytes", file, 2, f"chunk {i} ")
        crc = rec.get(CHECKSUM)
        if not isinstance(crc, dict) or set(crc) != names or not all(isinstance(v, str) for v in crc.values()):
            raise damaged(file, f"chunk {i} must hold a {CHECKSUM} for each of {sorted(names)}")
    if sum(r["rows"] for r in records) != manifest["count"] or \
            sum(r["texts_bytes"] for r in records) != manifest["texts_bytes"]:
        raise damaged(file, "the chunk records do not add up to the committed rows and texts bytes")


def chunks(manifest: dict[str, Any]) -> list[Chunk] | None:
    """The committed chunks in row order, or ``None`` for a store written without checksums."""
    records: Iterable[dict[str, Any]] | None = manifest.get("chunks")
    if records is None:
        return None
    out, row, text = [], 0, 0
    for i, rec in enumerate(records):
        out.append(Chunk(i, row, row + rec["rows"], text, text + rec["texts_bytes"], dict(rec[CHECKSUM])))
        row, text = row + rec["rows"], text + rec["texts_bytes"]
    return out
