#!/usr/bin/env python
"""Ranking quality on the three retrieval sets (MRPC test, STS-B test, the QNLI benchmark half), one record each.

Each set gets its own students and teacher (trained on that task; for QNLI on the *other* half of QNLI dev,
see ``--export-qnli-train``), and every method runs side by side on the same queries:

    python benchmarks/retrieval_bench.py \\
        --student mrpc-test:dse=RUN/mrpc/dse_student/model \\
        --student mrpc-test:label-only=RUN/mrpc/label_only_student/model \\
        --teacher mrpc-test=RUN/mrpc/teacher/model  ...same for stsb-test and qnli-bench... \\
        --teacher-queries 50                     ->  results/retrieval/<set>.json + <set>.png

    python benchmarks/retrieval_bench.py --export-qnli-train DIR   # DIR/qnli_train_half.tsv: the QNLI half to distil on

A set without a teacher still runs its first stages (no teacher column, no cascades).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dsembed.artifacts import (
    RETRIEVAL_PLOT,
    RETRIEVAL_QNLI_FILES,
    RETRIEVAL_QNLI_SPLIT,
    RETRIEVAL_QNLI_TRAIN,
    RETRIEVAL_RECORD,
)
from dsembed.bench import RetrievalEvalConfig, evaluate_retrieval
from dsembed.bench.retrieval_eval import summary_rows
from dsembed.data import BUILTIN_SETS, PairDataset, load_ranking_set, qnli_halves, split_by_question
from dsembed.evaluation.plots import plot_quality_vs_teacher_calls
from dsembed.tasks import get_task
from dsembed.utils import atomic_write_bytes, atomic_write_json

ROOT = Path(__file__).resolve().parents[1]


def _per_set(values: list[str], option: str) -> dict[str, list[tuple[str, str]]]:
    """``SET:NAME=FOLDER`` (students) or ``SET=FOLDER`` (teachers) -> set -> [(name, folder)]."""
    out: dict[str, list[tuple[str, str]]] = {}
    for value in values:
        head, sep, folder = value.partition("=")
        set_name, _, name = head.partition(":")
        if not sep or set_name not in BUILTIN_SETS:
            sys.exit(f"error: {option} {value!r}: expected SET{':NAME' if option == '--student' else ''}=FOLDER "
                     f"with SET one of {', '.join(BUILTIN_SETS)}")
        out.setdefault(set_name, []).append((name, folder))
    return out


def _write_pairs(path: Path, data: PairDataset, labels: tuple[str, ...]) -> None:
    rows = [f"{a}\t{b}\t{labels[int(y)]}" for a, b, y in zip(data.sentence1, data.sentence2, data.labels, strict=True)]
    atomic_write_bytes(path, ("\n".join(["sentence1\tsentence2\tlabel", *rows]) + "\n").encode())


def export_qnli_train(folder: Path, seed: int, dev_fraction: float) -> None:
    """The QNLI dev half whose questions the benchmark never asks, as TSVs to distil on (+ the split record).

    ``qnli_train_half.tsv`` is the whole half; ``train.tsv`` / ``dev.tsv`` split it by question so that
    teacher and student checkpoints are selected on the train half only; ``test.tsv`` is the benchmark
    half's pairs, for the pair-classification accuracy that is reported and never selected on.
    """
    halves = qnli_halves(seed=seed)
    labels = get_task("qnli").labels
    train, dev = split_by_question(halves.train, dev_fraction, seed=seed)
    bench_pairs = halves.bench_pairs
    _write_pairs(folder / RETRIEVAL_QNLI_TRAIN, halves.train, labels)
    for name, part in zip(RETRIEVAL_QNLI_FILES, (train, dev, bench_pairs), strict=True):
        _write_pairs(folder / name, part, labels)
    record = {**halves.record, "dev_fraction": dev_fraction,
              "files": {name: len(part) for name, part in zip(RETRIEVAL_QNLI_FILES, (train, dev, bench_pairs),
                                                              strict=True)}}
    atomic_write_json(folder / RETRIEVAL_QNLI_SPLIT, record)
    print(f"wrote {folder} (train half {len(halves.train)} pairs, {halves.record['train_half']['questions']} "
          f"questions: {len(train)} train / {len(dev)} dev pairs; {len(bench_pairs)} benchmark pairs as test)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default=",".join(BUILTIN_SETS))
    parser.add_argument("--student", action="append", default=[], help="SET:NAME=FOLDER, repeatable")
    parser.add_argument("--teacher", action="append", default=[], help="SET=FOLDER")
    parser.add_argument("--base", default="all-MiniLM-L6-v2")
    parser.add_argument("--teacher-queries", type=int, default=50)
    parser.add_argument("--cascade-k", default="10,20,50,100")
    parser.add_argument("--seed", type=int, default=0, help="the teacher's query sample")
    parser.add_argument("--split-seed", type=int, default=0, help="the QNLI halves (students must use the same)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "retrieval")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--export-qnli-train", type=Path, default=None, metavar="DIR")
    parser.add_argument("--dev-fraction", type=float, default=0.15,
                        help="--export-qnli-train: share of the train half's questions held out to select on")
    args = parser.parse_args()
    if args.export_qnli_train is not None:
        export_qnli_train(args.export_qnli_train, args.split_seed, args.dev_fraction)
        return
    students, teachers = _per_set(args.student, "--student"), _per_set(args.teacher, "--teacher")
    for set_name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        teacher = teachers.get(set_name, [("", None)])[0][1]
        cfg = RetrievalEvalConfig(students=dict(students.get(set_name, [])), base=args.base or None, teacher=teacher,
                                  cascade_k=tuple(int(k) for k in args.cascade_k.split(",")),
                                  teacher_queries=args.teacher_queries, seed=args.seed,
                                  work_dir=str(args.work_dir) if args.work_dir else None)
        record = evaluate_retrieval(load_ranking_set(set_name, seed=args.split_seed), cfg)
        plot = plot_quality_vs_teacher_calls(record, args.out / RETRIEVAL_PLOT.format(set=set_name))
        record["plot"] = plot.name
        atomic_write_json(args.out / RETRIEVAL_RECORD.format(set=set_name), record)
        print(f"== {set_name} ({record['wall_seconds']:.0f} s)", *summary_rows(record), sep="\n")


if __name__ == "__main__":
    main()
