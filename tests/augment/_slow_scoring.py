"""Child process for the kill test: scores mined pairs slowly, printing after every committed chunk."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import MRPC, HashTeacher  # noqa: E402
from dsembed.augment import MinedPairs, score_mined  # noqa: E402


class SlowTeacher(HashTeacher):
    def predict_logits(self, pairs, batch_size: int = 64, show_progress_bar=None):  # noqa: ANN001, ANN201
        time.sleep(0.3)
        return super().predict_logits(pairs, batch_size, show_progress_bar)


if __name__ == "__main__":
    mined_file, store = sys.argv[1], sys.argv[2]
    score_mined(SlowTeacher(MRPC), MinedPairs.load(mined_file), cache=store, chunk_size=8,
                on_chunk=lambda done, total: print(f"chunk {done}/{total}", flush=True))
