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
"""

from __future__ import annotations

import csv
import gc
import json
import logging
import os
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..bases import cache_dir
from ..retrieval import (
    CandidateStore,
    HeadScorer,
    RankTimings,
    build_ann,
    build_store,
    load_ann,
    model_fingerprint,
    open_store,
    rank,
    sentences_fingerprint,
)
from ..utils import atomic_write_json

logger = logging.getLogger("dsembed.bench")

TEXT_COLUMNS = ("#1 String", "#2 String", "sentence1", "sentence2", "question", "sentence")


@dataclass
class BenchConfig:
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
    output: str = "results/speed"
    work_dir: str | None = None
    keep_stores: bool = False
    glue_dir: str | None = None
    seed: int = 0
    note: str = ""
    show_progress_bar: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------


def glue_sentences(glue_dir: str | Path) -> list[str]:
    """Every distinct sentence of the local GLUE TSVs (text columns only), in a stable order."""
    seen: dict[str, None] = {}
    csv.field_size_limit(sys.maxsize)
    for file in sorted(Path(glue_dir).glob("*/*.tsv")):
        with open(file, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader, None)
            if not header:
                continue
            cols = [i for i, name in enumerate(header) if name.strip() in TEXT_COLUMNS]
            for row in reader:
                for i in cols:
                    if i < len(row):
                        text = row[i].strip()
                        if 3 <= len(text) <= 1000:
                            seen.setdefault(text, None)
    return list(seen)


def bench_queries(n: int, seed: int, glue_dir: str | None) -> list[tuple[str, str]]:
    """(query, paraphrase) pairs from MRPC dev positives: the paraphrase goes into the store."""
    from ..data import load_glue

    dev = load_glue("mrpc", "dev", data_dir=glue_dir)
    pos = [(a, b) for a, b, y in zip(dev.sentence1, dev.sentence2, dev.labels, strict=True) if y == 1 and a != b]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(pos), size=min(n, len(pos)), replace=False)
    return [pos[i] for i in pick]


def synthetic_rows(real: np.ndarray, start: int, count: int, seed: int) -> tuple[np.ndarray, list[str], list[str]]:
    """``count`` synthetic embeddings: ``(1-t) r_a + t r_b + noise`` of random real rows ``a, b``, ``t ~ U(0, .35)``."""
    rng = np.random.default_rng([seed, start])
    a = rng.integers(0, len(real), size=count)
    b = rng.integers(0, len(real), size=count)
    t = rng.uniform(0.0, 0.35, size=(count, 1)).astype(np.float32)
    scale = real.std(axis=0, keepdims=True).astype(np.float32) * 0.05
    emb = (1 - t) * real[a] + t * real[b] + rng.standard_normal((count, real.shape[1]), dtype=np.float32) * scale
    texts = [f"[synthetic row {start + i}: {1 - t[i, 0]:.2f}*#{a[i]} + {t[i, 0]:.2f}*#{b[i]} + noise]"
             for i in range(count)]
    ids = [f"syn{start + i}" for i in range(count)]
    return emb.astype(np.float32), texts, ids


def make_store(path: Path, model: Any, real: CandidateStore, n: int, seed: int, copies: tuple[str, ...],
               show_progress_bar: bool) -> tuple[CandidateStore, int, float]:
    """A store of the first ``n`` real rows, extended synthetically past the real count; (store, synthetic, s)."""
    source = f"bench: first {min(n, real.count)} rows of {real.path.name}, synthetic rows seed {seed}"
    if (path / "manifest.json").is_file():
        store = open_store(path)
        done = [x.get("source") for x in store.manifest.get("sources", [])]
        if store.count == n and store.fingerprint == real.fingerprint and done == [source]:
            return store, max(0, n - real.count), 0.0
        shutil.rmtree(path)
    start = time.perf_counter()
    store = CandidateStore.create(path, model, copies=copies)
    scorer = HeadScorer(model.head)
    n_real = min(n, real.count)
    chunk = 65_536
    bar = tqdm(total=n, desc=f"store N={n}", unit="row", disable=not show_progress_bar)
    for lo in range(0, n_real, chunk):
        hi = min(lo + chunk, n_real)
        recs = real.records(range(lo, hi))
        store.append(np.asarray(real.embeddings(lo, hi)), [t for _, t in recs], [i for i, _ in recs], scorer)
        bar.update(hi - lo)
    if n > n_real:
        base = np.asarray(real.embeddings(), dtype=np.float32)
        for lo in range(n_real, n, chunk):
            hi = min(lo + chunk, n)
            emb, texts, ids = synthetic_rows(base, lo, hi - lo, seed)
            store.append(emb, texts, ids, scorer)
            bar.update(hi - lo)
    bar.close()
    store.manifest["sources"] = [{"source": source, "sha256": "", "start": 0, "count": n}]
    store._write_manifest()
    return store, n - n_real, time.perf_counter() - start


# --------------------------------------------------------------------------------------------------
# timing helpers
# --------------------------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _summary(times: list[float]) -> dict[str, Any]:
    return {"median_seconds": _median(times), "min_seconds": float(min(times)), "max_seconds": float(max(times)),
            "repeats": len(times), "seconds": [round(t, 6) for t in times]}


def _load_student(cfg: BenchConfig) -> tuple[Any, dict[str, Any]]:
    from ..student.model import DSEModel
    from ..tasks import get_task

    if cfg.model:
        model = DSEModel.load(cfg.model, device="cpu")
        info = {"source": cfg.model, "trained": True}
    else:
        model = DSEModel.from_base(cfg.base, get_task(cfg.task), device="cpu")
        info = {"source": f"DSEModel.from_base({cfg.base!r}, {cfg.task}) with an untrained (random) head",
                "trained": False}
    model.eval()
    info.update({"embedding_dim": model.embedding_dim, "head_hidden": model.head.dense.out_features,
                 "pooling": model.config.pooling, "top_k_layers": model.config.top_k, "task": model.task.name,
                 "fingerprint": model_fingerprint(model)[:16]})
    return model, info


def _load_teacher(cfg: BenchConfig, task: Any, max_length: int) -> tuple[Any, dict[str, Any]]:
    """The cross-encoder, truncating at the student's max length so both read the same tokens."""
    from ..teacher import Teacher

    if cfg.teacher:
        teacher = Teacher(cfg.teacher, task, max_length=max_length, device="cpu")
        info = {"source": cfg.teacher, "trained": True}
    else:
        import transformers

        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
        try:
            teacher = Teacher(cfg.base, task, max_length=max_length, device="cpu")
        finally:
            transformers.logging.set_verbosity(verbosity)
        info = {"source": f"{cfg.base} with an untrained sequence-classification head (speed only)",
                "trained": False}
    info.update({"max_length": teacher.max_length, "batch_size": cfg.teacher_batch_size,
                 "parameters": sum(p.numel() for p in teacher.model.parameters())})
    return teacher, info


def _st_encoder(cfg: BenchConfig, model: Any, tmp: Path) -> Any:
    """A plain SentenceTransformer over the same weights (loaded from the student folder)."""
    from sentence_transformers import SentenceTransformer

    folder = Path(cfg.model) if cfg.model else tmp / "student"
    if not cfg.model and not (folder / "dse_config.json").is_file():
        model.save(folder)
    return SentenceTransformer(str(folder), device="cpu", trust_remote_code=True, local_files_only=True)


def measure_encoding(model: Any, st: Any, sentences: list[str], batch_size: int, repeats: int) -> dict[str, Any]:
    """Sentences/s of ``DSEModel.encode`` vs ``SentenceTransformer.encode``, alternated, medians."""
    ds_times, st_times = [], []
    model.encode(sentences[:64], batch_size=batch_size, show_progress_bar=False)
    st.encode(sentences[:64], batch_size=batch_size, show_progress_bar=False)
    for _ in range(repeats):
        t0 = time.perf_counter()
        a = model.encode(sentences, batch_size=batch_size, show_progress_bar=False)
        ds_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b = st.encode(sentences, batch_size=batch_size, show_progress_bar=False)
        st_times.append(time.perf_counter() - t0)
    diff = float(np.abs(np.asarray(a) - np.asarray(b)).max())
    ds_rate = len(sentences) / _median(ds_times)
    st_rate = len(sentences) / _median(st_times)
    return {"sentences": len(sentences), "batch_size": batch_size, "repeats": repeats,
            "dsembed_sentences_per_s": ds_rate, "sentence_transformers_sentences_per_s": st_rate,
            "ratio_dsembed_over_st": ds_rate / st_rate, "max_abs_embedding_difference": diff,
            "dsembed_seconds": ds_times, "st_seconds": st_times}


# --------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run every measurement, write ``<output>/speed.json`` and ``speed.png``; return the record."""
    import faiss
    from sentence_transformers import util as st_util

    from ..data import default_glue_dir
    from ..utils import environment_record

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
        faiss.omp_set_num_threads(cfg.threads)
    out_dir = Path(cfg.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(cfg.work_dir) if cfg.work_dir else cache_dir() / "bench"
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    record: dict[str, Any] = {
        "benchmark": "dsembed speed: 1 query x N candidates",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment_record(),
        "config": asdict(cfg),
        "load_average_start": list(os.getloadavg()),
        "threads": {"torch": torch.get_num_threads(), "faiss": faiss.omp_get_max_threads()},
        "faiss_version": faiss.__version__,
        "notes": [],
    }
    notes: list[str] = record["notes"]
    model, student_info = _load_student(cfg)
    teacher, teacher_info = _load_teacher(cfg, model.task, int(model.encoder.max_seq_length or 128))
    record["student"] = student_info
    record["teacher"] = teacher_info
    if not student_info["trained"]:
        notes.append("student head untrained: speed numbers are valid, ANN recall numbers are not meaningful")
    if not teacher_info["trained"]:
        notes.append("teacher classification head untrained (speed only)")

    # -- sentences and the real store ------------------------------------------------------------------
    glue = cfg.glue_dir or str(default_glue_dir())
    qpairs = bench_queries(cfg.queries, cfg.seed, glue)
    queries = [q for q, _ in qpairs]
    targets = [t for _, t in qpairs]
    pool = [s for s in glue_sentences(glue) if s not in set(queries) and s not in set(targets)]
    rng = np.random.default_rng(cfg.seed)
    pool = [pool[i] for i in rng.permutation(len(pool))]
    n_real = min(cfg.real_sentences, len(pool) + len(targets))
    real_texts = targets + pool[:n_real - len(targets)]
    head = min(min(cfg.sizes), n_real)
    perm = rng.permutation(head)  # the paraphrase targets land at random places within the smallest store
    real_texts = [real_texts[i] for i in perm] + real_texts[head:]
    tag = f"real-{model_fingerprint(model)[:12]}-{sentences_fingerprint(real_texts, None)[:12]}"
    t0 = time.perf_counter()
    real_store = build_store(model, real_texts, work / tag, source=f"GLUE sentences ({glue})", copies=(),
                             chunk_size=1024, batch_size=cfg.encode_batch_size, show_progress_bar=cfg.show_progress_bar)
    build_s = time.perf_counter() - t0
    record["data"] = {
        "glue_dir": glue, "distinct_glue_sentences": len(pool) + len(targets) + len(queries),
        "real_sentences_encoded": real_store.count,
        "queries": "MRPC dev sentence1 of positive pairs (held out of the store; their sentence2 is in every store)",
        "query_texts": queries,
        "synthetic": "rows past the real ones: (1-t)*e_a + t*e_b + N(0, (0.05*std_dim)^2), t~U(0,0.35), a,b random "
                     "real rows; they have no text, so the teacher never scores them",
    }
    if build_s > 1.0:
        record["index_build"] = {"sentences": real_store.count, "seconds": build_s,
                                 "sentences_per_s": real_store.count / build_s,
                                 "note": "dsembed index build (encode + write + head precomputation), chunk 1024"}

    st = _st_encoder(cfg, model, work)
    ctexts_cache: dict[int, list[str]] = {}
    sizes_out: dict[str, Any] = {}
    teacher_per_pair: float | None = None
    for n in sorted(cfg.sizes):
        logger.info("N = %d", n)
        entry: dict[str, Any] = {}
        store_path = work / f"store-{n}"
        store, synthetic, make_s = make_store(store_path, model, real_store, n, cfg.seed, ("bfloat16",),
                                              cfg.show_progress_bar)
        entry["store"] = {"rows": store.count, "synthetic_rows": synthetic, "real_rows": store.count - synthetic,
                          "build_seconds_from_embeddings": make_s,
                          "bytes": sum(p.stat().st_size for p in store.path.iterdir() if p.is_file())}

        # teacher
        if n <= cfg.teacher_max and n <= real_store.count:
            texts = ctexts_cache.setdefault(n, [t for _, t in store.records(range(n))])
            n_q = max(1, min(len(queries), cfg.teacher_pair_budget // n))
            times = []
            teacher.predict_logits([(queries[0], texts[0])] * 8, batch_size=8)
            for q in queries[:n_q]:
                t0 = time.perf_counter()
                teacher.predict_logits([(q, c) for c in texts], batch_size=cfg.teacher_batch_size,
                                       show_progress_bar=False)
                times.append(time.perf_counter() - t0)
            entry["teacher"] = {**_summary(times), "pairs_per_query": n, "extrapolated": False}
            teacher_per_pair = _median(times) / n
        elif teacher_per_pair is not None:
            entry["teacher"] = {"median_seconds": teacher_per_pair * n, "extrapolated": True,
                                "basis": "linear in N from the per-pair time at the largest measured N"}

        # student: exact fp32, exact bf16 screen + fp32 rescoring
        exact: list[list[Any]] = []
        for precision in ("fp32", "bf16"):
            times, parts = [], []
            if n <= 100_000:
                rank(model, queries[0], store, cfg.top_k, precision=precision)  # warm caches
            agree = 0
            for qi, q in enumerate(queries):
                tm = RankTimings()
                t0 = time.perf_counter()
                hits = rank(model, q, store, cfg.top_k, precision=precision, timings=tm,
                            shortlist=cfg.bf16_shortlist)
                times.append(time.perf_counter() - t0)
                parts.append({"encode": tm.encode, "scan": tm.scan, "rescore": tm.rescore, "fetch": tm.fetch})
                if precision == "fp32":
                    exact.append(hits)
                else:
                    agree += len({h.row for h in hits} & {h.row for h in exact[qi]})
            key = "exact_fp32" if precision == "fp32" else "exact_bf16_screen"
            entry[key] = {**_summary(times), "breakdown_median": {k: _median([p[k] for p in parts]) for k in parts[0]}}
            if precision == "bf16":
                entry[key]["recall_at_k_vs_fp32"] = agree / (cfg.top_k * len(queries))
                entry[key]["shortlist"] = cfg.bf16_shortlist
        entry["paraphrase_target_rank_fp32"] = [
            next((i + 1 for i, h in enumerate(hits) if h.text == t), None) for hits, t in zip(exact, targets,
                                                                                               strict=True)]

        # ANN prefilter + exact re-rank
        ann_out: dict[str, Any] = {}
        for kind in cfg.prefilter_kinds:
            t0 = time.perf_counter()
            build_ann(store, "auto", kind=kind, model=model, show_progress_bar=cfg.show_progress_bar)
            ann = load_ann(store, kind)
            ann_entry: dict[str, Any] = {"kind": kind, "factory": ann.meta["factory"],
                                         "build_seconds": time.perf_counter() - t0, "grid": []}
            nprobes = cfg.nprobes if ann.meta["factory"].startswith("IVF") else (None,)
            for nprobe in nprobes:
                for m in cfg.prefilters:
                    if m >= n:
                        continue
                    for rr in cfg.rerank_precisions:
                        if rr == "bf16" and m <= cfg.bf16_shortlist:
                            continue
                        kw = {"prefilter": m, "nprobe": nprobe, "ann": ann, "precision": rr,
                              "shortlist": cfg.bf16_shortlist}
                        rank(model, queries[0], store, cfg.top_k, **kw)
                        times, found, parts = [], 0, []
                        for qi, q in enumerate(queries):
                            tm = RankTimings()
                            t0 = time.perf_counter()
                            got = rank(model, q, store, cfg.top_k, timings=tm, **kw)
                            times.append(time.perf_counter() - t0)
                            parts.append({"encode": tm.encode, "prefilter": tm.prefilter, "rescore": tm.rescore})
                            found += len({h.row for h in got} & {h.row for h in exact[qi]})
                        ann_entry["grid"].append({
                            "prefilter_m": m, "nprobe": nprobe, "rerank": rr, **_summary(times),
                            "recall_at_k": found / (cfg.top_k * len(queries)),
                            "breakdown_median": {k: _median([p[k] for p in parts]) for k in parts[0]}})
            ok = [g for g in ann_entry["grid"] if g["recall_at_k"] >= 0.95]
            ann_entry["best_at_recall_0.95"] = min(ok, key=lambda g: g["median_seconds"]) if ok else None
            ann_entry["most_accurate"] = max(ann_entry["grid"], key=lambda g: (g["recall_at_k"],
                                                                               -g["median_seconds"])) \
                if ann_entry["grid"] else None
            ann_out[kind] = ann_entry
            del ann
            gc.collect()
        entry["ann_rerank"] = ann_out

        # plain sentence-transformers encode + cosine (normalised corpus in RAM, util.semantic_search)
        corpus = np.empty((store.count, store.dim), dtype=np.float32)
        for lo in range(0, store.count, 65_536):
            block = np.asarray(store.embeddings(lo, lo + 65_536))
            corpus[lo:lo + len(block)] = block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        corpus_t = torch.from_numpy(corpus)
        times = []
        st_util.semantic_search(st.encode([queries[0]], convert_to_tensor=True, normalize_embeddings=True,
                                          show_progress_bar=False), corpus_t,
                                top_k=cfg.top_k, score_function=st_util.dot_score)
        for q in queries:
            t0 = time.perf_counter()
            qe = st.encode([q], convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
            st_util.semantic_search(qe, corpus_t, top_k=cfg.top_k, score_function=st_util.dot_score)
            times.append(time.perf_counter() - t0)
        entry["st_cosine"] = {**_summary(times), "method": "SentenceTransformer.encode(normalize_embeddings=True) + "
                              "util.semantic_search(dot_score) over the pre-normalised corpus in RAM"}
        del corpus, corpus_t
        gc.collect()

        teacher_s = entry.get("teacher", {}).get("median_seconds")
        if teacher_s:
            entry["speedup_over_teacher"] = {
                k: teacher_s / entry[k]["median_seconds"] for k in ("exact_fp32", "exact_bf16_screen", "st_cosine")}
            for kind, ann_entry in ann_out.items():
                for label in ("best_at_recall_0.95", "most_accurate"):
                    if ann_entry.get(label):
                        entry["speedup_over_teacher"][f"ann_{kind} ({label})"] = teacher_s / ann_entry[label][
                            "median_seconds"]
            entry["speedup_basis"] = "extrapolated teacher" if entry["teacher"]["extrapolated"] else "measured"
        sizes_out[str(n)] = entry
        record["sizes"] = sizes_out
        atomic_write_json(out_dir / "speed.partial.json", record)
        if not cfg.keep_stores and n > real_store.count:
            shutil.rmtree(store_path, ignore_errors=True)

    # -- encoding throughput -----------------------------------------------------------------------------
    enc_sents = real_texts[: cfg.encode_sentences]
    record["encoding"] = measure_encoding(model, st, enc_sents, cfg.encode_batch_size, cfg.encode_repeats)
    record["targets"] = evaluate_targets(record)
    record["load_average_end"] = list(os.getloadavg())
    record["total_seconds"] = time.perf_counter() - started
    if record["load_average_start"][0] > 1.0 or record["load_average_end"][0] > 1.0:
        notes.append(f"the 2-core CPU was shared with other work during the run (1-min load average "
                     f"{record['load_average_start'][0]:.1f} at start, {record['load_average_end'][0]:.1f} at end): "
                     "absolute times are pessimistic; all methods were measured in the same run")
    atomic_write_json(out_dir / "speed.json", record)
    (out_dir / "speed.partial.json").unlink(missing_ok=True)
    try:
        plot_speed(record, out_dir / "speed.png")
    except Exception as exc:  # noqa: BLE001 - a missing plot must not lose the record
        logger.warning("plot failed: %s", exc)
    return record


def evaluate_targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets against the measurements (met / missed by how much)."""
    out = []
    sizes = record.get("sizes", {})
    s10k = sizes.get("10000")
    if s10k and "speedup_over_teacher" in s10k:
        for key in ("exact_fp32", "exact_bf16_screen"):
            got = s10k["speedup_over_teacher"][key]
            out.append({"target": f"N=10k: {key} >= 1000x faster than the teacher", "measured": got,
                        "met": got >= 1000, "basis": s10k["speedup_basis"]})
    s1m = sizes.get("1000000")
    if s1m:
        for key in ("exact_fp32", "exact_bf16_screen"):
            got = s1m[key]["median_seconds"]
            out.append({"target": f"N=1M: {key} < 2 s per query", "measured": got, "met": got < 2.0,
                        "factor_over_target": got / 2.0})
        for kind, ann_entry in s1m["ann_rerank"].items():
            best = ann_entry.get("best_at_recall_0.95")
            acc = ann_entry.get("most_accurate")
            name = f"N=1M: ANN ({kind} prefilter) + re-rank < 50 ms/query at recall@10 >= 0.95"
            if best:
                out.append({"target": name, "measured": best["median_seconds"], "recall": best["recall_at_k"],
                            "config": {k: best[k] for k in ("prefilter_m", "nprobe", "rerank")},
                            "met": best["median_seconds"] < 0.05})
            elif acc:
                out.append({"target": name, "measured": acc["median_seconds"], "recall": acc["recall_at_k"],
                            "config": {k: acc[k] for k in ("prefilter_m", "nprobe", "rerank")}, "met": False,
                            "note": "no configuration tried reached recall@10 0.95"})
    enc = record.get("encoding")
    if enc:
        out.append({"target": "encoding throughput >= sentence-transformers", "measured":
                    enc["ratio_dsembed_over_st"], "met": enc["ratio_dsembed_over_st"] >= 0.97,
                    "note": "ratio of medians; within 3% counts as equal (same code path, timing noise)"})
    return out


def plot_speed(record: dict[str, Any], path: str | Path) -> Path:
    """Time per query vs N (log-log) and speed-up over the teacher."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(int(n) for n in record["sizes"])
    entries = [record["sizes"][str(n)] for n in sizes]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    measured = [(n, e["teacher"]["median_seconds"]) for n, e in zip(sizes, entries, strict=True)
                if "teacher" in e and not e["teacher"]["extrapolated"]]
    extrap = [(n, e["teacher"]["median_seconds"]) for n, e in zip(sizes, entries, strict=True)
              if "teacher" in e and e["teacher"]["extrapolated"]]
    if measured:
        ax.plot(*zip(*measured, strict=True), "o-", color="black", label="teacher cross-encoder")
    if extrap:
        pts = measured[-1:] + extrap
        ax.plot(*zip(*pts, strict=True), "o--", color="black", mfc="white", label="teacher (extrapolated)")
    series = {"student exact head, fp32": ("exact_fp32", "tab:blue"),
              "student exact head, bf16 screen + fp32 rescore": ("exact_bf16_screen", "tab:cyan"),
              "sentence-transformers encode + cosine": ("st_cosine", "tab:green")}
    for label, (key, colour) in series.items():
        ax.plot(sizes, [e[key]["median_seconds"] for e in entries], "s-", color=colour, label=label)
    ann_colours = {"head": "tab:red", "cosine": "tab:orange"}
    for kind, colour in ann_colours.items():
        pts = [(n, _ann_pick(e, kind)) for n, e in zip(sizes, entries, strict=True)]
        pts = [(n, g) for n, g in pts if g]
        if not pts:
            continue
        ax.plot([n for n, _ in pts], [g["median_seconds"] for _, g in pts], "^-", color=colour,
                label=f"ANN ({kind} prefilter) top-M + exact head re-rank")
        for n, g in pts:
            ax.annotate(f"M={g['prefilter_m']} R@10={g['recall_at_k']:.2f}", (n, g["median_seconds"]),
                        fontsize=6, color=colour, textcoords="offset points", xytext=(4, -10))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("candidates N")
    ax.set_ylabel("seconds per query (median)")
    ax.set_title("1 query x N candidates")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    extra = {f"ANN ({kind}) + re-rank": (f"ann_{kind}", colour) for kind, colour in ann_colours.items()}
    for label, (key, colour) in {**series, **extra}.items():
        xs, ys = [], []
        for n, e in zip(sizes, entries, strict=True):
            sp = e.get("speedup_over_teacher", {})
            value = next((v for k, v in sp.items() if k.startswith(key + " (")), None) if key.startswith("ann_") \
                else sp.get(key)
            if value:
                xs.append(n)
                ys.append(value)
        if xs:
            ax2.plot(xs, ys, "s-", color=colour, label=label)
    ax2.axhline(1000, color="grey", ls=":", label="1000x")
    if measured:
        ax2.axvline(measured[-1][0], color="black", ls="--", lw=0.8)
        ax2.annotate("teacher extrapolated ->", (measured[-1][0], 1000), fontsize=7, textcoords="offset points",
                     xytext=(4, 6))
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("candidates N")
    ax2.set_ylabel("speed-up over the teacher (x)")
    ax2.set_title("speed-up (teacher extrapolated beyond its measured N)")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ann_pick(entry: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The fastest ANN configuration reaching recall@10 >= 0.95, else the most accurate one."""
    ann = entry.get("ann_rerank", {}).get(kind)
    if not ann:
        return None
    return ann.get("best_at_recall_0.95") or ann.get("most_accurate")


def format_summary(record: dict[str, Any]) -> str:
    """A plain-text table of the record (seconds per query, medians)."""
    lines = [f"{'N':>9} {'teacher':>10} {'exact fp32':>11} {'exact bf16':>11} {'ANN head':>9} {'(M,R@10)':>12} "
             f"{'ANN cos':>9} {'(M,R@10)':>12} {'ST cos':>8} {'fp32 x':>8}"]
    for n in sorted(int(x) for x in record["sizes"]):
        e = record["sizes"][str(n)]
        t = e.get("teacher", {})
        ts = f"{t['median_seconds']:.3f}{'*' if t.get('extrapolated') else ''}" if t else "-"
        cells = []
        for kind in ("head", "cosine"):
            g = _ann_pick(e, kind)
            if g:
                config = f"({g['prefilter_m']},{g['recall_at_k']:.2f})"
                cells.append(f"{g['median_seconds']:>9.4f} {config:>12}")
            else:
                cells.append(f"{'-':>9} {'-':>12}")
        sp = e.get("speedup_over_teacher", {}).get("exact_fp32")
        lines.append(f"{n:>9} {ts:>10} {e['exact_fp32']['median_seconds']:>11.4f} "
                     f"{e['exact_bf16_screen']['median_seconds']:>11.4f} {cells[0]} {cells[1]} "
                     f"{e['st_cosine']['median_seconds']:>8.4f} {(f'{sp:.0f}' if sp else '-'):>8}")
    lines.append("(* extrapolated)")
    enc = record.get("encoding")
    if enc:
        lines.append(f"encoding: dsembed {enc['dsembed_sentences_per_s']:.1f} sent/s, sentence-transformers "
                     f"{enc['sentence_transformers_sentences_per_s']:.1f} sent/s (x{enc['ratio_dsembed_over_st']:.3f})")
    for t in record.get("targets", []):
        lines.append(f"[{'met' if t['met'] else 'MISSED'}] {t['target']}: measured {t['measured']:.4g}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - `python -m dsembed.bench`
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="JSON file with BenchConfig fields")
    args = parser.parse_args(argv)
    values = json.loads(Path(args.config).read_text()) if args.config else {}
    for key in ("sizes", "prefilters", "nprobes"):
        if key in values:
            values[key] = tuple(values[key])
    print(format_summary(run_bench(BenchConfig(**values))))


if __name__ == "__main__":  # pragma: no cover
    main()


def render_markdown(record: dict[str, Any], source: str = "results/speed/speed.json") -> str:
    """The RESULTS.md section for one speed record (every number comes from the record)."""

    def ms(seconds: float | None) -> str:
        if seconds is None:
            return "–"
        return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"

    env = record.get("environment", {})
    cfg = record.get("config", {})
    lines = [
        f"Record `{source}` ({record.get('created', '?')}); command: `{env.get('command', '?')}`.",
        "",
        f"Machine: {env.get('platform', '?')}, {env.get('cpu_count', '?')} CPUs, torch threads "
        f"{record.get('threads', {}).get('torch', '?')}, GPU: {env.get('cuda') or 'none'}; "
        f"torch {env.get('torch')}, "
        f"sentence-transformers {env.get('sentence_transformers')}. "
        f"Student: `{record.get('student', {}).get('source')}`"
        f" ({record.get('student', {}).get('embedding_dim')}-d, pooling {record.get('student', {}).get('pooling')}); "
        f"teacher: `{record.get('teacher', {}).get('source')}`. Medians over {cfg.get('queries', '?')} queries, each "
        "time including the query's encoding; all methods measured in the same run.",
        "",
    ]
    lines += [f"- Note: {note}" for note in record.get("notes", [])]
    if record.get("data", {}).get("synthetic"):
        lines.append(f"- Candidates past the {record['data'].get('real_sentences_encoded')} real encoded sentences "
                     f"are synthetic: {record['data']['synthetic']}")
    lines += ["", "| N | teacher | exact head fp32 | exact head bf16 screen | ANN head prefilter + re-rank "
              "| ANN cosine + re-rank | ST encode + cosine | speed-up exact fp32 / bf16 vs teacher |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, size in sorted(record.get("sizes", {}).items(), key=lambda kv: int(kv[0])):
        teacher = size.get("teacher", {})
        t = ms(teacher.get("median_seconds")) + ("*" if teacher.get("extrapolated") else "")

        def ann(kind: str, size: dict[str, Any] = size) -> str:
            best = size.get("ann_rerank", {}).get(kind, {}).get("best_at_recall_0.95")
            if not best:
                return "no setting reached recall 0.95"
            probe = f"nprobe {best['nprobe']}" if best.get('nprobe') else 'flat index'
            return (f"{ms(best['median_seconds'])} (M={best.get('prefilter_m')}, {probe}, "
                    f"recall@10 {best.get('recall_at_k', float('nan')):.2f})")

        speed = size.get("speedup_over_teacher", {})
        lines.append(
            f"| {int(n):,} | {t} | {ms(size.get('exact_fp32', {}).get('median_seconds'))} | "
            f"{ms(size.get('exact_bf16_screen', {}).get('median_seconds'))} | {ann('head')} | {ann('cosine')} | "
            f"{ms(size.get('st_cosine', {}).get('median_seconds'))} | "
            f"{speed.get('exact_fp32', float('nan')):,.0f}× / {speed.get('exact_bf16_screen', float('nan')):,.0f}× |")
    lines.append("")
    lines.append("\\* teacher time extrapolated linearly from its measured per-pair time (no text for synthetic rows).")
    enc = record.get("encoding", {})
    if enc:
        lines += ["", f"Encoding throughput ({enc.get('sentences')} sentences, batch {enc.get('batch_size')}, "
                  f"median of {enc.get('repeats')}): dsembed {enc.get('dsembed_sentences_per_s', 0):.1f} sentences/s, "
                  f"sentence-transformers {enc.get('sentence_transformers_sentences_per_s', 0):.1f} sentences/s "
                  f"(ratio {enc.get('ratio_dsembed_over_st', 0):.3f}; max abs embedding difference "
                  f"{enc.get('max_abs_embedding_difference')})."]
    targets = record.get("targets", [])
    if targets:
        lines += ["", "Targets:", ""]
        lines += [f"- {'met' if t.get('met') else 'MISSED'}: {t.get('target')} — measured {t.get('measured'):.4g}"
                  + (f" ({t['basis']})" if t.get("basis") else "") for t in targets]
    lines += ["", "![speed vs N](results/speed/speed.png)"]
    return "\n".join(lines)
