"""Commands that use a trained student: ``evaluate``, ``eval``, ``encode``, ``score``."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Annotated

import typer

from .common import App, DataDirOpt, DeviceOpt, ModelArg, ProgressOpt, SkipOpt, TaskArg, fail, setup
from .export import BackendOpt, load_with_backend


def evaluate(
    model: ModelArg,
    task: TaskArg,
    split: str = "dev",
    teacher: Annotated[str | None, typer.Option(help="also score this teacher, and the relative degradation")] = None,
    data: Annotated[Path | None, typer.Option(help="own labelled file instead of the GLUE split")] = None,
    data_dir: DataDirOpt = None, skip_bad: SkipOpt = False, progress: ProgressOpt = True,
) -> None:
    """GLUE metrics of a student on a task split (and of its teacher, if given)."""
    setup()
    from ..data import load_glue, read_pairs
    from ..evaluation import compute_metrics, evaluate_student, relative_degradation
    from ..teacher import load_teacher

    student = load_with_backend(model)
    spec = student.task
    ds = read_pairs(data, spec, skip_bad=skip_bad) if data else \
        load_glue(task, split, data_dir=data_dir, skip_bad=skip_bad)
    metrics, _ = evaluate_student(student, spec, ds, show_progress_bar=progress)
    out: dict[str, object] = {"task": spec.name, "split": split, "pairs": len(ds), "student": metrics}
    if teacher:
        t_logits = load_teacher(teacher, spec).predict_logits(ds.pairs(), show_progress_bar=progress)
        t_metrics = compute_metrics(spec, t_logits, ds.labels, teacher=True)
        out["teacher"] = t_metrics
        out["relative_degradation_pct"] = {m: relative_degradation(t_metrics[m], metrics[m]) for m in metrics}
    typer.echo(json.dumps(out, indent=2))


def eval_sts(
    model: ModelArg,
    file: Annotated[Path, typer.Argument(help="STS-style pairs with a gold score (.tsv/.csv/.jsonl)")],
    batch_size: int = 64, skip_bad: SkipOpt = False, progress: ProgressOpt = True,
) -> None:
    """Spearman/Pearson of the student's head score and of plain cosine on any STS-style file."""
    setup()
    from ..evaluation import evaluate_sts_file

    result = evaluate_sts_file(load_with_backend(model), file, batch_size=batch_size, skip_bad=skip_bad,
                               show_progress_bar=progress)
    typer.echo(json.dumps(result, indent=2))


def encode(
    model: ModelArg,
    input: Annotated[Path, typer.Argument(help="sentences: .txt (one per line), or .tsv/.csv/.jsonl with --column")],
    output: Annotated[Path, typer.Option("--output", "-o", help=".npy file")],
    column: str | None = None,
    batch_size: int = 32,
    normalize: Annotated[bool, typer.Option("--normalize/--no-normalize")] = False,
    progress: ProgressOpt = True,
    backend: BackendOpt = "torch",
    device: DeviceOpt = "auto",
) -> None:
    """Encode sentences to a .npy matrix (one row per sentence, in input order)."""
    setup()
    import numpy as np

    from ..data import read_sentences
    from ..utils import atomic_write_bytes

    # Everything that can be refused is refused before the model loads and before the output is touched:
    # the input is read and validated in full, and the output path must be writable as a file.
    sentences = read_sentences(input, column=column)
    _check_output(output)
    student = load_with_backend(model, backend, device)
    emb = student.encode(sentences, batch_size=batch_size, normalize_embeddings=normalize, show_progress_bar=progress)
    buf = io.BytesIO()
    np.save(buf, np.asarray(emb, dtype=np.float32))
    atomic_write_bytes(output, buf.getvalue())
    typer.echo(f"{len(sentences)} x {emb.shape[1]} embeddings -> {output}")


def _check_output(output: Path) -> None:
    """Refuse an output path that can never be written (a folder, or under a file) before any work is done."""
    from ..errors import ConfigError

    if output.is_dir():
        raise ConfigError(f"--output {output} is a folder; give a file path such as {output / 'embeddings.npy'}")
    blocker = next((p for p in output.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ConfigError(f"--output {output}: {blocker} is a file, not a folder")


def score(
    model: ModelArg,
    sentences: Annotated[list[str] | None, typer.Argument(help="two sentences (or use --pairs)")] = None,
    pairs: Annotated[Path | None, typer.Option(help="file of pairs (.tsv/.csv/.jsonl, sentence1/sentence2)")] = None,
    batch_size: int = 32,
    raw: Annotated[bool, typer.Option(help="print raw head logits instead of scores")] = False,
    progress: ProgressOpt = False,
    backend: BackendOpt = "torch",
    device: DeviceOpt = "auto",
) -> None:
    """Score sentence pairs with the student's head (P(positive), a similarity value, or class probabilities)."""
    setup()
    from ..data import read_pairs

    student = load_with_backend(model, backend, device)
    if pairs is not None:
        items = read_pairs(pairs, student.task, require_labels=False).pairs()
    elif sentences and len(sentences) == 2:
        items = [(sentences[0], sentences[1])]
    else:
        fail("give two sentences, or --pairs FILE")
    values = student.predict(items, batch_size=batch_size, apply_activation=not raw, show_progress_bar=progress)
    for (a, b), v in zip(items, values, strict=True):
        shown = json.dumps([round(float(x), 6) for x in v]) if getattr(v, "ndim", 0) else f"{float(v):.6f}"
        typer.echo(f"{shown}\t{a}\t{b}")


def register(app: App) -> None:
    """Add the commands that use a trained student to ``app``."""
    app.command()(evaluate)
    app.command("eval")(eval_sts)
    app.command()(encode)
    app.command()(score)
