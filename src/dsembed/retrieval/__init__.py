"""One query against many candidates: the candidate store, exact head ranking, FAISS prefilter, all-pairs.

Modules, lowest first: ``manifest`` (read and validate a store manifest, chunk checksums), ``store`` (read
a store folder), ``rows`` (a chunk's rows checked and turned into file bytes), ``scoring`` (what a head
score means for ranking), ``ann`` (FAISS prefilter indexes), ``build`` (the only writer of a store),
``verify`` (every byte against the manifest's checksums), ``rerank`` (a cross-encoder over the head's top
candidates), ``search`` (exact ranking, :func:`rank`), ``allpairs`` (every pair within a set). The head
algebra itself, :class:`HeadScorer`, lives with the head in :mod:`dsembed.student.head`.
"""

from ..student.head import HeadScorer
from .allpairs import PairBlock, iter_all_pairs
from .ann import PREFILTER_KINDS, AnnIndex, build_ann, fit_surrogate, has_ann, load_ann
from .build import append_rows, build_store, create_store, discard_pending, ingest, write_manifest
from .device import drop_device_cache
from .manifest import StoreCorruptError
from .rerank import DEFAULT_RERANK_TOP, PairScorer, TurnTakingScorer, check_reranker, rerank_hits
from .scoring import resolve_label
from .search import Hit, RankTimings, ann_recall, rank, rescore, scan_topk, screen_rows
from .store import CandidateStore, model_fingerprint, open_store, sentences_fingerprint
from .verify import VerifyReport, verify_store

__all__ = ["DEFAULT_RERANK_TOP", "PREFILTER_KINDS", "AnnIndex", "CandidateStore", "HeadScorer", "Hit", "PairBlock",
           "PairScorer", "RankTimings", "StoreCorruptError", "TurnTakingScorer", "VerifyReport", "ann_recall",
           "append_rows", "build_ann", "build_store", "check_reranker", "create_store", "discard_pending",
           "drop_device_cache", "fit_surrogate", "has_ann", "ingest", "iter_all_pairs", "load_ann",
           "model_fingerprint", "open_store", "rank", "rerank_hits", "rescore", "resolve_label", "scan_topk",
           "screen_rows", "sentences_fingerprint", "verify_store", "write_manifest"]
