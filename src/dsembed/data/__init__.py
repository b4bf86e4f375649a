"""Pair and sentence data: strict readers (TSV/CSV/JSONL), GLUE (local copy or hub), ``PairDataset``."""

from .readers import (
    GLUE_DIR_ENV,
    PAIR_SUFFIXES,
    SENTENCE_SUFFIXES,
    PairDataset,
    default_glue_dir,
    load_glue,
    load_hf_pairs,
    read_pairs,
    read_sentences,
)

__all__ = ["GLUE_DIR_ENV", "PAIR_SUFFIXES", "SENTENCE_SUFFIXES", "PairDataset", "default_glue_dir", "load_glue",
           "load_hf_pairs", "read_pairs", "read_sentences"]
