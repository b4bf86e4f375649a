"""Training commands: ``pipeline``, ``teacher train``, ``teacher export-logits``, ``logits``, ``distill``.

Option defaults come from :mod:`dsembed.config`; an option left out keeps the config's default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..artifacts import RUN_RECORD
from ..config import StudentConfig, TeacherConfig
from ..errors import ConfigError
from .common import (
    App,
    DataDirOpt,
    DeviceOpt,
    DevOpt,
    KindOpt,
    LabelsOpt,
    MinedStrategyOpt,
    ProgressOpt,
    RayCpusOpt,
    RayGpusOpt,
    RayOpt,
    RayWorkersOpt,
    SkipOpt,
    TaskArg,
    TestOpt,
    TrainOpt,
    fail,
    parse_labels,
    parse_seeds,
    parse_strategies,
    setup,
    task_and_data,
)

TeacherSpecOpt = Annotated[str, typer.Option(help="cross-encoder folder or hub id; comma-separated for an ensemble")]


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
    seeds: Annotated[str | None, typer.Option(
        help="comma-separated seeds: one run per seed (own sub-folder), then the table of seed means ± std")] = None,
    jobs: Annotated[int, typer.Option(
        help="with --seeds: train and evaluate the students in a pool of this many processes")] = 1,
    max_train_pairs: Annotated[int | None, typer.Option()] = None,
    max_length: Annotated[int | None, typer.Option()] = None,
    data_dir: DataDirOpt = None,
    data_source: Annotated[str, typer.Option(help="auto, local or hub (Hugging Face datasets)")] = "auto",
    train: TrainOpt = None, dev: DevOpt = None, test: TestOpt = None,
    kind: KindOpt = None, labels: LabelsOpt = None, skip_bad: SkipOpt = False, progress: ProgressOpt = True,
    mined: Annotated[str | None, typer.Option(
        help="teacher-scored mined pairs (`dsembed augment score` bundle, by the run's teacher): adds the "
             "DSE + mined pairs student, trained at the same optimiser steps as the others")] = None,
    mined_ratio: Annotated[float | None, typer.Option(help="mined rows per labelled row (default 1)")] = None,
    mined_scope: Annotated[str, typer.Option(
        help="run: only mined pairs joining two sentences of the run's labelled pairs; all: every pair")] = "run",
    mined_strategy: MinedStrategyOpt = None,
    mined_budget: Annotated[float | None, typer.Option(
        help="at most this many mined pairs per labelled pair (3 = ×3; nested: a smaller budget is a subset "
             "of a larger one)")] = None,
    augsbert: Annotated[bool, typer.Option(
        help="with --mined: also the AugSBERT anchor (task loss on gold + teacher-labelled mined pairs)")] = False,
    plain_dse: Annotated[bool, typer.Option(help="with --mined: also the DSE student without mined pairs")] = True,
    label_only: Annotated[bool, typer.Option(
        help="also the label-only student (alpha=0), the baseline distillation must beat")] = True,
    only_student: Annotated[str | None, typer.Option(
        help="dse, label-only, dse-mined or augsbert: train just that student and stop, so two processes can "
             "train students side by side (once the teacher stage is done, or with --teacher-logits); run again "
             "without it to evaluate and record")] = None,
) -> None:
    """Run every stage for a task and print the dev-set table (teacher, students, cosine baseline)."""
    setup()
    from ..config import PipelineConfig
    from ..pipeline import format_seed_table, format_table, run_pipeline, run_seeds

    cfg = PipelineConfig.from_profile(
        profile, task=task, output_dir=str(output_dir or Path("runs") / profile / task), teacher_model=teacher,
        teacher_logits=teacher_logits, seed=seed, max_length=max_length, max_train_pairs=max_train_pairs,
        data_dir=str(data_dir) if data_dir else None, data_source=data_source, show_progress_bar=progress,
        train_file=str(train) if train else None, dev_file=str(dev) if dev else None,
        test_file=str(test) if test else None, kind=kind,
        labels=parse_labels(labels), skip_bad=skip_bad, only_student=only_student,
        mined=mined, mined_scope=mined_scope, mined_strategies=parse_strategies(mined_strategy),
        mined_budget=mined_budget, augsbert_baseline=augsbert, plain_dse_baseline=plain_dse,
        label_only_baseline=label_only,
        teacher={"base": teacher_base, "epochs": teacher_epochs},
        student={"base": student_base, "alpha": alpha, "pooling": pooling, "epochs": student_epochs,
                 "learning_rate": learning_rate, "head_learning_rate": head_learning_rate,
                 "mined_ratio": mined_ratio})
    if seeds:
        summary = run_seeds(cfg, parse_seeds(seeds), jobs=jobs)
        typer.echo(format_seed_table(summary))
        typer.echo(f"wall time {summary['wall_seconds']:.0f} s for {len(summary['seeds'])} seeds; "
                   f"record: {Path(cfg.output_dir) / RUN_RECORD}")
        return
    record = run_pipeline(cfg)
    if "only_student" in record:
        typer.echo(f"trained {record['only_student']} in {record['folder']}; run again without --only-student "
                   "to evaluate both students and write the record")
        return
    typer.echo(format_table(record))
    typer.echo("stage wall times (s): " + ", ".join(f"{k}={v:.0f}" for k, v in record["stage_seconds"].items()))
    typer.echo(f"record: {Path(cfg.output_dir) / RUN_RECORD}")


def teacher_train(
    task: TaskArg,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o")],
    base: Annotated[str, typer.Option(help="encoder to fine-tune: alias, HF id or folder")] = TeacherConfig.base,
    epochs: float = TeacherConfig.epochs,
    learning_rate: float = TeacherConfig.learning_rate,
    batch_size: int = TeacherConfig.batch_size,
    max_length: int | None = None,
    max_train_pairs: int | None = None,
    seed: Annotated[int, typer.Option(help="different seeds give the members of an ensemble")] = TeacherConfig.seed,
    train: TrainOpt = None, dev: DevOpt = None, kind: KindOpt = None, labels: LabelsOpt = None,
    data_dir: DataDirOpt = None, skip_bad: SkipOpt = False, progress: ProgressOpt = True,
) -> None:
    """Fine-tune a cross-encoder teacher (resumes from its last epoch checkpoint)."""
    setup()
    from ..teacher import train_teacher

    spec, train_ds, dev_ds = task_and_data(task, train, dev, kind, labels, skip_bad, data_dir)
    config = TeacherConfig(base=base, epochs=epochs, learning_rate=learning_rate, batch_size=batch_size,
                           max_length=max_length, max_train_pairs=max_train_pairs, seed=seed)
    trained = train_teacher(spec, train_ds, dev_ds, output_dir, config, show_progress_bar=progress)
    typer.echo(json.dumps({"model": str(trained.path), "source": trained.source,
                           "dev_metrics": trained.record["dev_metrics"]}, indent=2))


def teacher_export_logits(
    task: TaskArg,
    teacher: TeacherSpecOpt,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="bundle folder to write")],
    batch_size: int = 64,
    train: TrainOpt = None, dev: DevOpt = None, test: TestOpt = None, kind: KindOpt = None,
    labels: LabelsOpt = None, data_dir: DataDirOpt = None, skip_bad: SkipOpt = False, progress: ProgressOpt = True,
) -> None:
    """Write the teacher's train and dev logits as a small bundle that `pipeline --teacher-logits` takes.

    Train the teacher where it is fast (a GPU), carry the bundle (KBs, not the model) to where
    the student is trained; every row stays tied to its pair by hash. With ``--test`` the bundle also
    carries the test logits, so the pipeline's teacher row gets its test metrics without the model.
    """
    setup()
    from ..data import read_pairs
    from ..teacher import load_teacher, write_logits_bundle

    spec, train_ds, dev_ds = task_and_data(task, train, dev, kind, labels, skip_bad, data_dir)
    test_ds = read_pairs(test, spec, skip_bad=skip_bad) if test else None
    if test_ds is not None and test_ds.labels is None:
        raise ConfigError(f"{test}: the test file needs a label column")
    bundle = write_logits_bundle(load_teacher(teacher, spec), train_ds, dev_ds, output_dir, batch_size=batch_size,
                                 show_progress_bar=progress, test=test_ds)
    tested = f" + {len(bundle.test.logits)} test" if bundle.test is not None else ""
    typer.echo(f"{len(bundle.train.logits)} train + {len(bundle.dev.logits)} dev{tested} teacher logits "
               f"-> {output_dir}")


def logits(
    task: TaskArg,
    teacher: TeacherSpecOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="portable .safetensors file")],
    batch_size: int = 64,
    max_train_pairs: int | None = None,
    train: TrainOpt = None, kind: KindOpt = None, labels: LabelsOpt = None, skip_bad: SkipOpt = False,
    data_dir: DataDirOpt = None,
    cache: Annotated[Path | None, typer.Option(help="chunk cache folder (resume point)")] = None,
    chunk_size: Annotated[int, typer.Option(help="pairs per committed chunk: what a kill can lose at most")] = 2048,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = 2,
    ray_cpus: RayCpusOpt = 1.0,
    ray_gpus: RayGpusOpt = 0.0,
    progress: ProgressOpt = True,
    device: DeviceOpt = "auto",
) -> None:
    """Compute the teacher's logits on every training pair once (resumable), and store them.

    With --ray the chunks are scored by a Ray actor pool; the cache and the output are the same, so a
    run with and one without Ray resume each other.
    """
    setup()
    from ..teacher import compute_teacher_logits, load_teacher

    # own pairs: the train file stands in for dev too (only train pairs are scored)
    spec, train_ds, _ = task_and_data(task, train, train, kind, labels, skip_bad, data_dir)
    train_ds = train_ds.subset(max_train_pairs, seed=42)
    if chunk_size < 1:
        fail(f"--chunk-size must be at least 1, not {chunk_size}")
    if ray is not None:
        from ..scale import teacher_logits_ray

        result = teacher_logits_ray(teacher, spec, train_ds, cache=cache, batch_size=batch_size,
                                    chunk_size=chunk_size, show_progress_bar=progress, address=ray,
                                    concurrency=ray_workers, num_cpus=ray_cpus, num_gpus=ray_gpus)
    else:
        result = compute_teacher_logits(load_teacher(teacher, spec, device=device), train_ds, cache=cache,
                                        batch_size=batch_size,
                                        chunk_size=chunk_size, show_progress_bar=progress)
    result.save(output)
    typer.echo(f"{len(result.logits)} teacher logits -> {output}")


def distill(
    task: TaskArg,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o")],
    teacher_logits: Annotated[Path | None, typer.Option(help="file written by `dsembed logits`")] = None,
    base: str = StudentConfig.base,
    alpha: float = StudentConfig.alpha,
    pooling: str = StudentConfig.pooling,
    top_k: int = StudentConfig.top_k,
    epochs: float = StudentConfig.epochs,
    learning_rate: float = StudentConfig.learning_rate,
    head_learning_rate: Annotated[float, typer.Option(
        help="learning rate of the freshly initialised head (the official single rate: pass the "
             "--learning-rate value)")] = StudentConfig.head_learning_rate,
    batch_size: int = StudentConfig.batch_size,
    max_length: int | None = None,
    max_train_pairs: int | None = None,
    mined: Annotated[Path | None, typer.Option(
        help="mined-pairs bundle folder (teacher-scored extra pairs: pairs.jsonl, logits.safetensors, "
             "bundle.json)")] = None,
    mined_ratio: Annotated[float, typer.Option(help="mined rows per labelled row in the stream (0 = off)")] = (
        StudentConfig.mined_ratio),
    mined_sampling: Annotated[str, typer.Option(
        help="mixed: every batch holds the ratio; concat: one shuffled stream")] = StudentConfig.mined_sampling,
    recipe: Annotated[str, typer.Option(
        help="dse: mined rows carry the distillation term; augsbert: task loss on the teacher's labels, "
             "alpha ignored")] = StudentConfig.recipe,
    mined_strategy: MinedStrategyOpt = None,
    mined_max_pairs: Annotated[int | None, typer.Option(
        help="keep at most N mined pairs (the N smallest pair hashes: a smaller budget is a subset of a "
             "larger one)")] = None,
    max_steps: Annotated[int | None, typer.Option(help="train for exactly N optimiser steps")] = None,
    equal_compute: Annotated[bool, typer.Option(
        help="as many optimiser steps as the --epochs run on the labelled pairs alone")] = False,
    train: TrainOpt = None, dev: DevOpt = None, kind: KindOpt = None, labels: LabelsOpt = None,
    data_dir: DataDirOpt = None, skip_bad: SkipOpt = False, progress: ProgressOpt = True,
) -> None:
    """Train the siamese student on labels and teacher logits (alpha=0: labels only), optionally on mined pairs."""
    setup()
    from ..augment import load_mined_rows
    from ..student import distill as run_distill
    from ..teacher import TeacherLogits

    if teacher_logits is None and alpha > 0 and recipe != "augsbert":
        fail("alpha > 0 needs --teacher-logits (see `dsembed logits`), or pass --alpha 0")
    config = StudentConfig(base=base, alpha=alpha, pooling=pooling, top_k=top_k, epochs=epochs,
                           learning_rate=learning_rate, head_learning_rate=head_learning_rate, batch_size=batch_size,
                           max_length=max_length, mined_ratio=mined_ratio, mined_sampling=mined_sampling,
                           recipe=recipe, max_steps=max_steps, equal_compute=equal_compute)
    spec, train_ds, dev_ds = task_and_data(task, train, dev, kind, labels, skip_bad, data_dir)
    train_ds = train_ds.subset(max_train_pairs, seed=42)
    stored = None
    if teacher_logits is not None and recipe != "augsbert":
        stored = TeacherLogits.load(teacher_logits).aligned_to(train_ds, source=str(teacher_logits))
    mined_rows = load_mined_rows(mined, spec, parse_strategies(mined_strategy), mined_max_pairs) \
        if mined is not None else None
    trained = run_distill(spec, train_ds, dev_ds, output_dir, None if stored is None else stored.logits, config,
                          show_progress_bar=progress, mined=mined_rows)
    typer.echo(json.dumps({"model": str(trained.path), "source": trained.source,
                           "dev_metrics": trained.record["dev_metrics"],
                           "optimizer_steps": trained.record.get("optimizer_steps")}, indent=2))


def register(app: App) -> None:
    """Add the training commands (and the ``teacher`` group) to ``app``."""
    teacher_app = App(help="Fine-tune or inspect the cross-encoder teacher.")
    app.add_typer(teacher_app, name="teacher")
    app.command()(pipeline)
    teacher_app.command("train")(teacher_train)
    teacher_app.command("export-logits")(teacher_export_logits)
    app.command()(logits)
    app.command("distill")(distill)
