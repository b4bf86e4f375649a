"""Reading sentence-pair data: local TSV/CSV/JSONL files, the shared GLUE copy, and the HF hub.

Every later stage (teacher scoring, distillation, evaluation) trusts these lists, so reading is
strict: a malformed row is reported with its file and line instead of being silently mangled
(default CSV quoting corrupts MRPC, a stray tab shifts labels). ``skip_bad=True`` trades that
strictness for a count of what was dropped.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import logging
import math
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dsembed.tasks import HF_LABEL_NAMES, TaskSpec, get_task

from ..errors import DataFormatError

logger = logging.getLogger("dsembed.data")

PathLike = str | os.PathLike[str]

MAX_PROBLEMS = 100  # problems kept on a dataset; the count in ``skipped`` is always complete
PAIR_SUFFIXES = (".tsv", ".csv", ".jsonl", ".json")
SENTENCE_SUFFIXES = (".txt", *PAIR_SUFFIXES)
GLUE_SPLITS = ("train", "dev", "test")
GLUE_DIR_ENV = "DSEMBED_GLUE_DIR"


# --------------------------------------------------------------------------------------------------
# PairDataset
# --------------------------------------------------------------------------------------------------


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
            raise ValueError(
                f"sentence1 has {len(self.sentence1)} rows but sentence2 has {len(self.sentence2)}")
        if self.labels is not None:
            labels = np.asarray(self.labels, dtype=np.float32)
            if labels.shape != (len(self.sentence1),):
                raise ValueError(f"labels have shape {labels.shape}, expected ({len(self.sentence1)},)")
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
            raise ValueError(f"subset size must be >= 0, got {n}")
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


# --------------------------------------------------------------------------------------------------
# Low-level reading helpers
# --------------------------------------------------------------------------------------------------


class _Problems:
    """Raise on the first bad row, or (skip_bad) count and remember bad rows."""

    def __init__(self, path: Path, skip_bad: bool) -> None:
        self.path = path
        self.skip_bad = skip_bad
        self.count = 0
        self.messages: list[str] = []

    def bad(self, line: int, problem: str) -> None:
        error = DataFormatError(self.path, line, problem)
        if not self.skip_bad:
            raise error
        self.count += 1
        if len(self.messages) < MAX_PROBLEMS:
            self.messages.append(str(error))

    def log(self) -> None:
        if self.count:
            logger.warning("%s: skipped %d bad row(s); first: %s", self.path, self.count, self.messages[0])


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {path}")
    data = path.read_bytes()
    return data.removeprefix(codecs.BOM_UTF8)


def _decode_lines(path: Path, data: bytes) -> list[tuple[int, str | None, str]]:
    """Split into ``(line_no, text, problem)``; undecodable lines get ``text=None`` and a problem.

    Decoding per line (only when the fast whole-file decode fails) is what lets a bad byte be
    reported at its own line instead of as a file-level error.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raw_lines = data.split(b"\n")
        if raw_lines and raw_lines[-1] == b"":
            raw_lines.pop()
        out: list[tuple[int, str | None, str]] = []
        for number, raw in enumerate(raw_lines, start=1):
            try:
                out.append((number, raw.decode("utf-8").removesuffix("\r"), ""))
            except UnicodeDecodeError as exc:
                snippet = raw[max(0, exc.start - 10):exc.end + 10]
                out.append((number, None, f"invalid UTF-8 at byte {exc.start} of the line ({snippet!r})"))
        return out
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [(number, line.removesuffix("\r"), "") for number, line in enumerate(lines, start=1)]


def _find_column(header: list[str], name: str) -> int | None:
    """Index of ``name`` in the header (exact match first, then case-insensitive)."""
    if name in header:
        return header.index(name)
    lowered = [h.lower() for h in header]
    return lowered.index(name.lower()) if name.lower() in lowered else None


def _label_text(value: Any, task: TaskSpec) -> str | None:
    """A JSON / hub label value as the string ``parse_label`` expects; None means missing."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"label {value!r} is a boolean, not a label")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if task.kind != "regression" and value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"label {value!r} is a {type(value).__name__}, not a string or number")


class _PairBuilder:
    """Validates rows one by one and accumulates the columns of a PairDataset."""

    def __init__(self, path: Path, task: TaskSpec, problems: _Problems, columns: tuple[str, str, str],
                 require_labels: bool) -> None:
        self.path = path
        self.task = task
        self.problems = problems
        self.columns = columns
        self.require_labels = require_labels
        self.sentence1: list[str] = []
        self.sentence2: list[str] = []
        self.labels: list[float] = []
        self.lines: list[int] = []
        self.missing_label_rows: list[int] = []  # row positions (only when labels are optional)
        self._cache: dict[str, float] = {}

    def add(self, line: int, s1: Any, s2: Any, label: str | None) -> None:
        """Add one row or report its first problem; ``label=None`` means the label is absent/empty."""
        for name, value in ((self.columns[0], s1), (self.columns[1], s2)):
            if not isinstance(value, str):
                kind = "null" if value is None else f"a {type(value).__name__}"
                self.problems.bad(line, f"{name} is {kind}, expected a string")
                return
        s1, s2 = s1.strip(), s2.strip()
        if not s1:
            self.problems.bad(line, f"empty {self.columns[0]}")
            return
        if not s2:
            self.problems.bad(line, f"empty {self.columns[1]}")
            return
        label = None if label is None else label.strip()
        if not label:
            if self.require_labels:
                self.problems.bad(line, f"missing label ({self.columns[2]} is empty)")
                return
            value = math.nan
            self.missing_label_rows.append(len(self.labels))
        else:
            cached = self._cache.get(label)
            if cached is None:
                try:
                    cached = self.task.parse_label(label)
                except ValueError as exc:
                    self.problems.bad(line, f"bad label for task {self.task.name!r}: {exc}")
                    return
                self._cache[label] = cached
            value = cached
        self.sentence1.append(s1)
        self.sentence2.append(s2)
        self.labels.append(value)
        self.lines.append(line)

    def finish(self, has_label_column: bool) -> PairDataset:
        """Decide labelled vs unlabelled: all labels absent -> None; a partial mix is an error."""
        labels: np.ndarray | None
        all_missing = bool(self.missing_label_rows) and len(self.missing_label_rows) == len(self.labels)
        if not has_label_column or all_missing:
            labels = None
        else:
            drop = set()
            for row in self.missing_label_rows:
                self.problems.bad(self.lines[row], "missing label (other rows are labelled)")
                drop.add(row)
            if drop:
                keep = [i for i in range(len(self.labels)) if i not in drop]
                self.sentence1 = [self.sentence1[i] for i in keep]
                self.sentence2 = [self.sentence2[i] for i in keep]
                self.labels = [self.labels[i] for i in keep]
            labels = np.asarray(self.labels, dtype=np.float32)
        self.problems.log()
        return PairDataset(self.sentence1, self.sentence2, labels, source=str(self.path),
                           skipped=self.problems.count, problems=list(self.problems.messages))


def _header_problem(header: list[str], needed: Sequence[str], missing: Sequence[str], sep: str) -> str:
    return (f"header does not name column(s) {', '.join(repr(m) for m in missing)} (got {header!r}); "
            f"the first line must be a header such as {sep.join(needed)!r}")


def _tabular_records(path: Path, lines: list[tuple[int, str | None, str]], problems: _Problems,
                     delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_no, fields)`` per non-blank record; TSV is split literally, CSV via ``csv``.

    Undecodable lines go to ``problems`` (the first one, the header, is always fatal).
    """
    good: list[tuple[int, str]] = []
    first_line = True
    for number, text, problem in lines:
        if text is None:
            if first_line:
                raise DataFormatError(path, number, problem)
            problems.bad(number, problem)
            continue
        if first_line and text.strip():
            first_line = False
        good.append((number, text))
    if delimiter == "\t":
        for number, text in good:
            if text.strip():
                yield number, text.split("\t")
        return
    numbers = [number for number, _ in good]
    consumed = 0

    def feed() -> Iterator[str]:
        nonlocal consumed
        for _, text in good:
            consumed += 1
            yield text + "\n"

    reader = csv.reader(feed(), delimiter=delimiter)
    while True:
        start = numbers[consumed] if consumed < len(numbers) else (numbers[-1] if numbers else 1)
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.bad(start, f"CSV error: {exc}")
            continue
        if row and any(cell.strip() for cell in row):
            yield start, row


def _read_tabular(path: Path, task: TaskSpec, problems: _Problems, columns: tuple[str, str, str],
                  require_labels: bool, delimiter: str) -> PairDataset:
    lines = _decode_lines(path, _read_bytes(path))
    records = _tabular_records(path, lines, problems, delimiter)
    sep = "<TAB>" if delimiter == "\t" else delimiter
    first = next(records, None)
    if first is None:
        raise DataFormatError(path, 1, f"file is empty (expected a header line naming {sep.join(columns)})")
    header_line, header_cells = first
    header = [cell.strip() for cell in header_cells]
    needed = list(columns) if require_labels else list(columns[:2])
    found = {name: _find_column(header, name) for name in columns}
    missing = [name for name in needed if found[name] is None]
    if missing:
        raise DataFormatError(path, header_line, _header_problem(header, columns, missing, sep))
    duplicates = sorted({h for h in header if header.count(h) > 1 and h})
    if duplicates:
        raise DataFormatError(path, header_line, f"header repeats column(s) {duplicates!r}")
    i1, i2, il = found[columns[0]], found[columns[1]], found[columns[2]]
    assert i1 is not None and i2 is not None
    width = len(header)
    builder = _PairBuilder(path, task, problems, columns, require_labels)
    for number, cells in records:
        if len(cells) != width:
            tab_hint = len(cells) > width and delimiter == "\t"
            hint = " (a tab inside a sentence, or a quoted field?)" if tab_hint else ""
            problems.bad(number, f"expected {width} columns, got {len(cells)}{hint}")
            continue
        builder.add(number, cells[i1], cells[i2], None if il is None else cells[il])
    return builder.finish(has_label_column=il is not None)


def _json_rows(path: Path, problems: _Problems) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_no, parsed value)`` per non-blank JSON line; bad lines go to ``problems``."""
    lines = _decode_lines(path, _read_bytes(path))
    seen_any = False
    for number, text, problem in lines:
        if text is None:
            seen_any = True
            problems.bad(number, problem)
            continue
        if not text.strip():
            continue
        if not seen_any and text.lstrip().startswith("[") and path.suffix.lower() == ".json":
            raise DataFormatError(path, number, "expected JSON lines (one object per line), got a JSON array")
        seen_any = True
        try:
            yield number, json.loads(text)
        except json.JSONDecodeError as exc:
            problems.bad(number, f"invalid JSON: {exc.msg} (column {exc.colno})")
    if not seen_any:
        raise DataFormatError(path, 1, "file is empty (expected one JSON object per line)")


def _read_jsonl(path: Path, task: TaskSpec, problems: _Problems, columns: tuple[str, str, str],
                require_labels: bool) -> PairDataset:
    builder = _PairBuilder(path, task, problems, columns, require_labels)
    any_label_key = False
    for number, obj in _json_rows(path, problems):
        if not isinstance(obj, dict):
            problems.bad(number, f"expected a JSON object, got {type(obj).__name__}")
            continue
        needed = columns if require_labels else columns[:2]
        missing = [key for key in needed if key not in obj]
        if missing:
            problems.bad(number, f"missing key {missing[0]!r}")
            continue
        any_label_key = any_label_key or obj.get(columns[2]) is not None
        try:
            label = _label_text(obj.get(columns[2]), task)
        except (TypeError, ValueError) as exc:
            problems.bad(number, f"bad label for task {task.name!r}: {exc}")
            continue
        builder.add(number, obj[columns[0]], obj[columns[1]], label)
    return builder.finish(has_label_column=any_label_key)


# --------------------------------------------------------------------------------------------------
# Public readers
# --------------------------------------------------------------------------------------------------


def read_pairs(path: PathLike, task: TaskSpec, *, skip_bad: bool = False, require_labels: bool = True,
               columns: tuple[str, str, str] = ("sentence1", "sentence2", "label")) -> PairDataset:
    """Read a pair file (.tsv without quoting, .csv with quoting, .jsonl/.json lines), strictly.

    Raises DataFormatError naming file, line and problem for the first bad row, unless
    ``skip_bad`` (then bad rows are counted in ``.skipped``/``.problems`` and logged).
    With ``require_labels=False`` the label column/key may be absent (``labels`` is then None).
    """
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in PAIR_SUFFIXES:
        raise ValueError(
            f"{file}: unsupported pair file type {suffix!r} (use one of {', '.join(PAIR_SUFFIXES)})")
    problems = _Problems(file, skip_bad)
    if suffix in (".jsonl", ".json"):
        return _read_jsonl(file, task, problems, columns, require_labels)
    return _read_tabular(file, task, problems, columns, require_labels, "\t" if suffix == ".tsv" else ",")


def read_sentences(path: PathLike, column: str | None = None) -> list[str]:
    """Read single sentences (e.g. retrieval candidates); order matters, so blanks are errors.

    .txt: one sentence per line (trailing blank lines at the end of the file are ignored);
    .tsv/.csv: ``column`` (default "sentence" if the header has it, else the first column);
    .jsonl/.json: key ``column`` (default "sentence"), or lines that are bare JSON strings.
    """
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in SENTENCE_SUFFIXES:
        raise ValueError(f"{file}: unsupported sentence file type {suffix!r} "
                         f"(use one of {', '.join(SENTENCE_SUFFIXES)})")
    problems = _Problems(file, skip_bad=False)
    out: list[str] = []
    if suffix == ".txt":
        lines = _decode_lines(file, _read_bytes(file))
        while lines and lines[-1][1] is not None and not lines[-1][1].strip():
            lines.pop()
        if not lines:
            raise DataFormatError(file, 1, "file is empty (expected one sentence per line)")
        for number, text, problem in lines:
            if text is None:
                raise DataFormatError(file, number, problem)
            if not text.strip():
                raise DataFormatError(file, number, "blank line (every line must hold one sentence)")
            out.append(text.strip())
        return out
    if suffix in (".jsonl", ".json"):
        key = column or "sentence"
        for number, obj in _json_rows(file, problems):
            if isinstance(obj, dict):
                if key not in obj:
                    hint = "" if column else " (pass column=... to choose another key)"
                    raise DataFormatError(file, number, f"missing key {key!r}{hint}")
                value = obj[key]
            elif isinstance(obj, str):
                value = obj
            else:
                raise DataFormatError(
                    file, number, f"expected a JSON object or string, got {type(obj).__name__}")
            if not isinstance(value, str):
                kind = "null" if value is None else f"a {type(value).__name__}"
                raise DataFormatError(file, number, f"{key} is {kind}, expected a string")
            if not value.strip():
                raise DataFormatError(file, number, f"empty {key}")
            out.append(value.strip())
        return out
    delimiter = "\t" if suffix == ".tsv" else ","
    records = _tabular_records(file, _decode_lines(file, _read_bytes(file)), problems, delimiter)
    first = next(records, None)
    if first is None:
        raise DataFormatError(file, 1, "file is empty (expected a header line)")
    header_line, header_cells = first
    header = [cell.strip() for cell in header_cells]
    if column is None:
        index = _find_column(header, "sentence")
        index = 0 if index is None else index
    else:
        index = _find_column(header, column)
        if index is None:
            raise DataFormatError(file, header_line, f"header has no column {column!r} (got {header!r})")
    name = header[index]
    for number, cells in records:
        if len(cells) != len(header):
            raise DataFormatError(file, number, f"expected {len(header)} columns, got {len(cells)}")
        value = cells[index].strip()
        if not value:
            raise DataFormatError(file, number, f"empty {name}")
        out.append(value)
    return out


# --------------------------------------------------------------------------------------------------
# GLUE: shared local copy or the Hugging Face hub
# --------------------------------------------------------------------------------------------------


def default_glue_dir() -> Path:
    """Where the offline GLUE copy lives: $DSEMBED_GLUE_DIR, else a ``shared/data/glue`` nearby."""
    env = os.environ.get(GLUE_DIR_ENV)
    if env:
        return Path(env)
    cwd = Path.cwd()
    repo_root = Path(__file__).resolve().parents[2]
    candidates = [cwd / "shared" / "data" / "glue", cwd.parent / "shared" / "data" / "glue",
                  repo_root.parent / "shared" / "data" / "glue"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"no local GLUE data directory found (tried {tried}); set {GLUE_DIR_ENV}=/path/to/glue, "
        "pass data_dir=..., or load from the Hugging Face hub with source='hub' (needs network)")


def _as_task(task: TaskSpec | str) -> TaskSpec:
    return get_task(task) if isinstance(task, str) else task


def load_glue(task: TaskSpec | str, split: str, *, data_dir: PathLike | None = None, source: str = "auto",
              skip_bad: bool = False) -> PairDataset:
    """A GLUE split from the local copy (``<dir>/<task.local_dir>/<split>.tsv``) or the hub.

    ``source="auto"`` prefers the local file so that runs work offline and are reproducible.
    """
    spec = _as_task(task)
    allowed = sorted(set(GLUE_SPLITS) | set(spec.hf_splits))
    if split not in allowed:
        raise ValueError(
            f"unknown split {split!r} for task {spec.name!r} (expected one of {', '.join(allowed)})")
    if source not in ("auto", "local", "hub"):
        raise ValueError(f"source must be 'auto', 'local' or 'hub', got {source!r}")
    if source == "hub":
        return load_hf_pairs(spec, split)

    local_file: Path | None = None
    reason = ""
    if spec.local_dir is None:
        reason = f"task {spec.name!r} has no local GLUE folder"
    else:
        try:
            root = Path(data_dir) if data_dir is not None else default_glue_dir()
        except FileNotFoundError as exc:
            reason = str(exc)
        else:
            local_file = root / spec.local_dir / f"{split}.tsv"
            if not local_file.is_file():
                reason = f"{local_file} not found"
    if not reason and local_file is not None:
        return read_pairs(local_file, spec, skip_bad=skip_bad, require_labels=split != "test")
    if source == "local" or spec.hf_path is None:
        raise FileNotFoundError(f"GLUE {spec.name} {split}: {reason}; provide the file (or data_dir=/"
                                f"{GLUE_DIR_ENV}), or use source='hub' to download it (needs network access)")
    logger.info("GLUE %s %s: %s; loading from the Hugging Face hub", spec.name, split, reason)
    try:
        return load_hf_pairs(spec, split)
    except Exception as exc:  # offline, hub down, missing datasets package...
        raise FileNotFoundError(f"GLUE {spec.name} {split}: {reason}, and loading it from the hub "
                                f"(source='hub', needs network access) failed: {exc}") from exc


def load_hf_pairs(task: TaskSpec | str, split: str, *, path: str | None = None, name: str | None = None,
                  columns: tuple[str, str, str] | None = None, **load_kwargs: Any) -> PairDataset:
    """Pairs via ``datasets.load_dataset`` (hub id, local folder, or a builder like "json").

    Hub class ids are mapped to our label order through ``HF_LABEL_NAMES`` (GLUE's RTE says
    0 = entailment; ours says 1). A split whose labels are all -1 (GLUE test) gets ``labels=None``.
    ``name`` defaults to ``task.hf_config`` only when ``path`` is the task's own hub dataset,
    so ``path="json", data_files=...`` works for any task.
    """
    spec = _as_task(task)
    dataset_path = path or spec.hf_path
    if dataset_path is None:
        raise ValueError(f"task {spec.name!r} has no Hugging Face dataset; pass path=...")
    if name is None and dataset_path == spec.hf_path:
        name = spec.hf_config
    hf_split = spec.hf_splits.get(split, split)
    c1, c2, cl = columns or spec.hf_columns

    import datasets  # heavy; only needed here

    ds = datasets.load_dataset(dataset_path, name, split=hf_split, **load_kwargs)
    source = "hub:" + "/".join(part for part in (dataset_path, name, hf_split) if part)
    missing = [c for c in (c1, c2) if c not in ds.column_names]
    if missing:
        raise ValueError(f"{source}: no column(s) {missing!r} (has {ds.column_names!r}); pass columns=...")
    s1_all = [str(x).strip() if x is not None else "" for x in ds[c1]]
    s2_all = [str(x).strip() if x is not None else "" for x in ds[c2]]
    raw_labels: list[Any] | None = list(ds[cl]) if cl in ds.column_names else None

    labels: list[float] | None = None
    if raw_labels is not None and not all(_is_unlabelled(v) for v in raw_labels):
        feature = ds.features.get(cl)
        hub_names = HF_LABEL_NAMES.get(spec.name) or tuple(getattr(feature, "names", None) or ())
        labels = _map_hub_labels(raw_labels, spec, hub_names, source)

    keep = [i for i in range(len(s1_all)) if s1_all[i] and s2_all[i]]
    problems = [f"{source}:row {i}: empty {c1 if not s1_all[i] else c2}" for i in range(len(s1_all))
                if not (s1_all[i] and s2_all[i])]
    if problems:
        logger.warning("%s: skipped %d row(s) with an empty sentence; first: %s",
                       source, len(problems), problems[0])
        s1_all = [s1_all[i] for i in keep]
        s2_all = [s2_all[i] for i in keep]
        labels = None if labels is None else [labels[i] for i in keep]
    return PairDataset(s1_all, s2_all, None if labels is None else np.asarray(labels, dtype=np.float32),
                       source=source, skipped=len(problems), problems=problems[:MAX_PROBLEMS])


def _is_unlabelled(value: Any) -> bool:
    """GLUE test splits on the hub mark unknown labels as -1 (also -1.0 for STS-B)."""
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool) and value == -1)


def _map_hub_labels(raw: list[Any], task: TaskSpec, hub_names: tuple[str, ...], source: str) -> list[float]:
    """Hub label values -> our float labels, via the hub's class names for integer class ids."""
    cache: dict[Any, float] = {}
    out: list[float] = []
    for row, value in enumerate(raw):
        key = (type(value), value)
        if key not in cache:
            try:
                if _is_unlabelled(value):
                    raise ValueError("label -1 (unlabelled) in a labelled split")
                class_id = isinstance(value, int) and not isinstance(value, bool)
                if class_id and hub_names and task.kind != "regression":
                    if not 0 <= value < len(hub_names):
                        raise ValueError(f"class id {value} outside the hub's {len(hub_names)} classes")
                    text = hub_names[value]
                else:
                    text = _label_text(value, task)
                    if text is None:
                        raise ValueError("missing label")
                cache[key] = task.parse_label(text)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{source}:row {row}: {exc}") from None
        out.append(cache[key])
    return out
