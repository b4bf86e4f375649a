"""GLUE pairs from the shared local copy (``<dir>/<TASK>/<split>.tsv``) or from the Hugging Face hub.

The local copy comes first so that runs work offline and are reproducible; the hub is the fallback
(``source="auto"``) or an explicit choice (``source="hub"``). Hub datasets number classes their own
way (GLUE's RTE says 0 = entailment; ours says 1), so hub labels go through the hub's class names.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputNotFoundError
from ..tasks import HF_LABEL_NAMES, TaskSpec, get_task
from .pairs import PairDataset
from .readers import label_text, read_pairs
from .records import MAX_PROBLEMS
from .validate import check_text, data_error, number_problem

logger = logging.getLogger("dsembed.data")

PathLike = str | os.PathLike[str]

GLUE_SPLITS = ("train", "dev", "test")
GLUE_DIR_ENV = "DSEMBED_GLUE_DIR"
GLUE_SOURCES = ("auto", "local", "hub")
# Where the shared copy sits relative to the working directory: a checkout run from its root has
# ``shared/`` beside it, so ``../shared``; a run from the folder holding ``shared/`` finds ``./shared``.
_SHARED_GLUE = Path("shared") / "data" / "glue"


def default_glue_dir(data_dir: PathLike | None = None) -> Path:
    """The local GLUE folder: ``data_dir``, else ``$DSEMBED_GLUE_DIR``, else a shared copy near the cwd.

    Only the working directory is searched (``./shared/data/glue``, then ``../shared/data/glue``),
    never the install location, so that an installed package finds the same data as a checkout.
    """
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get(GLUE_DIR_ENV)
    if env:
        return Path(env)
    cwd = Path.cwd()
    candidates = [cwd / _SHARED_GLUE, cwd.parent / _SHARED_GLUE]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise InputNotFoundError(
        f"no local GLUE data directory found (tried {tried}); set {GLUE_DIR_ENV}=/path/to/glue or pass "
        "--data-dir (data_dir=... in Python), or load from the Hugging Face hub with source='hub' (needs network)")


def _as_task(task: TaskSpec | str) -> TaskSpec:
    if not isinstance(task, str):
        return task
    return get_task(task)


def _local_glue_file(spec: TaskSpec, split: str, data_dir: PathLike | None) -> tuple[Path | None, str]:
    """The local file of a split, or ``None`` and why not (the reason ends up in the error message)."""
    if spec.local_dir is None:
        return None, f"task {spec.name!r} has no local GLUE folder"
    try:
        root = default_glue_dir(data_dir)
    except FileNotFoundError as exc:
        return None, str(exc)
    local_file = root / spec.local_dir / f"{split}.tsv"
    if not local_file.is_file():
        return None, f"{local_file} not found"
    return local_file, ""


def load_glue(task: TaskSpec | str, split: str, *, data_dir: PathLike | None = None, source: str = "auto",
              skip_bad: bool = False) -> PairDataset:
    """A GLUE split from the local copy (``<dir>/<task.local_dir>/<split>.tsv``) or the hub.

    ``source="auto"`` prefers the local file so that runs work offline and are reproducible.
    """
    spec = _as_task(task)
    allowed = sorted(set(GLUE_SPLITS) | set(spec.hf_splits))
    if split not in allowed:
        raise ConfigError(
            f"unknown split {split!r} for task {spec.name!r} (expected one of {', '.join(allowed)})")
    if source not in GLUE_SOURCES:
        raise ConfigError(f"source must be 'auto', 'local' or 'hub', got {source!r}")
    if source == "hub":
        return load_hf_pairs(spec, split)

    local_file, reason = _local_glue_file(spec, split, data_dir)
    if local_file is not None:
        return read_pairs(local_file, spec, skip_bad=skip_bad, require_labels=split != "test")
    if source == "local" or spec.hf_path is None:
        raise InputNotFoundError(f"GLUE {spec.name} {split}: {reason}; provide the file (or data_dir=/"
                                 f"{GLUE_DIR_ENV}), or use source='hub' to download it (needs network access)")
    logger.info("GLUE %s %s: %s; loading from the Hugging Face hub", spec.name, split, reason)
    try:
        return load_hf_pairs(spec, split)
    except Exception as exc:  # offline, hub down, missing datasets package...
        raise InputNotFoundError(f"GLUE {spec.name} {split}: {reason}, and loading it from the hub "
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
        raise ConfigError(f"task {spec.name!r} has no Hugging Face dataset; pass path=...")
    if name is None and dataset_path == spec.hf_path:
        name = spec.hf_config
    hf_split = spec.hf_splits.get(split, split)
    c1, c2, cl = columns or spec.hf_columns

    import datasets  # heavy; only needed here

    source = "hub:" + "/".join(part for part in (dataset_path, name, hf_split) if part)
    try:
        ds = datasets.load_dataset(dataset_path, name, split=hf_split, **load_kwargs)
    except FileNotFoundError as exc:  # no such local folder / data file / hub dataset (DatasetNotFoundError)
        raise InputNotFoundError(f"{source}: {exc}") from exc
    missing = [c for c in (c1, c2) if c not in ds.column_names]
    if missing:
        raise ConfigError(f"{source}: no column(s) {missing!r} (has {ds.column_names!r}); pass columns=...")
    s1_all = [str(x).strip() if x is not None else "" for x in ds[c1]]
    s2_all = [str(x).strip() if x is not None else "" for x in ds[c2]]
    for column, texts in ((c1, s1_all), (c2, s2_all)):  # the checks every file reader applies, too
        for row, text in enumerate(texts):
            check_text(text, (source, row + 1), f"{column} (row {row}, counting from 0)")
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
                cache[key] = _hub_label(value, task, hub_names)
            except (TypeError, ValueError) as exc:
                # DataFormatError lines count from 1; the hub's row index (from 0) stays in the message.
                raise data_error(source, row + 1, f"{exc} (row {row}, counting from 0)") from None
        out.append(cache[key])
    return out


def _hub_label(value: Any, task: TaskSpec, hub_names: tuple[str, ...]) -> float:
    """One hub label value as our float label; ValueError/TypeError say why it is not one."""
    if _is_unlabelled(value):
        raise ValueError("label -1 (unlabelled) in a labelled split")
    class_id = isinstance(value, int) and not isinstance(value, bool)
    if class_id and hub_names and task.kind != "regression":
        if not 0 <= value < len(hub_names):
            raise ValueError(f"class id {value} outside the hub's {len(hub_names)} classes")
        return task.parse_label(hub_names[value])
    text = label_text(value, task)
    if text is None:
        raise ValueError("missing label")
    number = task.parse_label(text)
    problem = number_problem(number, f"label {text!r}")
    if problem is not None:
        raise ValueError(problem)
    return number
