"""Teacher scores keyed by pair hash: every method of a ranking evaluation shares them, and a kill keeps them.

The full-teacher column and the cascades ask for overlapping pairs (a cascade's top-K is a subset of the
full candidate list), so each distinct pair is scored once per teacher. The logits cache of
:mod:`dsembed.teacher.logits` is keyed by a whole pair *set*; here the set grows query by query, so each
batch of new pairs is committed as its own small safetensors file (atomically), and a rerun reloads every
committed file. The time each batch took is stored with it, so a resumed run still knows how long the
teacher needs per pair.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save

from ..artifacts import RETRIEVAL_SCORES_CHUNK
from ..data import PairDataset
from ..errors import ConfigError
from ..utils import atomic_write_bytes, sha256_bytes

logger = logging.getLogger("dsembed.bench")


def ranking_scores(task, logits: np.ndarray) -> np.ndarray:  # noqa: ANN001 - a TaskSpec
    """One ranking score per pair: logit[1] - logit[0] for binary tasks, the value for regression."""
    if task.kind == "multiclass":
        raise ConfigError(f"task {task.name!r} is multiclass: ranking needs one relevance score per pair "
                          "(a binary or regression teacher)")
    return np.asarray(task.teacher_to_student_logits(np.asarray(logits, dtype=np.float32))[:, 0], dtype=np.float32)


class TeacherScoreCache:
    """``score(pairs)``: the teacher's ranking score of each pair, computing only pairs never scored before."""

    def __init__(self, teacher, folder: str | Path | None = None, batch_size: int = 64) -> None:  # noqa: ANN001
        self.teacher = teacher
        self.batch_size = batch_size
        self.fingerprint = teacher.fingerprint()
        self.folder = Path(folder) / sha256_bytes(self.fingerprint.encode())[:32] if folder is not None else None
        self.scores: dict[int, float] = {}
        self.seconds = 0.0  # teacher time over every pair scored (this run and committed earlier runs)
        self.timed_pairs = 0
        self.computed = 0  # pairs this process sent to the teacher
        self.loaded = 0  # pairs read back from disk
        self.chunks = 0  # score files read or written
        self._next_index = 0  # the next file's number (past every file found, readable or not)
        if self.folder is not None:
            self._load()

    def _load(self) -> None:
        assert self.folder is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.folder.glob(".*.tmp"):  # a kill during an atomic write
            leftover.unlink(missing_ok=True)
        files = sorted(self.folder.glob(RETRIEVAL_SCORES_CHUNK.replace("{index:06d}", "*")))
        self._next_index = len(files)
        for file in files:
            try:
                with safe_open(str(file), framework="numpy") as handle:
                    meta = handle.metadata() or {}
                    hashes, scores = handle.get_tensor("hashes"), handle.get_tensor("scores")
            except Exception as exc:  # noqa: BLE001 - an unreadable chunk is scored again, not fatal
                logger.warning("ignoring unreadable teacher score file %s (%s); its pairs are scored again", file, exc)
                continue
            if meta.get("teacher") != self.fingerprint or hashes.shape != scores.shape:
                logger.warning("ignoring %s: it belongs to another teacher or is malformed", file)
                continue
            self.scores.update(zip(hashes.tolist(), scores.tolist(), strict=True))
            self.seconds += float(meta.get("seconds", 0.0))
            self.timed_pairs += len(hashes)
            self.loaded += len(hashes)
            self.chunks += 1
        if self.loaded:
            logger.info("teacher scores: %d pairs resumed from %s", self.loaded, self.folder)

    def _commit(self, hashes: np.ndarray, scores: np.ndarray, seconds: float) -> None:
        if self.folder is None:
            return
        data = save({"hashes": hashes, "scores": scores}, metadata={"teacher": self.fingerprint,
                                                                     "seconds": repr(seconds)})
        atomic_write_bytes(self.folder / RETRIEVAL_SCORES_CHUNK.format(index=self._next_index), data)
        self._next_index += 1
        self.chunks += 1

    def score(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """Scores of ``pairs`` in order; new distinct pairs go to the teacher in one call and are committed."""
        hashes = PairDataset([a for a, _ in pairs], [b for _, b in pairs], None).pair_hashes()
        keys = hashes.tolist()
        new: dict[int, int] = {}
        for i, key in enumerate(keys):
            if key not in self.scores and key not in new:
                new[key] = i
        if new:
            rows = list(new.values())
            start = time.perf_counter()
            logits = self.teacher.predict_logits([pairs[i] for i in rows], batch_size=self.batch_size,
                                                 show_progress_bar=False)
            seconds = time.perf_counter() - start
            values = ranking_scores(self.teacher.task, logits)
            self._commit(hashes[rows], values, seconds)
            self.scores.update(zip(new, values.tolist(), strict=True))
            self.seconds += seconds
            self.timed_pairs += len(rows)
            self.computed += len(rows)
        return np.asarray([self.scores[k] for k in keys], dtype=np.float32)

    @property
    def seconds_per_pair(self) -> float | None:
        """Measured teacher time per pair (None before any pair was timed)."""
        return self.seconds / self.timed_pairs if self.timed_pairs else None

    def info(self) -> dict[str, object]:
        return {"fingerprint": self.fingerprint, "cache": str(self.folder) if self.folder else None,
                "pairs_computed_this_run": self.computed, "pairs_resumed_from_disk": self.loaded,
                "seconds_per_pair": self.seconds_per_pair, "timed_pairs": self.timed_pairs}
