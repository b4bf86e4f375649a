"""Make the carried teacher for a quick augmented main job: one teacher's logits on the labelled pairs,
dev and test (a LogitsBundle) and on pairs mined from each seed's labelled subset (a mined bundle).

Run where the teacher is (a CPU here, or a GPU box); only the two small bundles are kept. Every
stage is resumable: teacher scores go through the pair-hash keyed caches.

    python benchmarks/augment_bundle.py --teacher RUN/teacher/model --task mrpc --seeds 42,43,44 \
        --max-train-pairs 500 --per-sentence 1 --max-pairs-per-seed 800 -o results/teachers/mrpc-mpnet-cpu-s42
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from dsembed.augment import MinedPairs, mine_pairs, score_mined, write_mined_bundle
from dsembed.data import PairDataset, load_glue
from dsembed.errors import InputNotFoundError
from dsembed.tasks import get_task
from dsembed.teacher import load_teacher, write_logits_bundle
from dsembed.utils import atomic_write_json, environment_record


def _union(parts: list[MinedPairs]) -> MinedPairs:
    """Every seed's mined pairs once (a pair two seeds both mined is kept at its first place)."""
    seen: set[tuple[str, str]] = set()
    s1: list[str] = []
    s2: list[str] = []
    strategy: list[str] = []
    for part in parts:
        for a, b, s in zip(part.pairs.sentence1, part.pairs.sentence2, part.strategy, strict=True):
            if (a, b) not in seen:
                seen.add((a, b))
                s1.append(a)
                s2.append(b)
                strategy.append(s)
    return MinedPairs(PairDataset(s1, s2, None, source="mined"), strategy,
                      {"seeds": [p.record for p in parts], "rows": len(s1)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--task", default="mrpc")
    ap.add_argument("--seeds", default="42,43,44")
    ap.add_argument("--max-train-pairs", type=int, default=500)
    ap.add_argument("--strategies", default="random,bm25,embedding,swap")
    ap.add_argument("--per-sentence", type=int, default=1)
    ap.add_argument("--max-pairs-per-seed", type=int, default=800)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--cache", default=None, help="teacher-score cache folder (resumable)")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    task = get_task(args.task)
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.output)
    train = load_glue(task, "train", data_dir=args.data_dir)
    dev = load_glue(task, "dev", data_dir=args.data_dir)
    try:
        test = load_glue(task, "test", data_dir=args.data_dir, source="local")
        test = test if test.labels is not None else None
    except InputNotFoundError:  # RTE has no labelled test split here
        test = None
    exclude = [dev] + ([test] if test is not None else [])
    times: dict[str, float] = {}
    start = time.perf_counter()
    subsets = {s: train.subset(args.max_train_pairs, seed=s) for s in seeds}
    mined = [mine_pairs(subsets[s], strategies=tuple(args.strategies.split(",")), per_sentence=args.per_sentence,
                        exclude=exclude, seed=s, max_pairs=args.max_pairs_per_seed) for s in seeds]
    union = _union(mined)
    times["mining"] = time.perf_counter() - start
    print(f"mined {len(union)} pairs for seeds {seeds} in {times['mining']:.0f} s", file=sys.stderr)

    teacher = load_teacher(args.teacher, task, max_length=args.max_length)
    labelled_rows = sorted({i for s in seeds for i in _rows_of(train, subsets[s])})
    labelled = train.select(labelled_rows)
    start = time.perf_counter()
    write_logits_bundle(teacher, labelled, dev, out, test=test, show_progress_bar=True,
                        extra_info={"base_name": teacher.info.get("base_name") or _base_name(teacher.info),
                                    "environment": environment_record(),
                                    "labelled_subsets": {"seeds": seeds, "max_train_pairs": args.max_train_pairs}})
    times["labelled_dev_test_scoring"] = time.perf_counter() - start
    start = time.perf_counter()
    scored = score_mined(teacher, union, cache=args.cache, show_progress_bar=True)
    times["mined_scoring"] = time.perf_counter() - start
    write_mined_bundle(scored, out / "mined")
    record = {"command": " ".join(sys.argv), "teacher": str(args.teacher), "teacher_info": teacher.info,
              "labelled_pairs_scored": len(labelled), "dev_pairs": len(dev), "test_pairs": len(test or []),
              "mined_pairs": len(union), "mined_per_strategy": dict(Counter(union.strategy)),
              "wall_seconds": times, "pairs_per_second_mined": len(union) / max(times["mined_scoring"], 1e-9),
              "environment": environment_record()}
    atomic_write_json(out / "augment_bundle.json", record)
    print(json.dumps({k: record[k] for k in ("mined_pairs", "mined_per_strategy", "wall_seconds")}, indent=1))


def _rows_of(train: PairDataset, subset: PairDataset) -> list[int]:
    index = {h: i for i, h in enumerate(train.pair_hashes().tolist())}
    return [index[h] for h in subset.pair_hashes().tolist()]


def _base_name(info: dict) -> str:
    base = str((info.get("recipe") or {}).get("base", "?"))
    return Path(base).name or base


if __name__ == "__main__":
    main()
