"""Teacher logits for mined pairs, resumable per chunk and reusable per pair, and a portable bundle of them.

Store: every chunk of not-yet-scored pairs goes through :func:`~dsembed.teacher.compute_teacher_logits`
into its own logits-cache entry (keyed by teacher fingerprint + that chunk's pairs). Before scoring, all
finished entries of the same teacher under the store folder are read and matched by pair hash. So a
killed run loses at most the chunk in progress, and a later run over a superset of the pairs (more
mined rows) scores only the pairs no entry holds yet. The Ray job (``dsembed augment score --ray``)
writes one entry for all unscored pairs into the same store, which this reads the same way.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..artifacts import LOGITS_FILE, MINED_INFO, MINED_LOGITS, MINED_LOGITS_SUBDIR, MINED_PAIRS
from ..bases import cache_dir
from ..data import PairDataset
from ..errors import ConfigError, CorruptFileError, InputNotFoundError, StaleLogitsError
from ..student import MinedRows
from ..tasks import TaskSpec
from ..teacher import TeacherLogits, compute_teacher_logits
from ..utils import atomic_dir, atomic_write_json
from .mine import MinedPairs, budget_rows

logger = logging.getLogger("dsembed.augment")

PathLike = str | os.PathLike[str]
BUNDLE_VERSION = 1


@dataclass
class ScoredPairs:
    """Mined pairs with the teacher's raw logits ``(n, num_labels)``, the layout of :class:`TeacherLogits`."""

    pairs: PairDataset
    strategy: list[str]
    teacher_logits: np.ndarray
    teacher: str  # description (path) of the teacher
    record: dict = field(default_factory=dict)
    teacher_fingerprint: str = ""  # keys the logits store; checked when a bundle is read back
    task: str = ""

    def __post_init__(self) -> None:
        logits = np.asarray(self.teacher_logits, dtype=np.float32)
        if logits.ndim != 2 or len(logits) != len(self.pairs) or len(self.strategy) != len(self.pairs):
            raise ConfigError(f"{len(self.pairs)} pairs, {len(self.strategy)} strategies and logits of shape "
                              f"{logits.shape} do not line up")
        self.teacher_logits = logits

    def __len__(self) -> int:
        return len(self.pairs)

    def select(self, mask_or_indices: Sequence[int] | Sequence[bool] | np.ndarray) -> ScoredPairs:
        """The rows a boolean mask or an index list picks (in that order), everything kept aligned."""
        picked = np.asarray(mask_or_indices)
        if picked.dtype == bool:
            if picked.shape != (len(self),):
                raise ConfigError(f"a mask over {len(self)} rows needs that many values, got {picked.shape}")
            picked = np.flatnonzero(picked)
        idx = picked.astype(np.int64).reshape(-1)
        return ScoredPairs(self.pairs.select(idx), [self.strategy[i] for i in idx], self.teacher_logits[idx].copy(),
                           self.teacher, dict(self.record), self.teacher_fingerprint, self.task)

    def as_mined(self) -> MinedPairs:
        return MinedPairs(self.pairs, list(self.strategy), dict(self.record.get("mining", {})))

    def as_teacher_logits(self) -> TeacherLogits:
        """The same logits as a :class:`TeacherLogits` (pair hashes included), as the trainer side takes them."""
        return TeacherLogits(self.teacher_logits, self.pairs.pair_hashes(), self.teacher_fingerprint,
                             self.pairs.fingerprint(), self.task)

    def check_matches(self, mined: MinedPairs, source: str = "") -> None:
        """Refuse a bundle scored for other pairs than ``mined`` (naming the first differing row)."""
        self.as_teacher_logits().check_matches(mined.pairs, source=source or "mined bundle")

    def restrict(self, strategies: Sequence[str] | None = None, max_pairs: int | None = None,
                 source: str = "mined bundle") -> ScoredPairs:
        """The pairs ``strategies`` found, then at most ``max_pairs`` of them (:func:`budget_rows`)."""
        return self.select(budget_rows(self.pairs, self.strategy, strategies, max_pairs, source))

    def check_task(self, task: TaskSpec, source: str = "mined bundle") -> None:
        """Refuse pairs mined for another task (their logits would mean something else)."""
        if self.task and self.task != task.name:
            raise ConfigError(f"{source}: the bundle was mined for task {self.task!r}, not {task.name!r}")

    def as_rows(self, task: TaskSpec, source: str = "mined bundle") -> MinedRows:
        """These pairs as ``distill(mined=...)`` takes them, checked against ``task``."""
        self.check_task(task, source)
        try:
            rows = MinedRows(self.pairs, self.teacher_logits, list(self.strategy), self.teacher)
        except ConfigError as exc:
            raise CorruptFileError(f"{source}: {exc}") from exc
        rows.check_task(task)
        return rows


def store_folder(cache: PathLike | None) -> Path:
    """Where mined-pair logits entries live: ``cache``, or ``$DSEMBED_CACHE/mined_logits``."""
    return Path(cache) if cache is not None else cache_dir() / MINED_LOGITS_SUBDIR


def _stored_logits(folder: Path, teacher_fingerprint: str) -> dict[int, np.ndarray]:
    """pair hash -> logits row, over every finished entry of this teacher in the store."""
    from safetensors import safe_open

    found: dict[int, np.ndarray] = {}
    for path in sorted(folder.glob(f"*/{LOGITS_FILE}")):
        try:
            with safe_open(str(path), framework="numpy") as handle:
                if (handle.metadata() or {}).get("teacher_fingerprint") != teacher_fingerprint:
                    continue
            stored = TeacherLogits.load(path)
        except Exception as exc:  # noqa: BLE001 - any damaged entry (safetensors has its own errors) is rescored
            logger.warning("ignoring %s: %s", path, exc)
            continue
        for h, row in zip(stored.pair_hashes.tolist(), stored.logits, strict=True):
            found[int(h)] = row
    return found


def unscored_pairs(teacher_fingerprint: str, mined: MinedPairs, *, cache: PathLike | None = None) -> PairDataset:
    """The pairs of ``mined`` that no finished entry of this teacher holds yet (what is left to score)."""
    done = _stored_logits(store_folder(cache), teacher_fingerprint)
    hashes = mined.pairs.pair_hashes()
    return mined.pairs.select([i for i, h in enumerate(hashes.tolist()) if h not in done])


def score_mined(teacher, mined: MinedPairs, *, cache: PathLike | None = None, batch_size: int = 64,  # noqa: ANN001
                chunk_size: int = 1024, show_progress_bar: bool = False,
                on_chunk: Callable[[int, int], None] | None = None) -> ScoredPairs:
    """The teacher's logits on every mined pair, scoring only pairs the store does not hold yet.

    ``teacher`` is a :class:`dsembed.teacher.Teacher` (anything with ``task``, ``fingerprint()`` and
    ``predict_logits``). Each chunk of ``chunk_size`` unscored pairs is committed before the next one
    starts; ``on_chunk(done, total)`` is called after each commit (progress, or a test's interruption).
    """
    if chunk_size < 1 or batch_size < 1:
        raise ConfigError(f"chunk_size and batch_size must be >= 1, got {chunk_size} and {batch_size}")
    started = time.perf_counter()
    fingerprint, folder = teacher.fingerprint(), store_folder(cache)
    done = _stored_logits(folder, fingerprint)
    hashes = mined.pairs.pair_hashes().tolist()
    todo = mined.pairs.select([i for i, h in enumerate(hashes) if h not in done])
    chunks = (len(todo) + chunk_size - 1) // chunk_size
    logger.info("mined pairs: %d of %d to score with the teacher, in %d chunk(s)", len(todo), len(mined), chunks)
    for c in range(chunks):
        part = todo.select(np.arange(c * chunk_size, min(len(todo), (c + 1) * chunk_size)))
        result = compute_teacher_logits(teacher, part, cache=folder, batch_size=batch_size, chunk_size=len(part),
                                        show_progress_bar=show_progress_bar)
        done.update(zip(result.pair_hashes.tolist(), result.logits, strict=True))
        if on_chunk is not None:
            on_chunk(c + 1, chunks)
    num_labels = teacher.task.num_labels
    logits = np.stack([done[h] for h in hashes]) if hashes else np.zeros((0, num_labels), np.float32)
    seconds = time.perf_counter() - started
    record = {"teacher": str(getattr(teacher, "path", teacher)), "teacher_fingerprint": fingerprint,
              "task": teacher.task.name, "pairs": len(mined), "scored_now": len(todo),
              "reused_from_store": len(mined) - len(todo), "chunk_size": chunk_size, "batch_size": batch_size,
              "store": str(folder), "seconds": round(seconds, 3),
              "pairs_per_second": round(len(todo) / seconds, 2) if len(todo) and seconds > 0 else None}
    return ScoredPairs(mined.pairs, list(mined.strategy), logits, record["teacher"],
                       {"mining": mined.record, "scoring": record}, fingerprint, teacher.task.name)


def write_mined_bundle(scored: ScoredPairs, folder: PathLike) -> Path:
    """A folder that carries scored pairs between machines: pairs JSONL, logits safetensors, bundle JSON.

    Written as a whole or not at all (a temporary sibling renamed into place).
    """
    folder = Path(folder)
    hashes = scored.pairs.pair_hashes()
    info = {"format_version": BUNDLE_VERSION, "teacher": scored.teacher,
            "teacher_fingerprint": scored.teacher_fingerprint,
            "task": scored.task, "num_labels": int(scored.teacher_logits.shape[1]), "n_pairs": len(scored),
            "pairs_fingerprint": scored.pairs.fingerprint(), "pair_hashes": [f"{int(h):016x}" for h in hashes],
            "record": scored.record}
    with atomic_dir(folder) as tmp:
        MinedPairs(scored.pairs, list(scored.strategy), {}).save(tmp / MINED_PAIRS)
        for sidecar in tmp.glob("*.record.json"):  # the bundle JSON holds the records
            sidecar.unlink()
        scored.as_teacher_logits().save(tmp / MINED_LOGITS)
        atomic_write_json(tmp / MINED_INFO, info)
    return folder


def _bundle_info(folder: Path) -> dict:
    if not folder.is_dir():
        raise InputNotFoundError(f"{folder}: no such mined-pairs bundle folder")
    for name in (MINED_INFO, MINED_LOGITS):
        if not (folder / name).is_file():
            raise InputNotFoundError(f"{folder} is not a mined-pairs bundle ({name} is missing)")
    try:
        info = json.loads((folder / MINED_INFO).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(f"{folder / MINED_INFO}: not readable JSON ({exc})") from exc
    needed = {"teacher", "teacher_fingerprint", "task", "num_labels", "n_pairs", "pairs_fingerprint", "pair_hashes"}
    if not isinstance(info, dict) or needed - set(info):
        raise CorruptFileError(f"{folder / MINED_INFO} lacks {sorted(needed - set(info or {}))}")
    return info


def load_mined_bundle(folder: PathLike, mined: MinedPairs | None = None) -> ScoredPairs:
    """Read a bundle and check it against itself and, when given, against the mined pairs it should score.

    The bundle's pairs file may be left out (only the logits came back); ``mined`` then supplies the pairs.
    Any disagreement (other pairs, other order, other row count) is a :class:`StaleLogitsError`.
    """
    folder = Path(folder)
    info = _bundle_info(folder)
    logits = TeacherLogits.load(folder / MINED_LOGITS)
    pairs_file = folder / MINED_PAIRS
    if pairs_file.is_file():
        rows = MinedPairs.load(pairs_file)
    elif mined is not None:
        rows = mined
    else:
        raise InputNotFoundError(f"{folder} has no {MINED_PAIRS}; pass the mined-pairs file it scored")
    stored_hashes = np.array([int(h, 16) for h in info["pair_hashes"]], dtype=np.uint64)
    if len(stored_hashes) != len(logits.pair_hashes) or (stored_hashes != logits.pair_hashes).any():
        raise StaleLogitsError(f"{folder}: {MINED_INFO} and {MINED_LOGITS} list different pairs")
    if logits.teacher_fingerprint != info["teacher_fingerprint"] or logits.logits.shape[1:] != (info["num_labels"],):
        raise StaleLogitsError(f"{folder}: {MINED_LOGITS} is not the logits {MINED_INFO} describes")
    logits.check_matches(rows.pairs, source=str(folder))
    record = dict(info.get("record") or {})
    scored = ScoredPairs(rows.pairs, list(rows.strategy), logits.logits, info["teacher"], record,
                         info["teacher_fingerprint"], info["task"])
    if mined is not None:
        scored.check_matches(mined, source=f"{folder} against the mined pairs")
    return scored


def load_mined_rows(folder: PathLike, task: TaskSpec, strategies: Sequence[str] | None = None,
                    max_pairs: int | None = None) -> MinedRows:
    """A bundle as ``distill(mined=...)`` takes it, checked against ``task``, optionally restricted
    to some strategies and a budget (:meth:`ScoredPairs.restrict`).

    Read here, not in the student room: the bundle format belongs to this stage, and the student
    only knows the :class:`~dsembed.student.MinedRows` container (augment sits above student).
    """
    scored = load_mined_bundle(folder)
    if strategies is not None or max_pairs is not None:
        scored = scored.restrict(strategies, max_pairs, source=str(folder))
    return scored.as_rows(task, source=str(folder))
