"""``dsembed eval-retrieval``: how well each method ranks a retrieval set (a thin layer over the Python API)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError, InputNotFoundError
from .common import App, DataDirOpt, setup


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"{option} takes comma separated integers, got {text!r}") from None
    if not values:
        raise ConfigError(f"{option} needs at least one value")
    return values


def _students(specs: list[str]) -> dict[str, str]:
    """``NAME=FOLDER`` options as a name -> folder map (names unique, folders present)."""
    students: dict[str, str] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise ConfigError(f"--student takes NAME=FOLDER (e.g. dse=runs/mrpc/student/model), got {spec!r}")
        if name.strip() in students:
            raise ConfigError(f"--student name {name.strip()!r} is given twice")
        if not Path(folder.strip()).is_dir():
            raise InputNotFoundError(f"--student {name.strip()}: {folder.strip()} is not a folder")
        students[name.strip()] = folder.strip()
    return students


def eval_retrieval(
    set_: Annotated[str, typer.Option("--set", help="mrpc-test, stsb-test, qnli-bench, or a pair file with a gold "
                                                    "column (.tsv/.csv/.jsonl; give --kind)")],
    student: Annotated[list[str] | None, typer.Option(help="NAME=FOLDER, repeatable: methods NAME-head, "
                                                           "NAME-head-ann, NAME-cosine")] = None,
    base: Annotated[str, typer.Option(help="the untouched encoder for pretrained-cosine ('' to skip)")]
    = "all-MiniLM-L6-v2",
    teacher: Annotated[str | None, typer.Option(help="cross-encoder folder for the teacher column and cascades")]
    = None,
    methods: Annotated[str, typer.Option(help="comma separated: head, head-ann, cosine, pretrained-cosine, bm25, "
                                              "teacher, cascade")] = "head,head-ann,cosine,pretrained-cosine,bm25,"
                                                                     "teacher,cascade",
    cascade_k: Annotated[str, typer.Option(help="first-stage depths the teacher re-ranks")] = "10,20,50,100",
    cascade_from: Annotated[str | None, typer.Option(help="first stages of the cascades (default: bm25, "
                                                          "pretrained-cosine, the first student's head)")] = None,
    teacher_queries: Annotated[int | None, typer.Option(help="teacher and cascades on a seeded sample of N queries "
                                                             "(default: all)")] = None,
    seed: Annotated[int, typer.Option(help="the seed of the teacher's query sample")] = 0,
    split_seed: Annotated[int, typer.Option(help="qnli-bench: the seed of the split into halves (must be the one "
                                                 "the students' QNLI train half was made with)")] = 0,
    kind: Annotated[str | None, typer.Option(help="a pair file's gold column: binary or regression")] = None,
    relevant_min: Annotated[float | None, typer.Option(help="gain at which a candidate is relevant (default: 4 "
                                                            "for scores, 1 for labels)")] = None,
    ann_prefilter: Annotated[int, typer.Option(help="FAISS candidates the head re-ranks in NAME-head-ann")] = 200,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="the record (.json)")] = None,
    plot: Annotated[Path | None, typer.Option(help="folder for the quality-vs-teacher-calls plot")] = None,
    work_dir: Annotated[Path | None, typer.Option(help="stores and the teacher score cache (default: cache dir); "
                                                       "a rerun resumes from it")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Ranking quality (MRR@10, nDCG@10, recall) of DSE, cosine, BM25, the teacher and cascades on one set."""
    setup()
    from ..artifacts import RETRIEVAL_PLOT
    from ..bench import RetrievalEvalConfig, evaluate_retrieval
    from ..bench.retrieval_eval import summary_rows
    from ..data import load_ranking_set
    from ..evaluation.plots import plot_quality_vs_teacher_calls
    from ..utils import atomic_write_json

    if output is not None and output.is_dir():
        raise ConfigError(f"-o {output} is a folder; give the record's file name (e.g. {output}/record.json)")
    cfg = RetrievalEvalConfig(students=_students(student or []), base=base or None, teacher=teacher,
                              methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
                              cascade_k=_ints(cascade_k, "--cascade-k"),
                              cascade_from=tuple(x.strip() for x in cascade_from.split(",")) if cascade_from else None,
                              teacher_queries=teacher_queries, seed=seed, ann_prefilter=ann_prefilter,
                              work_dir=str(work_dir) if work_dir else None)
    cfg.check()  # before the set is read or any model loaded
    rset = load_ranking_set(set_, kind=kind, relevant_min=relevant_min, data_dir=data_dir, seed=split_seed)
    record = evaluate_retrieval(rset, cfg)
    if output is not None:
        atomic_write_json(output, record)
    if plot is not None:
        record["plot"] = str(plot_quality_vs_teacher_calls(record, plot / RETRIEVAL_PLOT.format(set=rset.name)))
    typer.echo("\n".join(summary_rows(record)))
    if record["teacher"] is None and {"teacher", "cascade"} & set(cfg.methods):
        typer.secho("no --teacher given: the teacher column and the cascades were skipped", err=True)


def register(app: App) -> None:
    app.command("eval-retrieval")(eval_retrieval)
