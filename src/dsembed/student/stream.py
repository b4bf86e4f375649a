"""The rows a student trains on, and, for a step-budgeted run, the exact order it sees them in.

A plain run lets the Trainer shuffle the labelled pairs once per epoch. A run with mined pairs or a
step budget (``max_steps``, ``equal_compute``) gets its whole training stream laid out here instead:
row indices for every position of every batch, drawn from the seed alone. The Trainer then reads
that stream in order, so a resumed run skips exactly the batches it had done, and the mixing ratio
holds per batch ("mixed") or over each pass ("concat").
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from torch.utils.data import Dataset
from transformers import TrainerCallback

from ..config import StudentConfig
from ..data import PairDataset


class PairRows(Dataset):
    """Training or dev rows: the two sentences, the label, the teacher's targets, whether the label is gold."""

    def __init__(self, data: PairDataset, targets: np.ndarray | None, label_mask: np.ndarray | None = None) -> None:
        self.data = data
        self.targets = targets
        self.label_mask = label_mask

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row: dict[str, Any] = {"a": self.data.sentence1[i], "b": self.data.sentence2[i]}
        if self.data.labels is not None:
            row["labels"] = float(self.data.labels[i])
        if self.targets is not None:
            row["teacher_logits"] = self.targets[i]
        if self.label_mask is not None:
            row["label_mask"] = bool(self.label_mask[i])
        return row


class StreamRows(Dataset):
    """``rows`` read in the order ``order`` gives: one item per position of the training stream."""

    def __init__(self, rows: Dataset, order: np.ndarray) -> None:
        self.rows = rows
        self.order = order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[int(self.order[i])]


def steps_per_epoch(n_rows: int, config: StudentConfig, world_size: int = 1) -> int:
    """Optimiser steps of one pass over ``n_rows``, counted as the HF Trainer counts them."""
    batches = math.ceil(n_rows / (config.batch_size * world_size))
    accumulation = config.gradient_accumulation_steps
    return max(batches // accumulation + int(batches % accumulation > 0), 1)


def labelled_only_steps(n_labelled: int, config: StudentConfig, world_size: int = 1) -> int:
    """The optimiser steps of the epoch run on the labelled pairs alone: the equal-compute budget."""
    return math.ceil(config.epochs * steps_per_epoch(n_labelled, config, world_size))


def evaluation_steps(total_steps: int, epochs: float) -> list[int]:
    """Where a step-budgeted run evaluates and saves: ceil(epochs) points spread evenly, the last at the
    final step, so it is selected among as many evaluations as the epoch run (at its epoch ends, when
    the budget is the labelled-only one)."""
    count = max(1, min(math.ceil(epochs), total_steps))
    return sorted({max(1, round(k * total_steps / count)) for k in range(1, count + 1)})


def _cycled(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` indices from fresh permutations of ``range(n)`` one after another: every row once per pass."""
    passes = [rng.permutation(n) for _ in range(math.ceil(count / n))] if count and n else []
    return np.concatenate(passes)[:count] if passes else np.zeros(0, dtype=np.int64)


def mined_per_batch(batches: int, batch_rows: int, ratio: float) -> np.ndarray:
    """Mined rows in each batch of a "mixed" stream: the cumulative count tracks ``ratio / (1 + ratio)``
    of all rows, so every batch holds the ratio up to one row, and no rounding drifts over the run."""
    share = ratio / (1.0 + ratio)
    cumulative = np.round(np.arange(batches + 1) * batch_rows * share).astype(np.int64)
    return np.diff(cumulative)


def training_stream(n_labelled: int, n_mined: int, ratio: float, sampling: str, batch_rows: int,
                    total_rows: int, seed: int) -> np.ndarray:
    """Row indices for every position of the run (labelled rows ``0..n_labelled-1``, mined rows after).

    Labelled and mined rows are each drawn pass by pass from seeded permutations, so a mined set
    larger than the run needs is subsampled and a smaller one is cycled. "mixed": each batch of
    ``batch_rows`` holds ``ratio`` mined rows per labelled row; "concat": each pass of the labelled
    set and ``round(ratio * n_labelled)`` mined rows is shuffled into one stream.
    """
    labelled_rng, mined_rng, shuffle_rng = (np.random.default_rng([seed, k]) for k in range(3))
    if n_mined == 0 or ratio == 0:
        return _cycled(n_labelled, total_rows, labelled_rng)
    if sampling == "mixed":
        batches = math.ceil(total_rows / batch_rows)
        mined_counts = mined_per_batch(batches, batch_rows, ratio)
        is_mined = np.arange(batch_rows)[None, :] >= (batch_rows - mined_counts)[:, None]  # labelled rows first
        order = np.empty(is_mined.shape, dtype=np.int64)
        order[~is_mined] = _cycled(n_labelled, int((~is_mined).sum()), labelled_rng)
        order[is_mined] = _cycled(n_mined, int(is_mined.sum()), mined_rng) + n_labelled
        return order.reshape(-1)[:total_rows]
    per_pass = round(ratio * n_labelled)
    passes = math.ceil(total_rows / (n_labelled + per_pass))
    mined_all = _cycled(n_mined, passes * per_pass, mined_rng) + n_labelled
    chunks = [shuffle_rng.permutation(np.concatenate([labelled_rng.permutation(n_labelled),
                                                      mined_all[p * per_pass:(p + 1) * per_pass]]))
              for p in range(passes)]
    return np.concatenate(chunks)[:total_rows]


class EvaluateAtSteps(TrainerCallback):
    """Evaluate and checkpoint at the given optimiser steps (a step-budgeted run's stand-in for epoch ends)."""

    def __init__(self, steps: list[int]) -> None:
        self.steps = set(steps)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step in self.steps:
            control.should_evaluate = True
            control.should_save = True
        return control
