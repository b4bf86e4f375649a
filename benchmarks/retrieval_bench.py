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

from dsembed.artifacts import RETRIEVAL_PLOT, RETRIEVAL_QNLI_SPLIT, RETRIEVAL_QNLI_TRAIN, RETRIEVAL_RECORD
from dsembed.bench import RetrievalEvalConfig, evaluate_retrieval
from dsembed.bench.retrieval_eval import summary_rows
from dsembed.data import BUILTIN_SETS, load_ranking_set, qnli_halves
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


def export_qnli_train(folder: Path, seed: int) -> None:
    """The QNLI dev half whose questions the benchmark never asks, as a TSV to distil on (+ the split record)."""
    halves = qnli_halves(seed=seed)
    labels = get_task("qnli").labels
    rows = [f"{a}\t{b}\t{labels[int(y)]}" for a, b, y in
            zip(halves.train.sentence1, halves.train.sentence2, halves.train.labels, strict=True)]
    text = "\n".join(["sentence1\tsentence2\tlabel", *rows]) + "\n"
    atomic_write_bytes(folder / RETRIEVAL_QNLI_TRAIN, text.encode())
    atomic_write_json(folder / RETRIEVAL_QNLI_SPLIT, halves.record)
    questions = halves.record["train_half"]["questions"]
    print(f"wrote {folder / RETRIEVAL_QNLI_TRAIN} ({len(rows)} pairs, {questions} questions)")


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
    args = parser.parse_args()
    if args.export_qnli_train is not None:
        export_qnli_train(args.export_qnli_train, args.split_seed)
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
