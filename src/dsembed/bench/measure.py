"""The timing pieces of the speed benchmark: its sentences and stores, its models, and each method's timer.

Every timer takes what it measures as arguments and returns the record entry for it; :mod:`.run` decides the
order of work and where each entry goes. Times are medians over the queries (see :func:`summary`); each timed
call includes the query's encoding where the method needs one, and is preceded by one untimed warm-up call.
"""

from __future__ import annotations

import csv
import gc
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..artifacts import STORE_MANIFEST, STUDENT_CONFIG
from ..errors import InputNotFoundError
from ..retrieval import (
    CandidateStore,
    HeadScorer,
    Hit,
    RankTimings,
    append_rows,
    build_ann,
    create_store,
    load_ann,
    model_fingerprint,
    open_store,
    rank,
    write_manifest,
)

if TYPE_CHECKING:
    from .run import BenchConfig

TEXT_COLUMNS = ("#1 String", "#2 String", "sentence1", "sentence2", "question", "sentence")
STORE_CHUNK = 65_536  # rows appended (bench stores) or normalised (the plain cosine corpus) at a time

# --------------------------------------------------------------------------------------------------
# sentences and stores
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

    try:
        dev = load_glue("mrpc", "dev", data_dir=glue_dir)
    except FileNotFoundError as exc:  # no MRPC dev file under the GLUE folder (and no hub to fall back on)
        raise InputNotFoundError(f"bench queries: {str(exc).splitlines()[0]}") from exc
    pos = [(a, b) for a, b, y in zip(dev.sentence1, dev.sentence2, dev.labels, strict=True) if y == 1 and a != b]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(pos), size=min(n, len(pos)), replace=False)
    return [pos[i] for i in pick]


def bench_sentences(cfg: BenchConfig, glue_dir: str) -> tuple[list[tuple[str, str]], list[str], int]:
    """The (query, paraphrase) pairs, the real store's sentences and the count of distinct GLUE sentences.

    The store holds every paraphrase, placed at random within the smallest store, then other GLUE sentences
    (never a query) in a seeded random order, up to ``cfg.real_sentences`` in all.
    """
    qpairs = bench_queries(cfg.queries, cfg.seed, glue_dir)
    targets = [t for _, t in qpairs]
    held_out = {q for q, _ in qpairs} | set(targets)
    pool = [s for s in glue_sentences(glue_dir) if s not in held_out]
    rng = np.random.default_rng(cfg.seed)
    pool = [pool[i] for i in rng.permutation(len(pool))]
    n_real = min(cfg.real_sentences, len(pool) + len(targets))
    real_texts = targets + pool[:n_real - len(targets)]
    head = min(min(cfg.sizes), n_real)
    perm = rng.permutation(head)  # the paraphrase targets land at random places within the smallest store
    real_texts = [real_texts[i] for i in perm] + real_texts[head:]
    return qpairs, real_texts, len(pool) + len(qpairs) * 2


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
    """A store of the first ``n`` real rows, extended synthetically past the real count; (store, synthetic, s).

    A store left by an earlier run with the same rows and model is reused (0 s); any other is rebuilt.
    """
    source = f"bench: first {min(n, real.count)} rows of {real.path.name}, synthetic rows seed {seed}"
    if (path / STORE_MANIFEST).is_file():
        store = open_store(path)
        done = [x.get("source") for x in store.manifest.get("sources", [])]
        if store.count == n and store.fingerprint == real.fingerprint and done == [source]:
            return store, max(0, n - real.count), 0.0
        shutil.rmtree(path)
    start = time.perf_counter()
    store = create_store(path, model, copies=copies)
    scorer = HeadScorer(model.head)
    n_real = min(n, real.count)
    bar = tqdm(total=n, desc=f"store N={n}", unit="row", disable=not show_progress_bar)
    for lo in range(0, n_real, STORE_CHUNK):
        hi = min(lo + STORE_CHUNK, n_real)
        recs = real.records(range(lo, hi))
        append_rows(store, np.asarray(real.embeddings(lo, hi)), [t for _, t in recs], [i for i, _ in recs], scorer)
        bar.update(hi - lo)
    if n > n_real:
        base = np.asarray(real.embeddings(), dtype=np.float32)
        for lo in range(n_real, n, STORE_CHUNK):
            hi = min(lo + STORE_CHUNK, n)
            emb, texts, ids = synthetic_rows(base, lo, hi - lo, seed)
            append_rows(store, emb, texts, ids, scorer)
            bar.update(hi - lo)
    bar.close()
    store.manifest["sources"] = [{"source": source, "sha256": "", "start": 0, "count": n}]
    write_manifest(store)
    return store, n - n_real, time.perf_counter() - start


# --------------------------------------------------------------------------------------------------
# medians and summaries
# --------------------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    """The median, NaN for no values (a method that was not timed)."""
    return float(statistics.median(values)) if values else float("nan")


def summary(times: list[float]) -> dict[str, Any]:
    """The record's timing block: median (what the tables show), min, max and every time."""
    return {"median_seconds": median(times), "min_seconds": float(min(times)), "max_seconds": float(max(times)),
            "repeats": len(times), "seconds": [round(t, 6) for t in times]}


def _breakdown(parts: list[dict[str, float]]) -> dict[str, float]:
    """Median of each stage (encode, scan, ...) over the queries."""
    return {k: median([p[k] for p in parts]) for k in parts[0]}


# --------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------


def load_student(cfg: BenchConfig) -> tuple[Any, dict[str, Any]]:
    """The student on the CPU (``cfg.model``, else an untrained head on ``cfg.base``) and its record entry."""
    from ..student import DSEModel
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


def load_teacher(cfg: BenchConfig, task: Any, max_length: int) -> tuple[Any, dict[str, Any]]:
    """The cross-encoder, truncating at the student's max length so both read the same tokens."""
    from ..teacher import Teacher

    name = cfg.teacher or cfg.base
    try:
        if cfg.teacher:
            teacher = Teacher(cfg.teacher, task, max_length=max_length, device="cpu")
            info = {"source": cfg.teacher, "trained": True}
        else:
            teacher = _untrained_teacher(cfg.base, task, max_length)
            info = {"source": f"{cfg.base} with an untrained sequence-classification head (speed only)",
                    "trained": False}
    except OSError as exc:  # transformers' word for "no such folder, and no such hub id reachable"
        raise InputNotFoundError(f"bench teacher {name}: not a local model folder, and transformers could not "
                                 f"load it ({str(exc).splitlines()[0]})") from exc
    info.update({"max_length": teacher.max_length, "batch_size": cfg.teacher_batch_size,
                 "parameters": sum(p.numel() for p in teacher.model.parameters())})
    return teacher, info


def _untrained_teacher(base: str, task: Any, max_length: int) -> Any:
    """``base`` with a fresh classification head, without transformers' "newly initialised" warning."""
    import transformers

    from ..teacher import Teacher

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        return Teacher(base, task, max_length=max_length, device="cpu")
    finally:
        transformers.logging.set_verbosity(verbosity)


def st_encoder(cfg: BenchConfig, model: Any, tmp: Path, device: str | torch.device = "cpu") -> Any:
    """A plain SentenceTransformer over the same weights (loaded from the student folder), on ``device``."""
    from sentence_transformers import SentenceTransformer

    folder = Path(cfg.model) if cfg.model else tmp / "student"
    if not cfg.model and not (folder / STUDENT_CONFIG).is_file():
        model.save(folder)
    return SentenceTransformer(str(folder), device=str(device), trust_remote_code=True, local_files_only=True)


# --------------------------------------------------------------------------------------------------
# the timers
# --------------------------------------------------------------------------------------------------


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
    ds_rate = len(sentences) / median(ds_times)
    st_rate = len(sentences) / median(st_times)
    return {"sentences": len(sentences), "batch_size": batch_size, "repeats": repeats,
            "dsembed_sentences_per_s": ds_rate, "sentence_transformers_sentences_per_s": st_rate,
            "ratio_dsembed_over_st": ds_rate / st_rate, "max_abs_embedding_difference": diff,
            "dsembed_seconds": ds_times, "st_seconds": st_times}


def time_teacher(teacher: Any, queries: list[str], texts: list[str], pair_budget: int,
                 batch_size: int) -> dict[str, Any]:
    """The cross-encoder on every (query, candidate) pair, for as many queries as ``pair_budget`` allows (>= 1)."""
    n = len(texts)
    n_q = max(1, min(len(queries), pair_budget // n))
    times = []
    teacher.predict_logits([(queries[0], texts[0])] * 8, batch_size=8)
    for q in queries[:n_q]:
        t0 = time.perf_counter()
        teacher.predict_logits([(q, c) for c in texts], batch_size=batch_size, show_progress_bar=False)
        times.append(time.perf_counter() - t0)
    return {**summary(times), "pairs_per_query": n, "extrapolated": False}


def time_exact(model: Any, store: CandidateStore, queries: list[str], top_k: int, shortlist: int,
               device: torch.device | None = None) -> tuple[dict[str, Any], dict[str, Any], list[list[Hit]]]:
    """The exact head scan in fp32, then the bf16 screen + fp32 rescoring; (fp32, bf16 entries, fp32 hits).

    The fp32 hits are the reference ranking every approximate method's recall is measured against.
    ``device``: where the head scans (None: the CPU); on a GPU every precision is warmed up first, so the
    timed queries scan the blocks kept on the device.
    """
    exact: list[list[Hit]] = []
    entries = []
    for precision in ("fp32", "bf16"):
        times, parts = [], []
        if store.count <= 100_000 or device is not None:
            rank(model, queries[0], store, top_k, precision=precision, device=device)  # warm caches
        agree = 0
        for qi, q in enumerate(queries):
            tm = RankTimings()
            t0 = time.perf_counter()
            hits = rank(model, q, store, top_k, precision=precision, timings=tm, shortlist=shortlist, device=device)
            times.append(time.perf_counter() - t0)
            parts.append({"encode": tm.encode, "scan": tm.scan, "rescore": tm.rescore, "fetch": tm.fetch})
            if precision == "fp32":
                exact.append(hits)
            else:
                agree += len({h.row for h in hits} & {h.row for h in exact[qi]})
        entries.append({**summary(times), "breakdown_median": _breakdown(parts)})
    fp32, bf16 = entries
    bf16["recall_at_k_vs_fp32"] = agree / (top_k * len(queries))
    bf16["shortlist"] = shortlist
    return fp32, bf16, exact


def time_ann(cfg: BenchConfig, model: Any, store: CandidateStore, queries: list[str], exact: list[list[Hit]],
             kind: str) -> dict[str, Any]:
    """Build the ``kind`` FAISS prefilter, time every (nprobe, M, re-rank precision) of the grid, pick the best.

    Settings whose M is not below N, or whose bf16 re-rank would not shortlist anything, are skipped.
    """
    t0 = time.perf_counter()
    build_ann(store, "auto", kind=kind, model=model, show_progress_bar=cfg.show_progress_bar)
    ann = load_ann(store, kind)
    entry: dict[str, Any] = {"kind": kind, "factory": ann.meta["factory"],
                             "build_seconds": time.perf_counter() - t0, "grid": []}
    nprobes = cfg.nprobes if ann.meta["factory"].startswith("IVF") else (None,)
    for nprobe in nprobes:
        for m in cfg.prefilters:
            if m >= store.count:
                continue
            for rr in cfg.rerank_precisions:
                if rr == "bf16" and m <= cfg.bf16_shortlist:
                    continue
                kw = {"prefilter": m, "nprobe": nprobe, "ann": ann, "precision": rr,
                      "shortlist": cfg.bf16_shortlist}
                entry["grid"].append({"prefilter_m": m, "nprobe": nprobe, "rerank": rr,
                                      **_time_prefiltered(model, store, queries, exact, cfg.top_k, kw)})
    grid = entry["grid"]
    ok = [g for g in grid if g["recall_at_k"] >= 0.95]
    entry["best_at_recall_0.95"] = min(ok, key=lambda g: g["median_seconds"]) if ok else None
    entry["most_accurate"] = max(grid, key=lambda g: (g["recall_at_k"], -g["median_seconds"])) if grid else None
    return entry


def _time_prefiltered(model: Any, store: CandidateStore, queries: list[str], exact: list[list[Hit]], top_k: int,
                      kw: dict[str, Any]) -> dict[str, Any]:
    """One grid point: prefilter top-M + exact re-rank, timed, with recall@k against the exact ranking."""
    rank(model, queries[0], store, top_k, **kw)
    times, found, parts = [], 0, []
    for qi, q in enumerate(queries):
        tm = RankTimings()
        t0 = time.perf_counter()
        got = rank(model, q, store, top_k, timings=tm, **kw)
        times.append(time.perf_counter() - t0)
        parts.append({"encode": tm.encode, "prefilter": tm.prefilter, "rescore": tm.rescore})
        found += len({h.row for h in got} & {h.row for h in exact[qi]})
    return {**summary(times), "recall_at_k": found / (top_k * len(queries)), "breakdown_median": _breakdown(parts)}


def time_st_cosine(st: Any, store: CandidateStore, queries: list[str], top_k: int) -> dict[str, Any]:
    """Plain sentence-transformers: encode the query, ``util.semantic_search`` over the normalised corpus in RAM."""
    from sentence_transformers import util as st_util

    corpus = np.empty((store.count, store.dim), dtype=np.float32)
    for lo in range(0, store.count, STORE_CHUNK):
        block = np.asarray(store.embeddings(lo, lo + STORE_CHUNK))
        corpus[lo:lo + len(block)] = block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
    corpus_t = torch.from_numpy(corpus)
    times = []
    st_util.semantic_search(st.encode([queries[0]], convert_to_tensor=True, normalize_embeddings=True,
                                      show_progress_bar=False), corpus_t,
                            top_k=top_k, score_function=st_util.dot_score)
    for q in queries:
        t0 = time.perf_counter()
        qe = st.encode([q], convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
        st_util.semantic_search(qe, corpus_t, top_k=top_k, score_function=st_util.dot_score)
        times.append(time.perf_counter() - t0)
    del corpus, corpus_t
    gc.collect()
    return {**summary(times), "method": "SentenceTransformer.encode(normalize_embeddings=True) + "
            "util.semantic_search(dot_score) over the pre-normalised corpus in RAM"}
