"""Teacher logits: computed once per (teacher, pairs), stored on disk, resumable, portable.

A logits file records the teacher's fingerprint and a hash of every pair, so logits computed
on a GPU machine can be carried to a CPU machine and are refused if the pairs differ.
Work in progress is kept as atomically written chunks, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from ..artifacts import BUNDLE_INFO, BUNDLE_SPLIT_FILE, LOGITS_FILE, LOGITS_META
from ..bases import cache_dir
from ..data import PairDataset
from ..errors import ConfigError, CorruptFileError, InputNotFoundError, StaleLogitsError
from ..utils import atomic_write_bytes, atomic_write_json, environment_record, sha256_bytes

logger = logging.getLogger("dsembed.logits")

FORMAT_VERSION = 1


@dataclass
class TeacherLogits:
    logits: np.ndarray  # [n, teacher num_labels], raw
    pair_hashes: np.ndarray  # [n] uint64, one per pair, in order
    teacher_fingerprint: str
    pairs_fingerprint: str
    task: str

    def save(self, path: str | Path) -> None:
        """One safetensors file with the logits, the pair hashes and the keys as metadata."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        meta = {"teacher_fingerprint": self.teacher_fingerprint, "pairs_fingerprint": self.pairs_fingerprint,
                "task": self.task, "format_version": str(FORMAT_VERSION)}
        save_file({"logits": self.logits.astype(np.float32), "pair_hashes": self.pair_hashes.astype(np.uint64)},
                  str(tmp), metadata=meta)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> TeacherLogits:
        from safetensors import safe_open

        if not Path(path).is_file():
            raise InputNotFoundError(f"{path}: no such teacher-logits file")
        try:
            with safe_open(str(path), framework="numpy") as handle:
                meta = handle.metadata() or {}
            arrays = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for a damaged header or body
            raise CorruptFileError(f"{path} is not a readable safetensors file ({exc})") from exc
        missing = {"teacher_fingerprint", "pairs_fingerprint", "task"} - set(meta)
        if missing or "logits" not in arrays or "pair_hashes" not in arrays:
            raise CorruptFileError(f"{path} is not a dsembed teacher-logits file (missing {sorted(missing)})")
        return cls(arrays["logits"], arrays["pair_hashes"], meta["teacher_fingerprint"], meta["pairs_fingerprint"],
                   meta["task"])

    def check_matches(self, data: PairDataset, teacher_fingerprint: str | None = None, source: str = "") -> None:
        """Refuse logits that were computed for other pairs (or another teacher, when given)."""
        where = f" ({source})" if source else ""
        if teacher_fingerprint is not None and teacher_fingerprint != self.teacher_fingerprint:
            raise StaleLogitsError(f"teacher logits{where} were computed by another teacher")
        if len(self.logits) != len(data):
            raise StaleLogitsError(f"teacher logits{where} cover {len(self.logits)} pairs, the data has {len(data)}")
        hashes = data.pair_hashes()
        bad = np.flatnonzero(hashes != self.pair_hashes)
        if len(bad):
            raise StaleLogitsError(f"teacher logits{where} do not match the pairs: {len(bad)} differ, first at "
                                   f"row {int(bad[0])}")

    def aligned_to(self, data: PairDataset, source: str = "") -> TeacherLogits:
        """These logits in ``data``'s row order, for any subset or reordering of the stored pairs.

        Logits are computed once for all training pairs; a student trained on a sample of them
        (``--max-train-pairs``, a quick profile) takes its rows by pair hash. A pair the teacher
        never scored is refused, naming the first such row.
        """
        hashes = data.pair_hashes()
        if len(hashes) == len(self.pair_hashes) and (hashes == self.pair_hashes).all():
            return self
        row_of = {int(h): i for i, h in enumerate(self.pair_hashes)}
        rows = np.fromiter((row_of.get(int(h), -1) for h in hashes), dtype=np.int64, count=len(hashes))
        missing = np.flatnonzero(rows < 0)
        if len(missing):
            where = f" ({source})" if source else ""
            raise StaleLogitsError(f"teacher logits{where} do not cover the pairs: {len(missing)} of {len(data)} "
                                   f"were never scored, first at row {int(missing[0])}")
        return TeacherLogits(self.logits[rows], hashes, self.teacher_fingerprint, data.fingerprint(), self.task)


def logits_cache_path(teacher_fingerprint: str, data: PairDataset, root: str | Path | None = None) -> Path:
    key = sha256_bytes(f"{teacher_fingerprint}\n{data.fingerprint()}".encode())[:32]
    return Path(root or cache_dir() / "logits") / key


@dataclass
class LogitsCache:
    """One cache entry in progress: ``chunk_{i:06d}_{chunk_size}.npy`` files, each committed atomically.

    The single-process loop and the Ray job (:mod:`dsembed.scale`) both read and commit chunks through
    this class, so either can resume what the other left.
    """

    folder: Path
    rows: int  # pairs in the whole set
    cols: int  # teacher outputs per pair
    chunk_size: int

    @property
    def n_chunks(self) -> int:
        return (self.rows + self.chunk_size - 1) // self.chunk_size

    def bounds(self, index: int) -> tuple[int, int]:
        """Pair rows ``[lo, hi)`` of chunk ``index``."""
        return index * self.chunk_size, min(self.rows, (index + 1) * self.chunk_size)

    def path(self, index: int) -> Path:
        return self.folder / chunk_name(index, self.chunk_size)

    def load(self, index: int) -> np.ndarray | None:
        """Chunk ``index`` if it is committed and can be trusted, else None (then it is computed again)."""
        path = self.path(index)
        if not path.is_file():
            return None
        lo, hi = self.bounds(index)
        return load_chunk(path, hi - lo, self.cols)

    def commit(self, index: int, part: np.ndarray) -> None:
        """Atomically write chunk ``index`` (what a killed run keeps)."""
        lo, hi = self.bounds(index)
        if part.shape != (hi - lo, self.cols):
            raise ValueError(f"chunk {index} of {self.folder} needs shape {(hi - lo, self.cols)}, got {part.shape}")
        atomic_write_bytes(self.path(index), _npy_bytes(part))


def open_logits_cache(teacher_fingerprint: str, data: PairDataset, num_labels: int, *,
                      cache: str | Path | None = None, chunk_size: int = 2048) -> LogitsCache:
    """The cache entry of (teacher, pairs), ready to take chunks: its folder, its meta file, no leftovers."""
    folder = logits_cache_path(teacher_fingerprint, data, cache)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / LOGITS_META, {"teacher_fingerprint": teacher_fingerprint, "pairs": len(data),
                                             "pairs_fingerprint": data.fingerprint(), "chunk_size": chunk_size})
    for leftover in folder.glob(".chunk_*.tmp"):  # a kill during an atomic chunk write
        leftover.unlink(missing_ok=True)
    return LogitsCache(folder, len(data), num_labels, chunk_size)


def cached_teacher_logits(teacher_fingerprint: str, data: PairDataset,
                          cache: str | Path | None = None) -> TeacherLogits | None:
    """The finished logits of (teacher, pairs) from the cache, checked against the pairs; None if not there."""
    final = logits_cache_path(teacher_fingerprint, data, cache) / LOGITS_FILE
    if not final.is_file():
        return None
    stored = TeacherLogits.load(final)
    stored.check_matches(data, teacher_fingerprint, str(final))
    logger.info("teacher logits from cache %s", final)
    return stored


def compute_teacher_logits(teacher, data: PairDataset, *, cache: str | Path | None = None,  # noqa: ANN001
                           batch_size: int = 64, chunk_size: int = 2048, show_progress_bar: bool = True,
                           use_cache: bool = True) -> TeacherLogits:
    """Logits of ``teacher`` (a :class:`dsembed.teacher.Teacher`) on every pair, cached and resumable."""
    teacher_fp = teacher.fingerprint()
    if use_cache and (stored := cached_teacher_logits(teacher_fp, data, cache)) is not None:
        return stored
    entry = open_logits_cache(teacher_fp, data, teacher.task.num_labels, cache=cache, chunk_size=chunk_size)
    pairs = data.pairs()
    done = [c for c in range(entry.n_chunks) if use_cache and entry.path(c).is_file()]
    if done:
        logger.info("resuming teacher logits in %s: %d of %d chunks already computed", entry.folder, len(done),
                    entry.n_chunks)
    parts: list[np.ndarray] = []
    with tqdm(total=len(pairs), desc="teacher logits", unit="pair", disable=not show_progress_bar) as bar:
        for c in range(entry.n_chunks):
            lo, hi = entry.bounds(c)
            part = entry.load(c) if c in done else None
            if part is None:
                part = teacher.predict_logits(pairs[lo:hi], batch_size=batch_size, show_progress_bar=False)
                entry.commit(c, part)
            parts.append(part)
            bar.update(hi - lo)
    logits = np.concatenate(parts) if parts else np.zeros((0, teacher.task.num_labels), np.float32)
    result = TeacherLogits(logits, data.pair_hashes(), teacher_fp, data.fingerprint(), teacher.task.name)
    result.save(entry.folder / LOGITS_FILE)
    for chunk_file in entry.folder.glob("chunk_*.npy"):
        chunk_file.unlink()
    return result


def chunk_name(index: int, chunk_size: int) -> str:
    """File name of a committed chunk; the chunk size is part of it, so a rerun with another size starts over."""
    return f"chunk_{index:06d}_{chunk_size}.npy"


def load_chunk(path: Path, rows: int, cols: int) -> np.ndarray | None:
    """A finished chunk, or None when it cannot be trusted (then it is computed again)."""
    try:
        part = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        logger.warning("recomputing %s: %s", path, exc)
        return None
    if part.shape != (rows, cols) or not np.isfinite(part).all():
        logger.warning("recomputing %s: shape %s or non-finite values", path, part.shape)
        return None
    return part


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


_BUNDLE_SPLITS = ("train", "dev")


@dataclass
class LogitsBundle:
    """A teacher reduced to what the pipeline needs: its logits on the train and dev pairs plus its record.

    Written where the teacher was trained (a GPU machine, say) and carried as a few hundred KB
    instead of a 400 MB model; every row stays tied to its pair by hash, so nothing stale is used.
    """

    train: TeacherLogits
    dev: TeacherLogits
    info: dict
    test: TeacherLogits | None = None  # optional: the teacher's row in a run's test table (never selected on)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.train.save(folder / BUNDLE_SPLIT_FILE.format(split="train"))
        self.dev.save(folder / BUNDLE_SPLIT_FILE.format(split="dev"))
        if self.test is not None:
            self.test.save(folder / BUNDLE_SPLIT_FILE.format(split="test"))
        atomic_write_json(folder / BUNDLE_INFO, self.info)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> LogitsBundle:
        folder = Path(folder)
        names = [BUNDLE_SPLIT_FILE.format(split=split) for split in _BUNDLE_SPLITS] + [BUNDLE_INFO]
        missing = [name for name in names if not (folder / name).is_file()]
        if missing:
            raise InputNotFoundError(f"{folder} is not a teacher-logits bundle (missing {', '.join(missing)})")
        info = json.loads((folder / BUNDLE_INFO).read_text())
        train, dev = (TeacherLogits.load(folder / BUNDLE_SPLIT_FILE.format(split=s)) for s in _BUNDLE_SPLITS)
        test_file = folder / BUNDLE_SPLIT_FILE.format(split="test")
        return cls(train, dev, info, TeacherLogits.load(test_file) if test_file.is_file() else None)

    def check_matches(self, train: PairDataset, dev: PairDataset, source: str = "") -> None:
        self.train.check_matches(train, source=f"{source} train")
        self.dev.check_matches(dev, source=f"{source} dev")

    def aligned_to(self, train: PairDataset, dev: PairDataset, source: str = "") -> LogitsBundle:
        """This bundle restricted and ordered to ``train`` and ``dev`` (subsets of its pairs)."""
        return LogitsBundle(self.train.aligned_to(train, f"{source} train"), self.dev.aligned_to(dev, f"{source} dev"),
                            self.info, self.test)


def write_logits_bundle(teacher, train: PairDataset, dev: PairDataset, folder: str | Path, *,  # noqa: ANN001
                        batch_size: int = 64, extra_info: dict | None = None,
                        show_progress_bar: bool = True, test: PairDataset | None = None) -> LogitsBundle:
    """Compute ``teacher``'s logits on ``train`` and ``dev`` (and ``test``) and save them as a portable bundle."""
    parts: dict[str, TeacherLogits | None] = {"test": None}
    for name, data in (("train", train), ("dev", dev), ("test", test)):
        if data is None:
            continue
        parts[name] = compute_teacher_logits(teacher, data, cache=Path(folder) / ".cache", batch_size=batch_size,
                                             show_progress_bar=show_progress_bar)
    info = {"teacher": str(getattr(teacher, "path", teacher)), "teacher_fingerprint": teacher.fingerprint(),
            "task": teacher.task.name, "teacher_info": getattr(teacher, "info", {}),
            "environment": environment_record(), **(extra_info or {})}
    bundle = LogitsBundle(parts["train"], parts["dev"], info, parts["test"])
    bundle.save(folder)
    shutil.rmtree(Path(folder) / ".cache", ignore_errors=True)
    return bundle


def load_logits_bundles(spec: str | Path) -> LogitsBundle:
    """One bundle folder, or several comma-separated ones averaged into an ensemble teacher."""
    folders = [s.strip() for s in str(spec).split(",") if s.strip()]
    if not folders:
        raise ConfigError("no teacher-logits bundle given")
    bundles = [LogitsBundle.load(f) for f in folders]
    if len(bundles) == 1:
        return bundles[0]
    first = bundles[0]
    for folder, other in zip(folders[1:], bundles[1:], strict=True):
        if other.train.task != first.train.task:
            raise StaleLogitsError(f"{folder} holds logits for task {other.train.task}, "
                                   f"{folders[0]} for {first.train.task}")
        for split in _BUNDLE_SPLITS:
            mine, theirs = getattr(first, split), getattr(other, split)
            if len(mine.pair_hashes) != len(theirs.pair_hashes) or (mine.pair_hashes != theirs.pair_hashes).any():
                raise StaleLogitsError(f"{folder} and {folders[0]} cover different {split} pairs")
    fingerprint = "ensemble:" + "+".join(sorted(b.train.teacher_fingerprint for b in bundles))

    def mean(split: str) -> TeacherLogits:
        ref = getattr(first, split)
        stacked = np.mean([getattr(b, split).logits for b in bundles], axis=0).astype(np.float32)
        return TeacherLogits(stacked, ref.pair_hashes, fingerprint, ref.pairs_fingerprint, ref.task)

    info = {"ensemble_of": folders, "members": [b.info for b in bundles], "teacher_fingerprint": fingerprint,
            "task": first.train.task}
    same_test = all(b.test is not None and np.array_equal(b.test.pair_hashes, first.test.pair_hashes)
                    for b in bundles)
    return LogitsBundle(mean("train"), mean("dev"), info, mean("test") if same_test else None)
