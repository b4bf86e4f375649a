"""Pair and sentence data: strict readers (TSV/CSV/JSONL/TXT), GLUE (local copy or hub), ``PairDataset``.

``readers`` reads files (over ``records``, which turns bytes into numbered records), ``glue`` finds
GLUE splits locally or on the hub, ``pairs`` holds the dataset type and its cache hashes, ``ranking_sets``
turns labelled pairs into retrieval sets.
"""

from .glue import GLUE_DIR_ENV, default_glue_dir, load_glue, load_hf_pairs
from .pairs import PairDataset
from .ranking_sets import (
                           BUILTIN_SETS,
                           QnliHalves,
                           RankingSet,
                           load_ranking_set,
                           mrpc_test_set,
                           qnli_halves,
                           ranking_set_from_pairs,
                           split_by_question,
                           stsb_test_set,
)
from .readers import PAIR_SUFFIXES, SENTENCE_SUFFIXES, read_pairs, read_sentences

__all__ = ["BUILTIN_SETS", "GLUE_DIR_ENV", "PAIR_SUFFIXES", "SENTENCE_SUFFIXES", "PairDataset", "QnliHalves",
           "RankingSet", "default_glue_dir", "load_glue", "load_hf_pairs", "load_ranking_set", "mrpc_test_set",
           "qnli_halves", "ranking_set_from_pairs", "read_pairs", "read_sentences", "split_by_question",
           "stsb_test_set"]
