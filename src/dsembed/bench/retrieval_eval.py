"""How *well* dsembed ranks: every method side by side on the same queries of one retrieval set.

The speed benchmark shows how fast the head ranks; this shows what the ranking is worth against what a
user has without dsembed (the pretrained encoder's cosine, BM25) and against the usual accurate route
(a first stage's top K re-ranked by the cross-encoder). Teacher methods are costly on a CPU, so they can
run on a seeded random sample of the queries; then every method is also reported on that same sample.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import RETRIEVAL_TEACHER_DIR
from ..bases import cache_dir
from ..data.ranking_sets import RankingSet
from ..errors import ConfigError
from ..evaluation.ranking import ranking_metrics
from ..tasks import custom_task, get_task
from ..utils import environment_record, load_average
from .retrieval_methods import (
    MethodRun,
    bm25_method,
    cascade_method,
    cosine_method,
    head_method,
    student_store,
    teacher_method,
)
from .teacher_scores import TeacherScoreCache

logger = logging.getLogger("dsembed.bench")

METHOD_FAMILIES = ("head", "head-ann", "cosine", "pretrained-cosine", "bm25", "teacher", "cascade")
DEFAULT_CASCADE_K = (10, 20, 50, 100)


@dataclass
class RetrievalEvalConfig:
    """What to compare. Students are named (``{"dse": folder, "label-only": folder}``); each gives the methods
    ``NAME-head``, ``NAME-head-ann`` and ``NAME-cosine``. ``cascade_from`` defaults to BM25, the pretrained
    cosine and the first student's head."""

    students: dict[str, str] = field(default_factory=dict)
    base: str | None = "all-MiniLM-L6-v2"
    teacher: str | None = None
    methods: tuple[str, ...] = METHOD_FAMILIES
    cascade_k: tuple[int, ...] = DEFAULT_CASCADE_K
    cascade_from: tuple[str, ...] | None = None
    teacher_queries: int | None = None
    seed: int = 0
    ann_prefilter: int = 200
    work_dir: str | None = None
    batch_size: int = 64

    def check(self) -> None:
        unknown = sorted(set(self.methods) - set(METHOD_FAMILIES))
        if unknown:
            raise ConfigError(f"unknown method(s) {', '.join(unknown)} (choose from {', '.join(METHOD_FAMILIES)})")
        if not self.cascade_k or min(self.cascade_k) < 1:
            raise ConfigError(f"cascade K values must be >= 1, got {list(self.cascade_k)}")
        if self.teacher_queries is not None and self.teacher_queries < 1:
            raise ConfigError(f"--teacher-queries must be >= 1, got {self.teacher_queries}")
        if self.ann_prefilter < 1:
            raise ConfigError(f"the ANN prefilter must be >= 1, got {self.ann_prefilter}")
        for name in self.students:
            if not name or "=" in name or name in ("bm25", "teacher", "pretrained"):
                raise ConfigError(f"student name {name!r} cannot be used (give NAME=FOLDER with another name)")


def query_sample(n_queries: int, size: int | None, seed: int) -> list[int]:
    """A seeded random sample of query indices, sorted (every query when ``size`` is None or >= n).

    The first ``size`` of one seeded permutation, so a larger sample holds every query of a smaller
    one: a teacher column grown from 4 to 50 queries rescores nothing (its scores are cached by pair).
    """
    if size is None or size >= n_queries:
        return list(range(n_queries))
    return sorted(int(i) for i in np.random.default_rng(seed).permutation(n_queries)[:size])


def _set_task(rset: RankingSet):  # noqa: ANN202 - a TaskSpec
    if rset.task:
        return get_task(rset.task)
    return custom_task("retrieval", rset.kind, ("0", "1") if rset.kind == "binary" else ())  # type: ignore[arg-type]


def _pretrained_cosine(base: str, rset: RankingSet, queries: Sequence[int], batch_size: int) -> MethodRun:
    """The untouched base encoder (sentence-transformers) with cosine: what a user has without dsembed."""
    from sentence_transformers import SentenceTransformer

    from ..bases import resolve_model_path

    model = SentenceTransformer(resolve_model_path(base), device="cpu", local_files_only=True)
    cand = model.encode(rset.candidates, batch_size=batch_size, show_progress_bar=False)
    return cosine_method("pretrained-cosine", "pretrained-cosine", rset, queries, cand,
                         lambda text: model.encode([text], show_progress_bar=False)[0])


def _student_runs(name: str, folder: str, rset: RankingSet, queries: Sequence[int], cfg: RetrievalEvalConfig,
                  work_dir: Path) -> list[MethodRun]:
    """``NAME-head``, ``NAME-head-ann`` and ``NAME-cosine`` over one store of the student's embeddings."""
    from ..student import DSEModel

    wanted = [f for f in ("head", "head-ann", "cosine") if f in cfg.methods]
    if not wanted:
        return []
    model = DSEModel.load(folder, device="cpu")
    if model.task.kind == "multiclass":
        raise ConfigError(f"student {name} ({folder}) is a multiclass model: ranking needs one score per pair")
    store = student_store(model, rset, work_dir, ann="head-ann" in wanted, batch_size=cfg.batch_size)
    runs = []
    if "head" in wanted:
        runs.append(head_method(f"{name}-head", model, store, rset, queries))
    if "head-ann" in wanted:
        runs.append(head_method(f"{name}-head-ann", model, store, rset, queries, prefilter=cfg.ann_prefilter))
    if "cosine" in wanted:
        runs.append(cosine_method(f"{name}-cosine", "cosine", rset, queries, np.array(store.embeddings()),
                                  lambda text: model.encode([text], show_progress_bar=False)[0]))
    return runs


def _first_stages(cfg: RetrievalEvalConfig, runs: dict[str, MethodRun]) -> list[MethodRun]:
    if cfg.cascade_from is not None:
        missing = [n for n in cfg.cascade_from if n not in runs]
        if missing:
            raise ConfigError(f"cascade first stage(s) {', '.join(missing)} did not run (ran: {', '.join(runs)})")
        return [runs[n] for n in cfg.cascade_from]
    names = ["bm25", "pretrained-cosine", *(f"{s}-head" for s in list(cfg.students)[:1])]
    return [runs[n] for n in names if n in runs]


def _teacher_runs(cfg: RetrievalEvalConfig, rset: RankingSet, sample: list[int], runs: dict[str, MethodRun],
                  teacher: Any, work_dir: Path) -> tuple[list[MethodRun], dict[str, Any]]:
    """Cascades and the full teacher on the query sample, sharing one pair-hash keyed score cache."""
    from ..teacher import load_teacher

    teacher = teacher if teacher is not None else load_teacher(cfg.teacher, _set_task(rset), device="cpu")
    cache = TeacherScoreCache(teacher, work_dir / RETRIEVAL_TEACHER_DIR, batch_size=cfg.batch_size)
    out = []
    if "cascade" in cfg.methods:
        for first in _first_stages(cfg, runs):
            out += [cascade_method(first, k, rset, sample, cache) for k in sorted(set(cfg.cascade_k))]
    if "teacher" in cfg.methods:
        out.append(teacher_method(rset, sample, cache))
    info = {"path": str(getattr(teacher, "path", "")), **cache.info()}
    return out, info


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.median(known)) if known and len(known) == len(values) else None


def _method_record(run: MethodRun, rset: RankingSet, sample: list[int], spp: float | None) -> dict[str, Any]:
    result = ranking_metrics(run.rankings, {q: rset.relevance[q] for q in run.rankings}, rset.relevant_min)
    times = run.time_per_query(spp)
    covers_all = len(run.rankings) == len(rset.queries)
    calls = [run.teacher_calls.get(q, 0) for q in result.queries]
    return {"family": run.family, "first_stage": run.first_stage, "k": run.k,
            "evaluated_on": "all" if covers_all else "sample",
            "metrics_all_queries": result.means() if covers_all else None,
            "metrics_sample": result.means(sample),
            "teacher_calls_per_query": float(np.mean(calls)) if calls else 0.0,
            "median_seconds_per_query": _median([times[q] for q in result.queries]),
            "median_seconds_per_query_sample": _median([times[q] for q in sample if q in times]),
            "metrics_subsets": {name: result.means(indices) for name, indices in rset.query_subsets.items()}
            if covers_all else {},
            "time_includes_teacher": bool(sum(calls)), **result.to_dict()}


def _config_record(cfg: RetrievalEvalConfig) -> dict[str, Any]:
    record = asdict(cfg)
    record["cascade_k"] = sorted(set(cfg.cascade_k))
    return record


def evaluate_retrieval(rset: RankingSet, config: RetrievalEvalConfig | None = None, *, teacher: Any = None,
                       ) -> dict[str, Any]:
    """Rank ``rset``'s queries with every configured method; the record holds per-query and mean metrics.

    ``teacher``: an already loaded teacher (anything with ``task``, ``fingerprint()`` and ``predict_logits``),
    instead of ``config.teacher``. Time per query is a median; a method that uses the teacher is charged
    the teacher's measured seconds per pair for every pair it needed, cached or not.
    """
    cfg = config or RetrievalEvalConfig()
    cfg.check()
    start = time.perf_counter()
    work_dir = Path(cfg.work_dir) if cfg.work_dir else cache_dir() / "retrieval-eval"
    everyone = list(range(len(rset.queries)))
    sample = query_sample(len(everyone), cfg.teacher_queries, cfg.seed)
    runs: dict[str, MethodRun] = {}
    if "bm25" in cfg.methods:
        runs["bm25"] = bm25_method(rset, everyone)
    if "pretrained-cosine" in cfg.methods and cfg.base:
        runs["pretrained-cosine"] = _pretrained_cosine(cfg.base, rset, everyone, cfg.batch_size)
    for name, folder in cfg.students.items():
        runs.update((r.name, r) for r in _student_runs(name, folder, rset, everyone, cfg, work_dir))
    teacher_info = None
    has_teacher = teacher is not None or cfg.teacher is not None
    if has_teacher and {"teacher", "cascade"} & set(cfg.methods):
        extra, teacher_info = _teacher_runs(cfg, rset, sample, runs, teacher, work_dir)
        runs.update((r.name, r) for r in extra)
    spp = teacher_info["seconds_per_pair"] if teacher_info else None
    methods = {name: _method_record(run, rset, sample, spp) for name, run in runs.items()}
    return {"kind": "retrieval-eval", "set": rset.describe(), "config": _config_record(cfg),
            "query_sample": {"seed": cfg.seed, "size": len(sample), "of": len(everyone),
                             "all_queries": len(sample) == len(everyone), "indices": sample},
            "teacher": teacher_info, "methods": methods,
            "notes": ["cascades: the teacher re-ranks the first stage's top K; positions after K keep the first "
                      "stage's order", "teacher calls per query: distinct pairs the method needed (a pair "
                      "another method already scored still counts)", "time per query: median; methods using the "
                      "teacher add calls x the teacher's measured seconds per pair", "candidate embeddings and "
                      "stores are built before timing (an index is built once, offline)"],
            "wall_seconds": round(time.perf_counter() - start, 3), "load_average": load_average(),
            "environment": environment_record()}


def summary_rows(record: dict[str, Any], metric: str = "mrr@10") -> list[str]:
    """One line per method: its metric on the sample (and all queries), teacher calls and time per query."""
    rows = []
    for name, m in record["methods"].items():
        everyone = (m["metrics_all_queries"] or {}).get(metric)
        secs = m["median_seconds_per_query"]
        rows.append(f"{name:34s} {metric} sample {m['metrics_sample'][metric]:.4f}  all "
                    f"{'-' if everyone is None or math.isnan(everyone) else f'{everyone:.4f}':>6s}  teacher calls/q "
                    f"{m['teacher_calls_per_query']:8.1f}  median ms/q {'-' if secs is None else f'{1e3 * secs:.2f}'}")
    return rows
