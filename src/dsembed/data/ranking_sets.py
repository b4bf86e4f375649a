"""Retrieval benchmark sets built from labelled pair files: queries, candidates, graded relevance.

A pair file says which sentence pairs belong together; a retrieval set asks a harder question: can a
method find those partners among *every* sentence of the split? Queries are the ``sentence1`` of the
relevant pairs, candidates every distinct sentence of the split, and relevance comes from the gold
column only (never from a list kept here). Each query's own sentence is removed from its candidates
(it would trivially rank first in a symmetric task).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..tasks import TaskSpec, custom_task, get_task
from .glue import load_glue
from .pairs import PairDataset
from .readers import read_pairs

PathLike = str | os.PathLike[str]

BUILTIN_SETS = ("mrpc-test", "stsb-test", "qnli-bench")
STS_RELEVANT_MIN = 4.0  # an STS-B pair scored 4 or more ("mostly equivalent") makes a query relevant
SELF_EXCLUSION = "each query's own sentence is removed from its candidate list"
UNSEEN_ANSWER_SUBSET = "answer not in the train half"  # qnli-bench queries whose relevant sentence no student saw


@dataclass
class RankingSet:
    """Queries against one shared candidate list.

    ``relevance[q]`` maps candidate index -> gain; ``exclude[q]`` is the candidate index of query q's
    own text (-1 when it is not a candidate); ``relevant_min`` is the gain at which a candidate counts
    as relevant for MRR and recall (nDCG uses the gains).
    """

    name: str
    queries: list[str]
    candidates: list[str]
    relevance: list[dict[int, float]]
    exclude: list[int]
    relevant_min: float
    gain_rule: str
    source: str = ""
    kind: str = "binary"  # the gold column's kind: binary labels or regression scores (what a teacher must output)
    task: str | None = None  # the GLUE task whose teacher fits, when the set comes from one
    extra: dict[str, Any] = field(default_factory=dict)
    # named groups of query indices whose metrics are also reported apart (e.g. queries whose answer the
    # students never saw in training): a check that a mean is not carried by one kind of query
    query_subsets: dict[str, list[int]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """What a result record says about the set (sizes, rules, a hash of the queries)."""
        digest = hashlib.sha256("\n".join(self.queries).encode("utf-8", "surrogatepass")).hexdigest()
        relevant = sum(sum(g >= self.relevant_min for g in r.values()) for r in self.relevance)
        return {"name": self.name, "source": self.source, "kind": self.kind, "task": self.task,
                "queries": len(self.queries),
                "candidates": len(self.candidates), "relevant_pairs": int(relevant),
                "graded_pairs": int(sum(len(r) for r in self.relevance)), "relevant_min": self.relevant_min,
                "gain_rule": self.gain_rule, "self_exclusion": SELF_EXCLUSION, "queries_sha256": digest,
                **({"query_subsets": {k: len(v) for k, v in self.query_subsets.items()}} if self.query_subsets
                   else {}), **self.extra}


def _pair_gains(data: PairDataset, graded: bool, positive: float, symmetric: bool) -> dict[tuple[str, str], float]:
    """(query text, candidate text) -> gain from the gold column; a repeated pair keeps its highest gain."""
    if data.labels is None:
        raise ConfigError(f"{data.source}: a retrieval set needs a gold label or score column")
    gains: dict[tuple[str, str], float] = {}
    for s1, s2, label in zip(data.sentence1, data.sentence2, data.labels.tolist(), strict=True):
        gain = round(float(label), 6) if graded else float(label == positive)  # float32 labels: 4.6, not 4.5999999
        directions = ((s1, s2), (s2, s1)) if symmetric else ((s1, s2),)
        for key in directions:
            if s1 != s2 and gain > 0:
                gains[key] = max(gain, gains.get(key, 0.0))
    return gains


def ranking_set_from_pairs(data: PairDataset, name: str, *, graded: bool, relevant_min: float = 1.0,
                           positive: float = 1.0, symmetric: bool = True, candidates: str = "both",
                           gain_rule: str = "", task: str | None = None) -> RankingSet:
    """A retrieval set from labelled pairs.

    Queries: every distinct ``sentence1`` of a pair (as sentence1) whose gain reaches ``relevant_min``.
    Gains: the gold score (``graded``) or 1 for label ``positive``; with ``symmetric`` a pair also makes
    sentence1 a partner of sentence2 (paraphrase, similarity), not for question -> answer sets.
    Candidates: every distinct sentence (``"both"`` columns) or only ``sentence2`` texts.
    """
    if candidates not in ("both", "sentence2"):
        raise ConfigError(f"candidates must be 'both' or 'sentence2', got {candidates!r}")
    gains = _pair_gains(data, graded, positive, symmetric)
    texts = data.sentence1 + data.sentence2 if candidates == "both" else data.sentence2
    pool = list(dict.fromkeys(texts))
    index = {text: i for i, text in enumerate(pool)}
    per_query: dict[str, dict[int, float]] = {}
    for (query, other), gain in gains.items():
        if other in index:
            per_query.setdefault(query, {})[index[other]] = gain
    direct = {s1 for (s1, s2), g in _pair_gains(data, graded, positive, False).items() if g >= relevant_min}
    queries = [q for q in dict.fromkeys(data.sentence1) if q in direct and q in per_query]
    if not queries:
        raise ConfigError(f"{data.source}: no pair reaches the relevance threshold {relevant_min}: no queries")
    rule = gain_rule or ("gain = gold score" if graded else f"gain 1 for label {positive:g}, else 0")
    return RankingSet(name, queries, pool, [per_query[q] for q in queries], [index.get(q, -1) for q in queries],
                      relevant_min, rule, data.source, "regression" if graded else "binary", task)


def mrpc_test_set(data_dir: PathLike | None = None) -> RankingSet:
    """MRPC test (labelled in the shared copy): paraphrase partners among all 3.4k test sentences."""
    data = load_glue("mrpc", "test", data_dir=data_dir)
    return ranking_set_from_pairs(data, "mrpc-test", graded=False, gain_rule="gain 1 for a paraphrase (label 1)",
                                  task="mrpc")


def stsb_test_set(data_dir: PathLike | None = None, relevant_min: float = STS_RELEVANT_MIN) -> RankingSet:
    """STS-B test: queries are sentence1 of pairs scored >= 4; every scored partner has gain = its score."""
    data = load_glue("stsb", "test", data_dir=data_dir)
    return ranking_set_from_pairs(data, "stsb-test", graded=True, relevant_min=relevant_min,
                                  gain_rule=f"gain = gold score (0-5) of every scored partner; relevant for "
                                            f"MRR/recall at score >= {relevant_min:g}", task="stsb")


@dataclass
class QnliHalves:
    """QNLI dev split by question: one half for distillation, the other for retrieval."""

    train: PairDataset
    bench: RankingSet
    record: dict[str, Any]
    bench_pairs: PairDataset  # the benchmark half as labelled pairs (pair accuracy: reported, never selected on)


def _questions_digest(questions: list[str]) -> str:
    return hashlib.sha256("\n".join(questions).encode("utf-8", "surrogatepass")).hexdigest()


def qnli_halves(data_dir: PathLike | None = None, seed: int = 0, data: PairDataset | None = None) -> QnliHalves:
    """QNLI dev split into two halves by question (seeded permutation of the distinct questions).

    Every pair of a question goes to that question's half, so no question of the benchmark half is ever
    seen in distillation. The benchmark half ranks each question against every distinct answer sentence
    of its half; relevant = its entailment sentences. The record holds the seed and a hash of each half.
    """
    data = data if data is not None else load_glue("qnli", "dev", data_dir=data_dir)
    questions = list(dict.fromkeys(data.sentence1))
    if len(questions) < 2:
        raise ConfigError(f"{data.source}: {len(questions)} distinct question(s); two halves need at least 2")
    order = np.random.default_rng(seed).permutation(len(questions))
    bench_questions = {questions[i] for i in order[: len(questions) // 2]}
    bench_rows = [i for i, q in enumerate(data.sentence1) if q in bench_questions]
    train_rows = [i for i, q in enumerate(data.sentence1) if q not in bench_questions]
    source = f"{data.source}[qnli halves seed={seed}]"
    train = data.select(train_rows, source=f"{source}:train")
    bench_pairs = data.select(bench_rows, source=f"{source}:bench")
    positive = float(get_task("qnli").labels.index("entailment"))
    bench = ranking_set_from_pairs(bench_pairs, "qnli-bench", graded=False, positive=positive, symmetric=False,
                                   candidates="sentence2", gain_rule="gain 1 for an entailment sentence",
                                   task="qnli")
    record = {"seed": seed, "questions": len(questions),
              "train_half": {"questions": len(questions) - len(bench_questions), "pairs": len(train),
                             "questions_sha256": _questions_digest(list(dict.fromkeys(train.sentence1)))},
              "bench_half": {"questions": len(bench_questions), "pairs": len(bench_pairs),
                             "questions_sha256": _questions_digest(list(dict.fromkeys(bench_pairs.sentence1)))},
              # no question is in both halves, but one answer sentence can serve questions of both: such a
              # candidate was seen in distillation (with another question), so the overlap is on record
              "answer_sentences_in_both_halves": len(set(train.sentence2) & set(bench_pairs.sentence2))}
    bench.extra["split"] = record
    seen = set(train.sentence1) | set(train.sentence2)
    bench.query_subsets[UNSEEN_ANSWER_SUBSET] = [
        q for q, gains in enumerate(bench.relevance)
        if not any(bench.candidates[c] in seen for c, g in gains.items() if g >= bench.relevant_min)]
    return QnliHalves(train, bench, record, bench_pairs)


def split_by_question(data: PairDataset, fraction: float, seed: int = 0) -> tuple[PairDataset, PairDataset]:
    """``(rest, held_out)``: about ``fraction`` of the distinct questions (sentence1) and all their pairs held out.

    The QNLI train half needs its own dev split to select checkpoints on (never the benchmark half), and
    a question's pairs must stay together so that selection never sees a training question.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"held-out fraction must be in (0, 1), got {fraction}")
    questions = list(dict.fromkeys(data.sentence1))
    held_count = round(len(questions) * fraction)
    if not 0 < held_count < len(questions):
        raise ConfigError(f"{data.source}: {len(questions)} distinct question(s) cannot be split at {fraction:g}")
    order = np.random.default_rng(seed).permutation(len(questions))
    held = {questions[i] for i in order[:held_count]}
    held_rows = [i for i, q in enumerate(data.sentence1) if q in held]
    rest_rows = [i for i, q in enumerate(data.sentence1) if q not in held]
    return (data.select(rest_rows, source=f"{data.source}[rest of split seed={seed}]"),
            data.select(held_rows, source=f"{data.source}[held out {fraction:g} seed={seed}]"))


def load_ranking_set(spec: str, *, kind: str | None = None, relevant_min: float | None = None,
                     data_dir: PathLike | None = None, seed: int = 0) -> RankingSet:
    """``mrpc-test``, ``stsb-test``, ``qnli-bench`` or a pair file with a gold column (needs ``kind``)."""
    if spec == "mrpc-test":
        return mrpc_test_set(data_dir)
    if spec == "stsb-test":
        return stsb_test_set(data_dir, relevant_min or STS_RELEVANT_MIN)
    if spec == "qnli-bench":
        return qnli_halves(data_dir, seed).bench
    if kind not in ("binary", "regression"):
        raise ConfigError(f"--set {spec!r} is not one of {', '.join(BUILTIN_SETS)}, so it is read as a pair file; "
                          "give its --kind: binary (label 1 = relevant) or regression (graded scores)")
    task: TaskSpec = custom_task("retrieval", kind, ("0", "1") if kind == "binary" else ())
    data = read_pairs(spec, task)
    graded = kind == "regression"
    threshold = relevant_min if relevant_min is not None else (STS_RELEVANT_MIN if graded else 1.0)
    return ranking_set_from_pairs(data, os.path.basename(str(spec)), graded=graded, relevant_min=threshold)
