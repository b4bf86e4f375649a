"""Pair and sentence data: strict readers (TSV/CSV/JSONL/TXT), GLUE (local copy or hub), ``PairDataset``.

``readers`` reads files (over ``records``, which turns bytes into numbered records), ``glue`` finds
GLUE splits locally or on the hub, ``pairs`` holds the dataset type and its cache hashes.
"""

from .glue import GLUE_DIR_ENV, default_glue_dir, load_glue, load_hf_pairs
from .pairs import PairDataset
from .readers import PAIR_SUFFIXES, SENTENCE_SUFFIXES, read_pairs, read_sentences

__all__ = ["GLUE_DIR_ENV", "PAIR_SUFFIXES", "SENTENCE_SUFFIXES", "PairDataset", "default_glue_dir", "load_glue",
           "load_hf_pairs", "read_pairs", "read_sentences"]
