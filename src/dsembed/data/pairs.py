"""``PairDataset``: the sentence pairs every stage passes around, and the hashes that key caches on them.

Teacher logits are cached by ``fingerprint()`` and checked row by row with ``pair_hashes()``, so both
hash the pair texts only (never labels) in a length-prefixed form that cannot collide across fields.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError


def _text_bytes(text: str) -> bytes:
    """UTF-8 bytes of a field, length-prefixed so that concatenations cannot collide."""
    raw = text.encode("utf-8", "surrogatepass")
    return struct.pack("<Q", len(raw)) + raw


@dataclass
class PairDataset:
    """Sentence pairs with optional float32 labels (class index as float, or a regression score)."""

    sentence1: list[str]
    sentence2: list[str]
    labels: np.ndarray | None
    source: str = ""
    skipped: int = 0
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.sentence1) != len(self.sentence2):
            raise ConfigError(
                f"sentence1 has {len(self.sentence1)} rows but sentence2 has {len(self.sentence2)}")
        if self.labels is not None:
            labels = np.asarray(self.labels, dtype=np.float32)
            if labels.shape != (len(self.sentence1),):
                raise ConfigError(f"labels have shape {labels.shape}, expected ({len(self.sentence1)},)")
            self.labels = labels

    def __len__(self) -> int:
        return len(self.sentence1)

    def pairs(self) -> list[tuple[str, str]]:
        """(sentence1, sentence2) tuples, the input shape cross-encoders expect."""
        return list(zip(self.sentence1, self.sentence2, strict=True))

    def select(self, indices: Sequence[int] | np.ndarray, source: str | None = None) -> PairDataset:
        """Rows at ``indices`` (in the given order), labels kept aligned."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"index out of range for a dataset of {len(self)} rows")
        return PairDataset(
            sentence1=[self.sentence1[i] for i in idx],
            sentence2=[self.sentence2[i] for i in idx],
            labels=None if self.labels is None else self.labels[idx].copy(),
            source=self.source if source is None else source,
            skipped=self.skipped,
            problems=list(self.problems),
        )

    def subset(self, n: int | None, seed: int = 0) -> PairDataset:
        """A deterministic random sample of ``n`` rows kept in file order (quick runs, smoke tests)."""
        if n is None or n >= len(self):
            return self
        if n < 0:
            raise ConfigError(f"subset size must be >= 0, got {n}")
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(self), size=n, replace=False))
        return self.select(idx, source=f"{self.source}[subset n={n} seed={seed}]")

    def fingerprint(self) -> str:
        """sha256 over the pair texts in order (not labels): the key for cached teacher logits."""
        h = hashlib.sha256(b"dsembed-pairs-v1\0")
        h.update(struct.pack("<Q", len(self)))
        for s1, s2 in zip(self.sentence1, self.sentence2, strict=True):
            h.update(_text_bytes(s1))
            h.update(_text_bytes(s2))
        return h.hexdigest()

    def pair_hashes(self) -> np.ndarray:
        """One uint64 per pair (blake2b-64), so a cache can check alignment row by row."""
        out = np.empty(len(self), dtype=np.uint64)
        for i, (s1, s2) in enumerate(zip(self.sentence1, self.sentence2, strict=True)):
            digest = hashlib.blake2b(_text_bytes(s1) + _text_bytes(s2), digest_size=8).digest()
            out[i] = int.from_bytes(digest, "little")
        return out
