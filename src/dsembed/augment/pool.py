"""The sentence pool mining draws from, and the guard that keeps every dev/test sentence out of it.

A mined pair that contains a dev or test sentence would let the teacher's view of that sentence leak
into training, so exclusion is checked twice: once when the pool is built (exact text and a
case/whitespace-normalised form), and once more over the finished output (:func:`check_no_leak`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..data import PairDataset, read_sentences

PathLike = str | os.PathLike[str]

EXCLUSION_CHECK = ("a sentence is excluded when its exact text, or its text with case folded and runs of "
                   "whitespace collapsed to one space, appears as sentence1 or sentence2 of any excluded dataset")


def normalise(text: str) -> str:
    """The form two spellings of one sentence share (case and whitespace differences are not new sentences)."""
    return " ".join(text.split()).casefold()


def read_sentence_pool(path: PathLike, column: str | None = None) -> list[str]:
    """Extra unlabelled sentences: one per line (.txt) or one column of a .tsv/.csv/.jsonl file.

    The strict sentence reader already does exactly this (``file:line: problem`` on bad input);
    this name is kept for the augmentation API.
    """
    return read_sentences(path, column=column)


@dataclass
class SentencePool:
    """Distinct sentences to mine from, in a deterministic order (train rows first, then extras)."""

    sentences: list[str]
    index_of: dict[str, int]  # normalised form -> position in ``sentences``
    record: dict


def excluded_forms(exclude: Sequence[PairDataset]) -> tuple[set[str], set[str]]:
    """The exact texts and normalised forms of every sentence of the excluded datasets."""
    exact: set[str] = set()
    for data in exclude:
        exact.update(data.sentence1)
        exact.update(data.sentence2)
    return exact, {normalise(s) for s in exact}


def build_pool(train: PairDataset, extra_sentences: Iterable[str], exclude: Sequence[PairDataset]) -> SentencePool:
    """Distinct (after normalisation) sentences of ``train`` and the extras, minus every excluded one."""
    exact, normalised = excluded_forms(exclude)
    ordered = [s for pair in zip(train.sentence1, train.sentence2, strict=True) for s in pair]
    n_train = len(ordered)
    ordered.extend(extra_sentences)
    sentences: list[str] = []
    index_of: dict[str, int] = {}
    removed_exact, removed_normalised = 0, 0
    removed_forms: set[str] = set()
    from_train = 0
    for position, text in enumerate(ordered):
        text = text.strip()
        key = normalise(text)
        if not key or key in index_of or key in removed_forms:
            continue
        if text in exact or key in normalised:
            removed_forms.add(key)
            if text in exact:
                removed_exact += 1
            else:
                removed_normalised += 1
            continue
        index_of[key] = len(sentences)
        sentences.append(text)
        from_train += position < n_train
    record = {"pool_size": len(sentences), "pool_from_train": from_train,
              "pool_from_extra": len(sentences) - from_train,
              "excluded": {"datasets": [d.source or f"dataset {i}" for i, d in enumerate(exclude)],
                           "excluded_sentences_known": len(exact),
                           "removed_exact_match": removed_exact, "removed_normalised_match": removed_normalised,
                           "removed_total": removed_exact + removed_normalised, "check": EXCLUSION_CHECK}}
    return SentencePool(sentences, index_of, record)


def check_no_leak(pairs: PairDataset, exclude: Sequence[PairDataset]) -> int:
    """Re-verify the output: raise if any mined sentence is an excluded one; returns how many were checked."""
    exact, normalised = excluded_forms(exclude)
    checked = 0
    for row, (a, b) in enumerate(zip(pairs.sentence1, pairs.sentence2, strict=True)):
        for text in (a, b):
            checked += 1
            if text in exact or normalise(text) in normalised:
                raise RuntimeError(f"mined row {row} contains an excluded (dev/test) sentence: {text[:80]!r}; "
                                   "this is a bug in dsembed.augment")
    return checked
