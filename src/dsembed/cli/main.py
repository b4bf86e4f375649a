"""``dsembed`` command line: a thin layer over the Python API."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import DataFormatError, RunConfigMismatch, StaleLogitsError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Distilled Sentence Embedding: teacher -> logits -> siamese student -> fast pair scores.")
teacher_app = typer.Typer(no_args_is_help=True, help="Fine-tune or inspect the cross-encoder teacher.")
app.add_typer(teacher_app, name="teacher")

TaskArg = Annotated[str, typer.Argument(help="GLUE task (mrpc, stsb, rte, qnli, qqp, mnli) or your own task name")]
TrainOpt = Annotated[Path | None, typer.Option(help="own train file (.tsv/.csv/.jsonl: sentence1, sentence2, label)")]
DevOpt = Annotated[Path | None, typer.Option(help="own dev file (same format)")]
KindOpt = Annotated[str | None, typer.Option(help="own task kind: binary, regression or multiclass")]
LabelsOpt = Annotated[str | None, typer.Option(help="own task labels in class order, comma separated")]
SkipOpt = Annotated[bool, typer.Option("--skip-bad", help="skip malformed rows (their count is reported)")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="progress bars")]


def _setup() -> None:
    logging.basicConfig(level=os.environ.get("DSEMBED_LOG", "INFO"), format="%(levelname)s %(name)s: %(message)s")
    import transformers

    transformers.logging.set_verbosity_error()


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _task_and_data(task: str, train: Path | None, dev: Path | None, kind: str | None, labels: str | None,
                   skip_bad: bool, data_dir: Path | None = None, source: str = "auto"):  # noqa: ANN202
    """A GLUE task (local copy or hub) or a user task from files."""
    from ..data import load_glue, read_pairs
    from ..tasks import custom_task, get_task

    try:
        if kind:
            spec = custom_task(task, kind, tuple(x.strip() for x in (labels or "").split(",") if x.strip()))
        else:
            spec = get_task(task)
        train_ds = read_pairs(train, spec, skip_bad=skip_bad) if train else \
            load_glue(spec, "train", data_dir=data_dir, source=source, skip_bad=skip_bad)
        dev_ds = read_pairs(dev, spec, skip_bad=skip_bad) if dev else \
            load_glue(spec, "dev", data_dir=data_dir, source=source, skip_bad=skip_bad)
    except (DataFormatError, FileNotFoundError, KeyError, ValueError) as exc:
        _fail(str(exc))
    for ds in (train_ds, dev_ds):
        if ds.skipped:
            typer.secho(f"skipped {ds.skipped} malformed rows in {ds.source}", fg=typer.colors.YELLOW, err=True)
    return spec, train_ds, dev_ds


@app.command()
def pipeline(
    task: TaskArg = "mrpc",
    profile: Annotated[str, typer.Option(help="quick: minutes on a CPU; full: all pairs, default settings")] = "quick",
    output_dir: Annotated[Path | None, typer.Option(help="run folder (default runs/<profile>/<task>)")] = None,
    teacher: Annotated[str | None, typer.Option(help="ready cross-encoder(s) as teacher; a,b = ensemble")] = None,
    teacher_logits: Annotated[str | None, typer.Option(
        help="teacher-logits bundle folder(s) made elsewhere (e.g. on a GPU); a,b = ensemble")] = None,
    teacher_base: Annotated[str | None, typer.Option(help="base to fine-tune the teacher from")] = None,
    student_base: Annotated[str | None, typer.Option(help="pretrained encoder the student starts from")] = None,
    alpha: Annotated[float | None, typer.Option(help="weight of the teacher term (0 = labels only)")] = None,
    pooling: Annotated[str | None, typer.Option(help="topk (default, k=4), mean or cls")] = None,
    teacher_epochs: Annotated[float | None, typer.Option()] = None,
    student_epochs: Annotated[float | None, typer.Option()] = None,
    learning_rate: Annotated[float | None, typer.Option(help="student encoder learning rate")] = None,
    head_learning_rate: Annotated[float | None, typer.Option(
        help="student head learning rate (default 1e-3; the official single rate: pass the --learning-rate "
             "value)")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    max_train_pairs: Annotated[int | None, typer.Option()] = None,
    max_length: Annotated[int | None, typer.Option()] = None,
    data_dir: Annotated[str | None, typer.Option(help="folder with GLUE TSVs (default: the shared copy)")] = None,
    data_source: Annotated[str, typer.Option(help="auto, local or hub (Hugging Face datasets)")] = "auto",
    train: TrainOpt = None, dev: DevOpt = None, kind: KindOpt = None, labels: LabelsOpt = None,
    skip_bad: SkipOpt = False, progress: ProgressOpt = True,
    only_student: Annotated[str | None, typer.Option(
        help="dse or label-only: train just that student and stop, so two processes can train the two "
             "students side by side (once the teacher stage is done, or with --teacher-logits); run again "
             "without it to evaluate and record")] = None,
) -> None:
    """Run every stage for a task and print the dev-set table (teacher, students, cosine baseline)."""
    _setup()
    if only_student not in (None, "dse", "label-only", "label_only"):
        _fail(f"--only-student must be dse or label-only, not {only_student!r}")
    from ..pipeline import PipelineConfig, format_table, run_pipeline

    cfg = PipelineConfig.from_profile(
        profile, task=task, output_dir=str(output_dir or Path("runs") / profile / task), teacher=teacher,
        teacher_logits=teacher_logits,
        teacher_base=teacher_base, student_base=student_base, alpha=alpha, pooling=pooling,
        teacher_epochs=teacher_epochs, student_epochs=student_epochs, max_train_pairs=max_train_pairs,
        learning_rate=learning_rate, head_learning_rate=head_learning_rate, seed=seed,
        max_length=max_length, data_dir=data_dir, data_source=data_source, show_progress_bar=progress,
        train_file=str(train) if train else None, dev_file=str(dev) if dev else None, kind=kind,
        labels=tuple(x.strip() for x in (labels or "").split(",") if x.strip()), skip_bad=skip_bad,
        only_student=only_student.replace("-", "_") if only_student else None)

    try:
        record = run_pipeline(cfg)
    except (DataFormatError, FileNotFoundError, StaleLogitsError, RunConfigMismatch) as exc:
        _fail(str(exc))
    if "only_student" in record:
        typer.echo(f"trained {record['only_student']} in {record['folder']}; run again without --only-student "
                   "to evaluate both students and write the record")
        return
    typer.echo(format_table(record))
    typer.echo("stage wall times (s): " + ", ".join(f"{k}={v:.0f}" for k, v in record["stage_seconds"].items()))
    typer.echo(f"record: {Path(cfg.output_dir) / 'record.json'}")


@teacher_app.command("train")
def teacher_train(
    task: TaskArg,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o")],
    base: Annotated[str, typer.Option(help="encoder to fine-tune: alias, HF id or folder")] = "all-MiniLM-L6-v2",
    epochs: float = 3.0,
    learning_rate: float = 3e-5,
    batch_size: int = 16,
    max_length: int | None = None,
    max_train_pairs: int | None = None,
    seed: Annotated[int, typer.Option(help="different seeds give the members of an ensemble")] = 42,
    train: TrainOpt = None, dev: DevOpt = None, kind: KindOpt = None, labels: LabelsOpt = None,
    skip_bad: SkipOpt = False, progress: ProgressOpt = True,
) -> None:
    """Fine-tune a cross-encoder teacher (resumes from its last epoch checkpoint)."""
    _setup()
    from ..teacher import TeacherRecipe, train_teacher

    spec, train_ds, dev_ds = _task_and_data(task, train, dev, kind, labels, skip_bad)
    recipe = TeacherRecipe(base=base, epochs=epochs, learning_rate=learning_rate, batch_size=batch_size,
                           max_length=max_length, max_train_pairs=max_train_pairs, seed=seed)

    try:
        path = train_teacher(spec, train_ds, dev_ds, output_dir, recipe, show_progress_bar=progress)
    except RunConfigMismatch as exc:  # an output folder started with other settings
        _fail(str(exc))
    info = json.loads((path / "dsembed_teacher.json").read_text())
    typer.echo(json.dumps({"model": str(path), "dev_metrics": info["dev_metrics"]}, indent=2))


@teacher_app.command("export-logits")
def teacher_export_logits(
    task: TaskArg,
    teacher: Annotated[str, typer.Option(help="cross-encoder folder or hub id; comma-separated for an ensemble")],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="bundle folder to write")],
    batch_size: int = 64,
    train: TrainOpt = None, dev: DevOpt = None, kind: KindOpt = None, labels: LabelsOpt = None,
    skip_bad: SkipOpt = False, progress: ProgressOpt = True,
) -> None:
    """Write the teacher's train and dev logits as a small bundle that `pipeline --teacher-logits` takes.

    Train the teacher where it is fast (a GPU), carry the bundle (KBs, not the model) to where
    the student is trained; every row stays tied to its pair by hash.
    """
    _setup()
    from ..teacher import load_teacher
    from ..teacher.logits import write_logits_bundle

    spec, train_ds, dev_ds = _task_and_data(task, train, dev, kind, labels, skip_bad)
    bundle = write_logits_bundle(load_teacher(teacher, spec), train_ds, dev_ds, output_dir, batch_size=batch_size,
                                 show_progress_bar=progress)
    typer.echo(f"{len(bundle.train.logits)} train + {len(bundle.dev.logits)} dev teacher logits -> {output_dir}")


@app.command()
def logits(
    task: TaskArg,
    teacher: Annotated[str, typer.Option(help="cross-encoder folder or hub id; comma-separated for an ensemble")],
    output: Annotated[Path, typer.Option("--output", "-o", help="portable .safetensors file")],
    batch_size: int = 64,
    max_train_pairs: int | None = None,
    train: TrainOpt = None, kind: KindOpt = None, labels: LabelsOpt = None, skip_bad: SkipOpt = False,
    cache: Annotated[Path | None, typer.Option(help="chunk cache folder (resume point)")] = None,
    progress: ProgressOpt = True,
) -> None:
    """Compute the teacher's logits on every training pair once (resumable), and store them."""
    _setup()
    from ..teacher import load_teacher
    from ..teacher.logits import compute_teacher_logits

    spec, train_ds, _ = _task_and_data(task, train, train, kind, labels, skip_bad) if train else \
        _task_and_data(task, None, None, kind, labels, skip_bad)
    train_ds = train_ds.subset(max_train_pairs, seed=42)
    result = compute_teacher_logits(load_teacher(teacher, spec), train_ds, cache=cache, batch_size=batch_size,
                                    show_progress_bar=progress)
    result.save(output)
    typer.echo(f"{len(result.logits)} teacher logits -> {output}")


@app.command("distill")
def distill_cmd(
    task: TaskArg,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o")],
    teacher_logits: Annotated[Path | None, typer.Option(help="file written by `dsembed logits`")] = None,
    base: str = "all-MiniLM-L6-v2",
    alpha: float = 0.5,
    pooling: str = "topk",
    top_k: int = 4,
    epochs: float = 8.0,
    learning_rate: float = 2e-5,
    head_learning_rate: Annotated[float, typer.Option(
        help="learning rate of the freshly initialised head (the official single rate: pass the "
             "--learning-rate value)")] = 1e-3,
    batch_size: int = 32,
    max_length: int | None = None,
    max_train_pairs: int | None = None,
    train: TrainOpt = None, dev: DevOpt = None, kind: KindOpt = None, labels: LabelsOpt = None,
    skip_bad: SkipOpt = False, progress: ProgressOpt = True,
) -> None:
    """Train the siamese student on labels and teacher logits (alpha=0: labels only)."""
    _setup()
    from ..student.train import DistillConfig, distill
    from ..teacher.logits import TeacherLogits

    spec, train_ds, dev_ds = _task_and_data(task, train, dev, kind, labels, skip_bad)
    train_ds = train_ds.subset(max_train_pairs, seed=42)
    stored = None
    if teacher_logits is not None:
        stored = TeacherLogits.load(teacher_logits)
        try:
            stored = stored.aligned_to(train_ds, source=str(teacher_logits))
        except StaleLogitsError as exc:
            _fail(str(exc))
    elif alpha > 0:
        _fail("alpha > 0 needs --teacher-logits (see `dsembed logits`), or pass --alpha 0")
    cfg = DistillConfig(base=base, alpha=alpha, pooling=pooling, top_k=top_k, epochs=epochs,
                        learning_rate=learning_rate, head_learning_rate=head_learning_rate, batch_size=batch_size,
                        max_length=max_length)

    try:
        path = distill(spec, train_ds, dev_ds, output_dir, None if stored is None else stored.logits, cfg,
                       show_progress_bar=progress)
    except RunConfigMismatch as exc:  # an output folder started with other settings
        _fail(str(exc))
    typer.echo(json.dumps({"model": str(path),
                           "dev_metrics": json.loads((output_dir / "training.json").read_text())["dev_metrics"]},
                          indent=2))


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="a dsembed student folder")],
    task: TaskArg,
    split: str = "dev",
    teacher: Annotated[str | None, typer.Option(help="also score this teacher, and the relative degradation")] = None,
    data: Annotated[Path | None, typer.Option(help="own labelled file instead of the GLUE split")] = None,
    skip_bad: SkipOpt = False, progress: ProgressOpt = True,
) -> None:
    """GLUE metrics of a student on a task split (and of its teacher, if given)."""
    _setup()
    from ..data import load_glue, read_pairs
    from ..evaluation import compute_metrics, evaluate_student, relative_degradation
    from ..student.model import DSEModel
    from ..teacher import load_teacher

    student = DSEModel.load(model)
    spec = student.task
    ds = read_pairs(data, spec, skip_bad=skip_bad) if data else load_glue(task, split, skip_bad=skip_bad)
    metrics, _ = evaluate_student(student, spec, ds, show_progress_bar=progress)
    out: dict[str, object] = {"task": spec.name, "split": split, "pairs": len(ds), "student": metrics}
    if teacher:
        t_logits = load_teacher(teacher, spec).predict_logits(ds.pairs(), show_progress_bar=progress)
        t_metrics = compute_metrics(spec, t_logits, ds.labels, teacher=True)
        out["teacher"] = t_metrics
        out["relative_degradation_pct"] = {m: relative_degradation(t_metrics[m], metrics[m]) for m in metrics}
    typer.echo(json.dumps(out, indent=2))


@app.command("eval")
def eval_sts(
    model: Annotated[Path, typer.Argument(help="a dsembed student folder")],
    file: Annotated[Path, typer.Argument(help="STS-style pairs with a gold score (.tsv/.csv/.jsonl)")],
    batch_size: int = 64, skip_bad: SkipOpt = False, progress: ProgressOpt = True,
) -> None:
    """Spearman/Pearson of the student's head score and of plain cosine on any STS-style file."""
    _setup()
    from ..evaluation import evaluate_sts_file
    from ..student.model import DSEModel

    student = DSEModel.load(model)
    try:
        result = evaluate_sts_file(student, file, batch_size=batch_size, skip_bad=skip_bad,
                                   show_progress_bar=progress)
    except (DataFormatError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps(result, indent=2))


@app.command()
def encode(
    model: Annotated[Path, typer.Argument(help="a dsembed student folder")],
    input: Annotated[Path, typer.Argument(help="sentences: .txt (one per line), or .tsv/.csv/.jsonl with --column")],
    output: Annotated[Path, typer.Option("--output", "-o", help=".npy file")],
    column: str | None = None,
    batch_size: int = 32,
    normalize: Annotated[bool, typer.Option("--normalize/--no-normalize")] = False,
    progress: ProgressOpt = True,
) -> None:
    """Encode sentences to a .npy matrix (one row per sentence, in input order)."""
    _setup()
    import numpy as np

    from ..data import read_sentences
    from ..student.model import DSEModel
    from ..utils import atomic_write_bytes

    try:
        sentences = read_sentences(input, column=column)
    except (DataFormatError, FileNotFoundError) as exc:
        _fail(str(exc))
    student = DSEModel.load(model)
    emb = student.encode(sentences, batch_size=batch_size, normalize_embeddings=normalize, show_progress_bar=progress)
    import io

    buf = io.BytesIO()
    np.save(buf, np.asarray(emb, dtype=np.float32))
    atomic_write_bytes(output, buf.getvalue())
    typer.echo(f"{len(sentences)} x {emb.shape[1]} embeddings -> {output}")


@app.command()
def score(
    model: Annotated[Path, typer.Argument(help="a dsembed student folder")],
    sentences: Annotated[list[str] | None, typer.Argument(help="two sentences (or use --pairs)")] = None,
    pairs: Annotated[Path | None, typer.Option(help="file of pairs (.tsv/.csv/.jsonl, sentence1/sentence2)")] = None,
    batch_size: int = 32,
    raw: Annotated[bool, typer.Option(help="print raw head logits instead of scores")] = False,
    progress: ProgressOpt = False,
) -> None:
    """Score sentence pairs with the student's head (P(positive), a similarity value, or class probabilities)."""
    _setup()
    from ..data import read_pairs
    from ..student.model import DSEModel

    student = DSEModel.load(model)
    if pairs is not None:
        try:
            ds = read_pairs(pairs, student.task, require_labels=False)
        except (DataFormatError, FileNotFoundError) as exc:
            _fail(str(exc))
        items = ds.pairs()
    elif sentences and len(sentences) == 2:
        items = [(sentences[0], sentences[1])]
    else:
        _fail("give two sentences, or --pairs FILE")
    values = student.predict(items, batch_size=batch_size, apply_activation=not raw, show_progress_bar=progress)
    for (a, b), v in zip(items, values, strict=True):
        shown = json.dumps([round(float(x), 6) for x in v]) if getattr(v, "ndim", 0) else f"{float(v):.6f}"
        typer.echo(f"{shown}\t{a}\t{b}")


from .retrieval import register as _register_retrieval  # noqa: E402

_register_retrieval(app)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
