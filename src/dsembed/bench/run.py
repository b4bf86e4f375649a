"""Speed benchmark: one query against N candidates, teacher vs student, measured side by side in one run.

For each N it times (median over queries, each including the query's encoding where the method needs one):

* the teacher cross-encoder on all N (query, candidate) pairs (only up to ``teacher_max``; beyond, a linear
  extrapolation of its measured per-pair time, marked ``extrapolated``),
* the student's exact head over a prebuilt store (fp32 full scan), and the bf16 screen + fp32 rescoring,
* FAISS cosine prefilter (top-M) + exact head re-rank, with recall@10 against the exact fp32 ranking,
* plain sentence-transformers ``encode`` + cosine (``util.semantic_search``) with the same encoder,

plus the encoding throughput of dsembed vs sentence-transformers on the same model, batch size and sentences.

Stores beyond the number of real sentences encoded are extended with synthetic vectors (mixtures of two real
embeddings plus small noise); the record says how many rows of each store are synthetic.

This module runs the steps in order and assembles the record; the timers are in :mod:`.measure`, the
verdicts, plot and tables in :mod:`.report`.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..artifacts import SPEED_PARTIAL, SPEED_PLOT, SPEED_RECORD, STUDENT_CONFIG
from ..bases import cache_dir
from ..errors import ConfigError, InputNotFoundError
from ..retrieval import PREFILTER_KINDS, CandidateStore, build_store, model_fingerprint, sentences_fingerprint
from ..utils import atomic_write_json, device_name, resolve_device
from .backends import BENCH_BACKENDS, measure_backends
from .gpu import GpuSide, gpu_side, measure_gpu_encoding, measure_gpu_size
from .measure import (
    bench_sentences,
    load_student,
    load_teacher,
    make_store,
    measure_encoding,
    st_encoder,
    time_ann,
    time_exact,
    time_st_cosine,
    time_teacher,
)
from .report import RESULTS_FOLDER, evaluate_targets, plot_speed

logger = logging.getLogger("dsembed.bench")

RERANK_PRECISIONS = ("fp32", "bf16")  # the precisions retrieval.rank re-ranks in


@dataclass
class BenchConfig:
    """Every setting of a bench run; stored whole in the record (``config``)."""

    model: str | None = None
    teacher: str | None = None
    base: str = "all-MiniLM-L6-v2"
    task: str = "mrpc"
    sizes: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    real_sentences: int = 12_000
    queries: int = 5
    top_k: int = 10
    teacher_max: int = 10_000
    teacher_pair_budget: int = 5_000  # pairs per size when more than one query fits (always >= 1 query)
    teacher_batch_size: int = 64
    prefilters: tuple[int, ...] = (100, 200, 500, 1000, 2000)
    nprobes: tuple[int, ...] = (8, 16, 32, 64)
    prefilter_kinds: tuple[str, ...] = ("head", "cosine")
    rerank_precisions: tuple[str, ...] = ("fp32", "bf16")
    threads: int = 0  # torch/faiss threads; 0 = leave the library defaults
    bf16_shortlist: int = 64
    encode_sentences: int = 2000
    encode_batch_size: int = 32
    encode_repeats: int = 3
    backends: tuple[str, ...] = ("torch",)  # + "onnx", "onnx-int8": encoding rows of the student's ONNX export
    device: str = "auto"  # a CUDA device (auto: where there is one) adds the GPU rows (see .gpu); cpu: CPU rows only
    output: str = RESULTS_FOLDER
    work_dir: str | None = None
    keep_stores: bool = False
    glue_dir: str | None = None
    seed: int = 0
    note: str = ""
    show_progress_bar: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Refuse settings that cannot give a meaningful record, before any model is loaded or store built."""
        if not self.sizes:
            raise ConfigError("bench sizes: give at least one candidate count")
        if len(set(self.sizes)) != len(self.sizes):
            raise ConfigError(f"bench sizes: each candidate count once, got {list(self.sizes)}")
        for name in ("sizes", "prefilters", "nprobes"):
            bad = [x for x in getattr(self, name) if not _is_int(x) or x < 1]
            if bad:
                raise ConfigError(f"bench {name}: positive whole numbers only, got {bad}")
        minimum = {"real_sentences": 1, "queries": 1, "top_k": 1, "teacher_max": 0, "teacher_pair_budget": 0,
                   "teacher_batch_size": 1, "threads": 0, "bf16_shortlist": 1, "encode_sentences": 1,
                   "encode_batch_size": 1, "encode_repeats": 1}
        for name, low in minimum.items():
            value = getattr(self, name)
            if not _is_int(value) or value < low:
                raise ConfigError(f"bench {name} must be a whole number >= {low}, got {value!r}")
        resolve_device(self.device)  # a GPU this machine lacks: one line, before anything is loaded
        if self.real_sentences < self.queries:
            raise ConfigError(f"bench real_sentences ({self.real_sentences}) must be at least queries "
                              f"({self.queries}): every query's paraphrase goes into the store")
        for name, allowed in (("prefilter_kinds", PREFILTER_KINDS), ("rerank_precisions", RERANK_PRECISIONS),
                              ("backends", BENCH_BACKENDS)):
            unknown = [x for x in getattr(self, name) if x not in allowed]
            if unknown:
                raise ConfigError(f"bench {name}: unknown {unknown}; choose from {', '.join(allowed)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class _Bench:
    """What every step of one run shares: its settings, folders, models, queries and the real store."""

    cfg: BenchConfig
    out_dir: Path
    work: Path
    model: Any = None
    teacher: Any = None
    st: Any = None
    queries: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    real_texts: list[str] = field(default_factory=list)
    real_store: CandidateStore | None = None
    gpu: GpuSide | None = None


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run every measurement, write ``<output>/speed.json`` and ``speed.png``; return the record.

    After each N the record so far is written to ``speed.partial.json``, so a run stopped on a large N keeps
    the smaller ones.
    """
    glue = _check_inputs(cfg)
    bench = _Bench(cfg, Path(cfg.output), Path(cfg.work_dir) if cfg.work_dir else cache_dir() / "bench")
    _set_threads(cfg.threads)
    bench.out_dir.mkdir(parents=True, exist_ok=True)
    bench.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    record = _start_record(cfg)
    _load_models(bench, record)
    _build_real_store(bench, glue, record)
    bench.st = st_encoder(cfg, bench.model, bench.work)
    bench.gpu = gpu_side(cfg.device, bench.model, bench.teacher, cfg, bench.work)
    record["device"] = {"cpu_rows": device_name("cpu"), "gpu_rows": bench.gpu.name if bench.gpu else None}
    sizes_out: dict[str, Any] = {}
    teacher_per_pair: float | None = None
    for n in sorted(cfg.sizes):
        entry, teacher_per_pair = _measure_size(bench, n, teacher_per_pair)
        sizes_out[str(n)] = entry
        record["sizes"] = sizes_out
        atomic_write_json(bench.out_dir / SPEED_PARTIAL, record)
        if not cfg.keep_stores and n > bench.real_store.count:
            shutil.rmtree(bench.work / f"store-{n}", ignore_errors=True)
    _finish(bench, record, started)
    return record


def _check_inputs(cfg: BenchConfig) -> str:
    """Fail on bad settings or a missing student or GLUE folder before any work; the GLUE folder, as recorded.

    The teacher may be a hub id, so only loading it tells (see :func:`.measure.load_teacher`).
    """
    from ..data import default_glue_dir

    cfg.validate()
    if cfg.model and not (Path(cfg.model) / STUDENT_CONFIG).is_file():
        raise InputNotFoundError(f"bench model {cfg.model}: not a dsembed student folder ({STUDENT_CONFIG} missing)")
    try:
        glue = cfg.glue_dir or str(default_glue_dir())
    except FileNotFoundError as exc:
        raise InputNotFoundError(f"bench: {exc}") from None
    if not Path(glue).is_dir():
        raise InputNotFoundError(f"bench GLUE folder {glue}: no such folder")
    return glue


def _set_threads(threads: int) -> None:
    """One thread count for torch and FAISS, so every method runs under the same budget (0: their defaults)."""
    import faiss

    if threads > 0:
        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)


def _start_record(cfg: BenchConfig) -> dict[str, Any]:
    """The record's header: what ran, where, with which settings, and how loaded the machine was."""
    import faiss

    from ..utils import environment_record

    return {
        "benchmark": "dsembed speed: 1 query x N candidates",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment_record(),
        "config": asdict(cfg),
        "load_average_start": list(os.getloadavg()),
        "threads": {"torch": torch.get_num_threads(), "faiss": faiss.omp_get_max_threads()},
        "faiss_version": faiss.__version__,
        "notes": [],
    }


def _load_models(bench: _Bench, record: dict[str, Any]) -> None:
    """Student and teacher (both on the CPU), their record entries, and a note for each untrained head."""
    bench.model, student_info = load_student(bench.cfg)
    bench.teacher, teacher_info = load_teacher(bench.cfg, bench.model.task,
                                               int(bench.model.encoder.max_seq_length or 128))
    record["student"] = student_info
    record["teacher"] = teacher_info
    if not student_info["trained"]:
        record["notes"].append("student head untrained: speed numbers are valid, ANN recall numbers are not "
                               "meaningful")
    if not teacher_info["trained"]:
        record["notes"].append("teacher classification head untrained (speed only)")


def _build_real_store(bench: _Bench, glue: str, record: dict[str, Any]) -> None:
    """Encode the real sentences into the store every bench store starts from (reused when already built)."""
    cfg = bench.cfg
    qpairs, bench.real_texts, distinct = bench_sentences(cfg, glue)
    bench.queries = [q for q, _ in qpairs]
    bench.targets = [t for _, t in qpairs]
    tag = f"real-{model_fingerprint(bench.model)[:12]}-{sentences_fingerprint(bench.real_texts, None)[:12]}"
    t0 = time.perf_counter()
    real_store = build_store(bench.model, bench.real_texts, bench.work / tag, source=f"GLUE sentences ({glue})",
                             copies=(), chunk_size=1024, batch_size=cfg.encode_batch_size,
                             show_progress_bar=cfg.show_progress_bar)
    build_s = time.perf_counter() - t0
    bench.real_store = real_store
    record["data"] = {
        "glue_dir": glue, "distinct_glue_sentences": distinct,
        "real_sentences_encoded": real_store.count,
        "queries": "MRPC dev sentence1 of positive pairs (held out of the store; their sentence2 is in every store)",
        "query_texts": bench.queries,
        "synthetic": "rows past the real ones: (1-t)*e_a + t*e_b + N(0, (0.05*std_dim)^2), t~U(0,0.35), a,b random "
                     "real rows; they have no text, so the teacher never scores them",
    }
    if build_s > 1.0:  # a reused store took no time: nothing to report
        record["index_build"] = {"sentences": real_store.count, "seconds": build_s,
                                 "sentences_per_s": real_store.count / build_s,
                                 "note": "dsembed index build (encode + write + head precomputation), chunk 1024"}


def _measure_size(bench: _Bench, n: int, teacher_per_pair: float | None) -> tuple[dict[str, Any], float | None]:
    """Every method at N candidates, in the record's order; (the size's entry, teacher seconds per pair)."""
    cfg, model, queries = bench.cfg, bench.model, bench.queries
    logger.info("N = %d", n)
    store, synthetic, make_s = make_store(bench.work / f"store-{n}", model, bench.real_store, n, cfg.seed,
                                          ("bfloat16",), cfg.show_progress_bar)
    entry: dict[str, Any] = {"device": device_name("cpu"), "store": {
        "rows": store.count, "synthetic_rows": synthetic, "real_rows": store.count - synthetic,
        "build_seconds_from_embeddings": make_s,
        "bytes": sum(p.stat().st_size for p in store.path.iterdir() if p.is_file())}}
    texts = None
    if n <= cfg.teacher_max and n <= bench.real_store.count:
        texts = [t for _, t in store.records(range(n))]
        entry["teacher"] = time_teacher(bench.teacher, queries, texts, cfg.teacher_pair_budget,
                                        cfg.teacher_batch_size)
        teacher_per_pair = entry["teacher"]["median_seconds"] / n
    elif teacher_per_pair is not None:  # synthetic rows have no text: extrapolate from the largest measured N
        entry["teacher"] = {"median_seconds": teacher_per_pair * n, "extrapolated": True,
                            "basis": "linear in N from the per-pair time at the largest measured N"}
    entry["exact_fp32"], entry["exact_bf16_screen"], exact = time_exact(model, store, queries, cfg.top_k,
                                                                        cfg.bf16_shortlist)
    entry["paraphrase_target_rank_fp32"] = [
        next((i + 1 for i, h in enumerate(hits) if h.text == t), None)
        for hits, t in zip(exact, bench.targets, strict=True)]
    ann_out: dict[str, Any] = {}
    for kind in cfg.prefilter_kinds:
        ann_out[kind] = time_ann(cfg, model, store, queries, exact, kind)
        gc.collect()  # the FAISS index of this kind is gone: free it before the next is built
    entry["ann_rerank"] = ann_out
    entry["st_cosine"] = time_st_cosine(bench.st, store, queries, cfg.top_k)
    if entry.get("teacher", {}).get("median_seconds"):
        _add_speedups(entry)
    if bench.gpu is not None:
        entry["gpu"] = measure_gpu_size(bench.gpu, cfg, store, queries, texts, exact)
    return entry, teacher_per_pair


def _add_speedups(entry: dict[str, Any]) -> None:
    """Teacher time over each method's time (ANN: its best and most accurate settings), and its basis."""
    teacher_s = entry["teacher"]["median_seconds"]
    speedups = {k: teacher_s / entry[k]["median_seconds"] for k in ("exact_fp32", "exact_bf16_screen", "st_cosine")}
    for kind, ann_entry in entry["ann_rerank"].items():
        for label in ("best_at_recall_0.95", "most_accurate"):
            if ann_entry.get(label):
                speedups[f"ann_{kind} ({label})"] = teacher_s / ann_entry[label]["median_seconds"]
    entry["speedup_over_teacher"] = speedups
    entry["speedup_basis"] = "extrapolated teacher" if entry["teacher"]["extrapolated"] else "measured"


def _finish(bench: _Bench, record: dict[str, Any], started: float) -> None:
    """Encoding throughput, the verdicts, the closing load note; then ``speed.json`` and ``speed.png``."""
    cfg = bench.cfg
    enc_sents = bench.real_texts[: cfg.encode_sentences]
    record["encoding"] = measure_encoding(bench.model, bench.st, enc_sents, cfg.encode_batch_size,
                                          cfg.encode_repeats)
    if bench.gpu is not None:
        record["gpu_encoding"] = measure_gpu_encoding(bench.gpu, enc_sents, cfg.encode_batch_size, cfg.encode_repeats)
    if set(cfg.backends) - {"torch"}:
        record["encoding_backends"] = measure_backends(bench.model, cfg.backends, enc_sents, cfg.encode_batch_size,
                                                       cfg.encode_repeats, bench.work)
    record["targets"] = evaluate_targets(record)
    record["load_average_end"] = list(os.getloadavg())
    record["total_seconds"] = time.perf_counter() - started
    if record["load_average_start"][0] > 1.0 or record["load_average_end"][0] > 1.0:
        record["notes"].append(
            f"the 2-core CPU was shared with other work during the run (1-min load average "
            f"{record['load_average_start'][0]:.1f} at start, {record['load_average_end'][0]:.1f} at end): "
            "absolute times are pessimistic; all methods were measured in the same run")
    atomic_write_json(bench.out_dir / SPEED_RECORD, record)
    (bench.out_dir / SPEED_PARTIAL).unlink(missing_ok=True)
    try:
        plot_speed(record, bench.out_dir / SPEED_PLOT)
    except Exception as exc:  # noqa: BLE001 - a missing plot must not lose the record
        logger.warning("plot failed: %s", exc)
