"""One query against many candidates: the candidate store, exact head ranking, FAISS prefilter, all-pairs."""

from .store import (
    PREFILTER_KINDS,
    AnnIndex,
    CandidateStore,
    HeadScorer,
    Hit,
    PairBlock,
    RankTimings,
    ann_recall,
    build_ann,
    build_store,
    discard_pending,
    fit_surrogate,
    has_ann,
    ingest,
    iter_all_pairs,
    load_ann,
    model_fingerprint,
    open_store,
    rank,
    rescore,
    resolve_label,
    scan_topk,
    screen_rows,
    sentences_fingerprint,
)

__all__ = ["PREFILTER_KINDS", "AnnIndex", "CandidateStore", "HeadScorer", "Hit", "PairBlock", "RankTimings",
           "ann_recall", "build_ann", "build_store", "discard_pending", "fit_surrogate", "has_ann", "ingest",
           "iter_all_pairs", "load_ann", "model_fingerprint", "open_store", "rank", "rescore", "resolve_label",
           "scan_topk", "screen_rows", "sentences_fingerprint"]
