"""Teacher-scored augmentation: mine unlabelled pairs, score them with the teacher, balance by score bands.

``mine`` builds new pairs from the training sentences (never a dev/test one), ``score`` runs the
teacher over them through the resumable logits cache and writes portable bundles, ``balance`` evens
out the teacher-score distribution of what is kept.
"""

from .balance import balance_by_bands
from .mine import MinedPairs, mine_pairs
from .pool import read_sentence_pool
from .score import (
    ScoredPairs,
    load_mined_bundle,
    load_mined_rows,
    score_mined,
    unscored_pairs,
    write_mined_bundle,
)
from .strategies import STRATEGIES

__all__ = ["STRATEGIES", "MinedPairs", "ScoredPairs", "balance_by_bands", "load_mined_bundle", "load_mined_rows",
           "mine_pairs",
           "read_sentence_pool", "score_mined", "unscored_pairs", "write_mined_bundle"]
