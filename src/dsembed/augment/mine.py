"""``mine_pairs``: unlabelled sentence pairs for a teacher to score, and ``MinedPairs``, their file form.

Labelled pairs are the only rows a label-only student can learn from; a teacher can score any pair.
Mining recombines the training sentences (plus any extra unlabelled ones) into new pairs, never with
a dev/test sentence, never repeating a labelled pair (either order, except ``swap``, whose point is
the other order), never twice, never a sentence with itself.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..artifacts import MINED_RECORD_SUFFIX
from ..data import PairDataset, read_pairs
from ..data.records import Problems, json_rows
from ..data.validate import shown
from ..errors import ConfigError, InputNotFoundError
from ..tasks import custom_task
from ..utils import atomic_write_bytes, atomic_write_json
from .pool import SentencePool, build_pool, check_no_leak, normalise
from .strategies import (
    STRATEGIES,
    Proposals,
    embedding_encoder,
    propose_bm25,
    propose_embedding,
    propose_random,
    propose_swap,
)

logger = logging.getLogger("dsembed.augment")

PathLike = str | os.PathLike[str]
_MISSING = object()
_UNLABELLED = custom_task("mined", "regression")  # the pair reader wants a task; mined rows carry no label


def record_path(path: PathLike) -> Path:
    """The sidecar record of a mined-pairs file: ``mined.jsonl`` -> ``mined.record.json``."""
    return Path(path).with_suffix(MINED_RECORD_SUFFIX)


@dataclass
class MinedPairs:
    """Unlabelled pairs (``labels`` is None), the strategy that proposed each row, and how they were mined."""

    pairs: PairDataset
    strategy: list[str]
    record: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.strategy) != len(self.pairs):
            raise ConfigError(f"{len(self.pairs)} mined pairs but {len(self.strategy)} strategy names")

    def __len__(self) -> int:
        return len(self.pairs)

    def save(self, path: PathLike) -> Path:
        """JSON lines ``{sentence1, sentence2, strategy}`` written atomically, plus the record beside them."""
        path = Path(path)
        lines = (json.dumps({"sentence1": a, "sentence2": b, "strategy": s}, ensure_ascii=False)
                 for a, b, s in zip(self.pairs.sentence1, self.pairs.sentence2, self.strategy, strict=True))
        atomic_write_bytes(path, "".join(f"{line}\n" for line in lines).encode("utf-8", "surrogatepass"))
        atomic_write_json(record_path(path), {**self.record, "pairs_fingerprint": self.pairs.fingerprint(),
                                              "rows": len(self)})
        return path

    @classmethod
    def load(cls, path: PathLike) -> MinedPairs:
        """Read a mined file back through dsembed's strict readers (a bad line is a ``file:line`` error)."""
        path = Path(path)
        if not path.is_file():
            raise InputNotFoundError(f"{path}: no such mined-pairs file")
        pairs = read_pairs(path, _UNLABELLED, require_labels=False)
        strategy = []
        for line, obj in json_rows(path, Problems(path, skip_bad=False)):
            name = obj.get("strategy", _MISSING) if isinstance(obj, dict) else None
            if name not in STRATEGIES:
                problem = "missing key 'strategy'" if name is _MISSING else f"strategy is {shown(name)}"
                Problems(path, skip_bad=False).bad(line, f"{problem}, expected one of {', '.join(STRATEGIES)}")
            strategy.append(name)
        pairs.labels = None
        return cls(pairs, strategy, _sidecar_record(path, pairs))

    def select(self, indices: Sequence[int] | np.ndarray) -> MinedPairs:
        """The rows at ``indices``, strategies kept aligned."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        return MinedPairs(self.pairs.select(idx), [self.strategy[i] for i in idx], dict(self.record))

    def restrict(self, strategies: Sequence[str] | None = None, max_pairs: int | None = None,
                 source: str = "mined pairs") -> MinedPairs:
        """The rows a training budget will use (:func:`budget_rows`): score only those, and add more later."""
        kept = self.select(budget_rows(self.pairs, self.strategy, strategies, max_pairs, source))
        kept.record["restricted"] = {"strategies": sorted(strategies) if strategies is not None else None,
                                     "max_pairs": max_pairs, "of_rows": len(self), "rows": len(kept)}
        return kept


def budget_rows(pairs: PairDataset, strategy: Sequence[str], strategies: Sequence[str] | None = None,
                max_pairs: int | None = None, source: str = "mined pairs") -> np.ndarray:
    """Rows of the pairs ``strategies`` found, then at most ``max_pairs`` of them, in their order.

    The budget keeps the pairs with the smallest pair hashes: no seed is involved and a smaller
    budget is always a subset of a larger one, so ×3 and ×10 rows differ only by the added pairs, and
    pairs scored for a budget are exactly those a training run with that budget picks from the bundle.
    """
    keep = np.arange(len(pairs))
    if strategies is not None:
        wanted = {s.strip() for s in strategies if s.strip()}
        present = sorted(set(strategy))
        unknown = sorted(wanted - set(present))
        if unknown:
            raise ConfigError(f"{source} has no pairs of strategy {', '.join(unknown)} "
                              f"(it holds {', '.join(present) or 'none'})")
        keep = np.array([i for i in keep if strategy[i] in wanted], dtype=np.int64)
    if max_pairs is not None:
        if max_pairs < 1:
            raise ConfigError(f"a mined-pair budget must keep at least one pair, got {max_pairs}")
        if len(keep) > max_pairs:
            hashes = pairs.pair_hashes()[keep]
            keep = np.sort(keep[np.argsort(hashes, kind="stable")[:max_pairs]])
    return keep


def _sidecar_record(path: Path, pairs: PairDataset) -> dict:
    """The mining record beside ``path``, or {} when it is missing, unreadable or about other pairs."""
    sidecar = record_path(path)
    if not sidecar.is_file():
        return {}
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        logger.warning("%s: unreadable (%s); the pairs load without their record", sidecar, exc)
        return {}
    if not isinstance(record, dict) or record.get("pairs_fingerprint", pairs.fingerprint()) != pairs.fingerprint():
        logger.warning("%s: the record beside it describes other pairs; ignoring it", sidecar)
        return {}
    return record


class _Deduper:
    """Decides whether a proposed pair is new: not a labelled pair, not already mined, not a self pair."""

    def __init__(self, labelled: Sequence[tuple[int, int]]) -> None:
        self.labelled_ordered = set(labelled)
        self.labelled_any = self.labelled_ordered | {(b, a) for a, b in labelled}
        self.mined_ordered: set[tuple[int, int]] = set()
        self.mined_any: set[tuple[int, int]] = set()

    def reason_to_drop(self, pair: tuple[int, int], strategy: str) -> str | None:
        a, b = pair
        if a == b:
            return "self"
        if strategy == "swap":  # its purpose is the other order: only the exact same order is a repeat
            if pair in self.labelled_ordered:
                return "labelled"
            return "duplicate" if pair in self.mined_ordered else None
        if pair in self.labelled_any:
            return "labelled"
        return "duplicate" if pair in self.mined_any or (b, a) in self.mined_ordered else None

    def add(self, pair: tuple[int, int]) -> None:
        self.mined_ordered.add(pair)
        self.mined_any.update((pair, pair[::-1]))


def mining_budgets(strategies: Sequence[str], per_sentence: int | dict[str, int]) -> dict[str, int]:
    """Per-strategy budgets, checked: known names, no repeats, non-negative counts."""
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise ConfigError(f"unknown or no mining strategy {unknown or ''} (choose from {', '.join(STRATEGIES)})")
    if len(set(strategies)) != len(strategies):
        raise ConfigError(f"strategy listed twice in {list(strategies)}")
    if isinstance(per_sentence, dict):
        extra = sorted(set(per_sentence) - set(strategies))
        if extra:
            raise ConfigError(f"budget given for strategy {extra[0]!r}, which is not among {list(strategies)}")
        budgets = {s: per_sentence.get(s, 2) for s in strategies}
    else:
        budgets = dict.fromkeys(strategies, per_sentence)
    bad = {s: n for s, n in budgets.items() if not isinstance(n, int) or isinstance(n, bool) or n < 0}
    if bad:
        raise ConfigError(f"budgets must be whole numbers >= 0, got {bad}")
    return budgets


def check_pairing(pairing: str, budgets: dict[str, int]) -> None:
    """A known pairing, and no swapped pairs where the two sides mean different things."""
    if pairing not in PAIRINGS:
        raise ConfigError(f"unknown pairing {pairing!r} (choose from {', '.join(PAIRINGS)})")
    if pairing == "cross" and budgets.get("swap", 0) > 0:
        raise ConfigError("cross pairing joins a sentence1 with a sentence2: swapped pairs would put them the "
                          "other way round; leave swap out of the strategies")


def _labelled_indices(train: PairDataset, pool: SentencePool) -> list[tuple[int, int]]:
    """Labelled pairs as pool indices (pairs with an excluded sentence have none, and are left out)."""
    out = []
    for a, b in zip(train.sentence1, train.sentence2, strict=True):
        i, j = pool.index_of.get(normalise(a)), pool.index_of.get(normalise(b))
        if i is not None and j is not None:
            out.append((i, j))
    return out


PAIRINGS = ("any", "cross")


def _cross_sides(train: PairDataset, extra_sentences: Sequence[str], pool: SentencePool) -> tuple[list[int], list[int]]:
    """Cross pairing: sources = the pool's sentence1 texts, targets = its sentence2 texts and the extras."""
    def indices(texts: Sequence[str]) -> set[int]:
        return {i for i in (pool.index_of.get(normalise(t)) for t in texts) if i is not None}

    return sorted(indices(train.sentence1)), sorted(indices(train.sentence2) | indices(extra_sentences))


def _proposals(strategy: str, pool: SentencePool, budget: int, labelled: list[tuple[int, int]], seed: int,
               encoder: str | None, settings: dict,
               sides: tuple[list[int], list[int]] | None = None) -> Proposals:
    sources, targets = sides if sides is not None else (None, None)
    if strategy == "random":
        return propose_random(len(pool.sentences), budget, seed, sources, targets)
    if strategy == "bm25":
        return propose_bm25(pool.sentences, budget, sources, targets)
    if strategy == "embedding":
        encode, described = embedding_encoder(encoder)
        settings["encoder"] = described
        return propose_embedding(pool.sentences, budget, encode, sources, targets)
    return propose_swap(labelled)


def _take(proposals: Proposals, budget: int, strategy: str, dedupe: _Deduper,
          kept: list[tuple[int, int, str]]) -> dict:
    """Keep up to ``budget`` new pairs per source; count what was requested, kept and dropped (and why)."""
    counts = {"sources": 0, "requested": 0, "proposed": 0, "kept": 0,
              "dropped": {"self": 0, "labelled": 0, "duplicate": 0}}
    for _source, candidates in proposals:
        counts["sources"] += 1
        wanted = budget if strategy != "swap" else min(budget, len(candidates))
        counts["requested"] += wanted
        taken = 0
        for pair in candidates:
            if taken == wanted:
                break
            counts["proposed"] += 1
            reason = dedupe.reason_to_drop(pair, strategy)
            if reason:
                counts["dropped"][reason] += 1
                continue
            dedupe.add(pair)
            kept.append((pair[0], pair[1], strategy))
            taken += 1
        counts["kept"] += taken
    counts["deduped"] = sum(counts["dropped"].values())
    counts["short"] = counts["requested"] - counts["kept"]
    return counts


def mine_pairs(train: PairDataset, *, strategies: Sequence[str] = ("random", "bm25", "embedding", "swap"),
               per_sentence: int | dict[str, int] = 2, extra_sentences: Sequence[str] = (),
               exclude: Sequence[PairDataset] = (), encoder: str | None = None, seed: int = 42,
               max_pairs: int | None = None, pairing: str = "any") -> MinedPairs:
    """New unlabelled pairs from ``train``'s sentences (and ``extra_sentences``), none with an excluded one.

    ``per_sentence`` is each strategy's budget per source sentence (one number, or ``{strategy: n}``,
    unnamed strategies 2): random/bm25/embedding keep up to n new partners for every pool sentence;
    swap keeps up to n reversed labelled pairs per first sentence (0 turns a strategy off).
    Same inputs and seed give the same rows in the same order. ``max_pairs`` keeps a seeded uniform
    sample of the mined rows (in mined order), so every strategy keeps its share.

    ``pairing="cross"`` is for tasks whose two sides differ (QNLI's question and answer sentence, a query
    and a passage): every mined pair joins a sentence1 with a sentence2 (or an extra sentence), in that
    order, so the student sees the kind of pair it will rank. Swapping has no meaning there.
    """
    started = time.perf_counter()
    budgets = mining_budgets(list(strategies), per_sentence)
    check_pairing(pairing, budgets)
    if max_pairs is not None and max_pairs < 0:
        raise ConfigError(f"max_pairs must be >= 0, got {max_pairs}")
    pool = build_pool(train, extra_sentences, exclude)
    labelled = _labelled_indices(train, pool)
    sides = _cross_sides(train, extra_sentences, pool) if pairing == "cross" else None
    dedupe, kept = _Deduper(labelled), []
    settings: dict = {"strategies": list(budgets), "per_sentence": budgets, "seed": seed, "max_pairs": max_pairs,
                      "train": train.source, "train_pairs": len(train), "extra_sentences": len(extra_sentences),
                      "pairing": pairing}
    if sides is not None:
        settings["cross_sides"] = {"sources": len(sides[0]), "targets": len(sides[1])}
    per_strategy: dict[str, dict] = {}
    for strategy, budget in budgets.items():
        t0 = time.perf_counter()
        counts = {"sources": 0, "requested": 0, "proposed": 0, "kept": 0, "deduped": 0, "short": 0}
        if budget > 0 and len(pool.sentences) > 1 and (sides is None or (sides[0] and sides[1])):
            proposals = _proposals(strategy, pool, budget, labelled, seed, encoder, settings, sides)
            counts = _take(proposals, budget, strategy, dedupe, kept)
        counts["seconds"] = round(time.perf_counter() - t0, 3)
        per_strategy[strategy] = counts
        logger.info("mined %d %s pairs in %.1f s", counts["kept"], strategy, counts["seconds"])
    rows = np.arange(len(kept))
    if max_pairs is not None and max_pairs < len(kept):
        rows = np.sort(np.random.default_rng([seed, 1]).choice(len(kept), size=max_pairs, replace=False))
    texts = pool.sentences
    pairs = PairDataset([texts[kept[r][0]] for r in rows], [texts[kept[r][1]] for r in rows], None,
                        source=f"mined from {train.source or 'train'}")
    strategy_of = [kept[r][2] for r in rows]
    checked = check_no_leak(pairs, exclude)
    record = {"settings": settings, "per_strategy": per_strategy, **pool.record,
              "labelled_pairs_in_pool": len(labelled),
              "mined_before_cap": len(kept), "rows": len(pairs),
              "kept_per_strategy": {s: strategy_of.count(s) for s in budgets},
              "leak_check": {"sentences_checked": checked, "violations": 0},
              "wall_seconds": round(time.perf_counter() - started, 3)}
    return MinedPairs(pairs, strategy_of, record)
