"""``build_store_ray`` in this process, on its own local Ray; ``DSEMBED_FAULT`` may SIGKILL it (see _faulty_cli.py).

    python _ray_store_job.py MODEL CANDIDATES.txt STORE CHUNK_SIZE
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

if __name__ == "__main__":
    from _faulty_cli import _arm

    if os.environ.get("DSEMBED_FAULT"):
        _arm(os.environ["DSEMBED_FAULT"])
    from dsembed.scale import build_store_ray

    model, candidates, store, chunk_size = sys.argv[1:5]
    build_store_ray(model, Path(candidates).read_text().splitlines(), store, source="candidates",
                    chunk_size=int(chunk_size), batch_size=4, show_progress_bar=False, address="local",
                    concurrency=1, num_cpus=1)
