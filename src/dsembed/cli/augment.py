"""Augmentation commands: ``augment mine``, ``augment score``, ``augment balance`` (each prints a JSON summary).

Mine pairs where the data is, score them with the teacher wherever it runs fastest (the bundle carries
the logits back), balance what is kept by teacher-score bands.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ConfigError
from .common import (
    App,
    DataDirOpt,
    KindOpt,
    LabelsOpt,
    MinedStrategyOpt,
    ProgressOpt,
    RayCpusOpt,
    RayGpusOpt,
    RayOpt,
    RayWorkersOpt,
    TaskArg,
    TrainOpt,
    parse_strategies,
    setup,
    task_spec,
)

MinedArg = Annotated[Path, typer.Argument(help="mined pairs (.jsonl written by `dsembed augment mine`)")]
BundleArg = Annotated[Path, typer.Argument(help="a scored bundle folder (written by `dsembed augment score`)")]


def _budget(per_sentence: int, budget: str | None) -> int | dict[str, int]:
    """``--budget random=3,bm25=1`` -> ``{"random": 3, "bm25": 1}``; without it, ``--per-sentence``."""
    if not budget:
        return per_sentence
    out: dict[str, int] = {}
    for item in (x.strip() for x in budget.split(",") if x.strip()):
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise ConfigError(f"--budget takes strategy=N,... (whole numbers), not {item!r}") from None
    return out


def _excluded(spec: Any, own: bool, files: list[Path], data_dir: Path | None) -> list[Any]:
    """Datasets whose sentences must never be mined: the GLUE dev/test splits, and every ``--exclude`` file."""
    from ..data import PairDataset, load_glue, read_pairs, read_sentences
    from ..errors import InputNotFoundError

    out = []
    if not own:
        out.append(load_glue(spec, "dev", data_dir=data_dir))
        with contextlib.suppress(InputNotFoundError):  # this copy may have no test split for the task
            out.append(load_glue(spec, "test", data_dir=data_dir, source="local"))
    for file in files:
        if file.suffix.lower() == ".txt":
            texts = read_sentences(file)
            out.append(PairDataset(texts, texts, None, source=str(file)))
        else:
            out.append(read_pairs(file, spec, require_labels=False))
    return out


def mine(
    task: TaskArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="mined pairs to write (.jsonl)")],
    strategy: Annotated[str, typer.Option(help="comma-separated: random, bm25, embedding, swap")]
    = "random,bm25,embedding,swap",
    per_sentence: Annotated[int, typer.Option(help="pairs kept per source sentence, for every strategy")] = 2,
    budget: Annotated[str | None, typer.Option(help="per strategy instead: random=3,bm25=2,...")] = None,
    extra: Annotated[Path | None, typer.Option(help="extra unlabelled sentences (.txt, or a column of "
                                                    ".tsv/.csv/.jsonl)")] = None,
    extra_column: Annotated[str | None, typer.Option(help="column/key of --extra")] = None,
    encoder: Annotated[str | None, typer.Option(help="embedding strategy: base alias/folder or a student folder "
                                                     "(default all-MiniLM-L6-v2)")] = None,
    seed: int = 42,
    max_pairs: Annotated[int | None, typer.Option(help="keep a seeded sample of this many mined pairs")] = None,
    pairing: Annotated[str, typer.Option(
        help="any: pairs of any two pool sentences; cross: sentence1 with sentence2 (or --extra), for tasks "
             "whose sides differ (QNLI questions and answers, queries and passages)")] = "any",
    exclude: Annotated[list[Path] | None, typer.Option(help="own data: pairs (or .txt sentences) never to use; "
                                                            "repeat for dev and test")] = None,
    data_dir: DataDirOpt = None, train: TrainOpt = None, kind: KindOpt = None, labels: LabelsOpt = None,
) -> None:
    """Mine unlabelled pairs from the training sentences (never a dev/test sentence) for the teacher to score."""
    setup()
    from ..augment import mine_pairs, read_sentence_pool
    from ..augment.mine import check_pairing, mining_budgets
    from ..data import load_glue, read_pairs

    names, per = list(parse_strategies(strategy) or ()), _budget(per_sentence, budget)
    check_pairing(pairing, mining_budgets(names, per))  # a bad strategy, budget or pairing fails before any data
    spec = task_spec(task, kind, labels)
    own = kind is not None
    train_ds = read_pairs(train, spec, require_labels=False) if train else load_glue(spec, "train", data_dir=data_dir)
    excluded = _excluded(spec, own, list(exclude or []), data_dir)
    if not excluded:
        typer.secho("warning: no --exclude given; dev/test sentences of your own data may end up in mined pairs",
                    fg=typer.colors.YELLOW, err=True)
    extras = read_sentence_pool(extra, extra_column) if extra else []
    mined = mine_pairs(train_ds, strategies=names, per_sentence=per, extra_sentences=extras, exclude=excluded,
                       encoder=encoder, seed=seed, max_pairs=max_pairs, pairing=pairing)
    mined.record["task"] = {"name": spec.name, "kind": spec.kind, "labels": list(spec.labels)}
    mined.save(output)
    typer.echo(json.dumps({"output": str(output), "rows": len(mined), "kept_per_strategy": mined.record[
        "kept_per_strategy"], "pool_size": mined.record["pool_size"], "excluded": mined.record["excluded"],
        "per_strategy": mined.record["per_strategy"], "wall_seconds": mined.record["wall_seconds"]}, indent=2))


def _task_of(name: str | None, record: dict, kind: str | None, labels: str | None) -> Any:
    """The task named by the option, else the one the mining record names (own tasks keep kind and labels)."""
    stored = record.get("task") or {}
    if name is None and not stored:
        raise ConfigError("no --task given and the mined file's record names none")
    if kind is None and name in (None, stored.get("name")) and stored.get("kind") and stored.get("name"):
        from ..tasks import TASKS, custom_task

        if stored["name"] not in TASKS:
            return custom_task(stored["name"], stored["kind"], tuple(stored.get("labels") or ()))
    return task_spec(name or stored["name"], kind, labels)


def score(
    mined_file: MinedArg,
    teacher: Annotated[str, typer.Option(help="cross-encoder folder or hub id; comma-separated for an ensemble")],
    output: Annotated[Path, typer.Option("--output", "-o", help="bundle folder to write")],
    task: Annotated[str | None, typer.Option(help="task (default: the one the mined file was mined for)")] = None,
    kind: KindOpt = None, labels: LabelsOpt = None,
    batch_size: int = 64,
    chunk_size: Annotated[int, typer.Option(help="pairs per committed chunk: what a kill can lose at most")] = 1024,
    cache: Annotated[Path | None, typer.Option(help="store of scored chunks (resume point, reused across runs)")]
    = None,
    strategy: MinedStrategyOpt = None,
    max_pairs: Annotated[int | None, typer.Option(
        help="score only this many (the smallest pair hashes, the rule of `--mined-budget`: a larger "
             "budget later scores only the added pairs)")] = None,
    ray: RayOpt = None, ray_workers: RayWorkersOpt = 2, ray_cpus: RayCpusOpt = 1.0, ray_gpus: RayGpusOpt = 0.0,
    progress: ProgressOpt = False,
) -> None:
    """Score mined pairs with the teacher (resumable; pairs scored before are reused) into a portable bundle.

    ``--strategy`` / ``--max-pairs`` score the subset a training budget uses, so a CPU can score ×3 of a
    mined set now and ×10 later (the ×3 pairs come from the store then) instead of all of it at once.
    """
    setup()
    import time

    from ..augment import MinedPairs, score_mined, unscored_pairs, write_mined_bundle
    from ..augment.score import store_folder
    from ..teacher import load_teacher

    mined = MinedPairs.load(mined_file)
    if strategy is not None or max_pairs is not None:
        mined = mined.restrict(parse_strategies(strategy), max_pairs, source=str(mined_file))
    spec = _task_of(task, mined.record, kind, labels)
    started = time.perf_counter()
    model = load_teacher(teacher, spec)
    on_ray = 0
    if ray is not None:  # the pool scores what the store lacks into the same store; score_mined then reads it
        from ..scale import teacher_logits_ray

        todo = unscored_pairs(model.fingerprint(), mined, cache=cache)
        on_ray = len(todo)
        if on_ray:
            teacher_logits_ray(teacher, spec, todo, cache=store_folder(cache), batch_size=batch_size,
                               chunk_size=chunk_size, show_progress_bar=progress, address=ray,
                               concurrency=ray_workers, num_cpus=ray_cpus, num_gpus=ray_gpus)
    scored = score_mined(model, mined, cache=cache, batch_size=batch_size, chunk_size=chunk_size,
                         show_progress_bar=progress)
    if ray is not None:
        scored.record["scoring"].update(ray=ray, scored_on_ray=on_ray)
    write_mined_bundle(scored, output)
    seconds = time.perf_counter() - started
    info = scored.record["scoring"]
    typer.echo(json.dumps({"output": str(output), "rows": len(scored), "scored_now": info["scored_now"] + on_ray,
                           "reused_from_store": info["reused_from_store"] - on_ray, "teacher": scored.teacher,
                           "task": scored.task, "scoring_seconds": info["seconds"],
                           "pairs_per_second": info["pairs_per_second"], "wall_seconds": round(seconds, 3)},
                          indent=2))


def _bands(value: str) -> int | list[float]:
    """``5`` -> 5 equal bands; ``0,0.2,0.5,1`` -> those edges."""
    try:
        return int(value) if "," not in value else [float(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--bands takes a count (5) or comma-separated edges (0,0.5,1), not {value!r}") from None


def balance(
    bundle: BundleArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="balanced bundle folder to write")],
    bands: Annotated[str, typer.Option(help="number of equal-width bands, or explicit edges 0,0.2,0.5,1")] = "5",
    per_band: Annotated[int | None, typer.Option(help="rows kept per band (default: the smallest band's count)")]
    = None,
    seed: int = 42,
    kind: KindOpt = None, labels: LabelsOpt = None,
) -> None:
    """Keep the same number of mined pairs per teacher-score band, so they are not almost all negatives."""
    setup()
    from ..augment import balance_by_bands, load_mined_bundle, write_mined_bundle

    scored = load_mined_bundle(bundle)
    spec = _task_of(scored.task, scored.record.get("mining", {}), kind, labels)
    balanced = balance_by_bands(scored, spec, bands=_bands(bands), per_band=per_band, seed=seed)
    write_mined_bundle(balanced, output)
    typer.echo(json.dumps({"output": str(output), **balanced.record["balance"]}, indent=2))


def register(app: App) -> None:
    """Add the ``augment`` group (mine, score, balance) to ``app``."""
    augment_app = App(help="Teacher-scored augmentation: mine unlabelled pairs, score them, balance them.")
    app.add_typer(augment_app, name="augment")
    augment_app.command("mine")(mine)
    augment_app.command("score")(score)
    augment_app.command("balance")(balance)
