"""What every ``dsembed`` command shares: logging setup, option types, data loading, one-line errors.

Every command is registered through :class:`App`, which turns any :class:`~dsembed.errors.DsembedError`
into ``error: <message>`` on stderr and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ..errors import ConfigError, DsembedError

TaskArg = Annotated[str, typer.Argument(help="GLUE task (mrpc, stsb, rte, qnli, qqp, mnli) or your own task name")]
ModelArg = Annotated[Path, typer.Argument(help="a dsembed student folder")]
TrainOpt = Annotated[Path | None, typer.Option(help="own train file (.tsv/.csv/.jsonl: sentence1, sentence2, label)")]
DevOpt = Annotated[Path | None, typer.Option(help="own dev file (same format)")]
TestOpt = Annotated[Path | None, typer.Option(help="own labelled test file: reported, never selected on")]
MinedStrategyOpt = Annotated[str | None, typer.Option(
    help="comma-separated: keep only the mined pairs these strategies found (random, bm25, embedding, swap)")]
KindOpt = Annotated[str | None, typer.Option(help="own task kind: binary, regression or multiclass")]
LabelsOpt = Annotated[str | None, typer.Option(help="own task labels in class order, comma separated")]
DataDirOpt = Annotated[Path | None, typer.Option(help="folder with GLUE TSVs (default: $DSEMBED_GLUE_DIR or the "
                                                       "shared copy beside the checkout)")]
SkipOpt = Annotated[bool, typer.Option("--skip-bad", help="skip malformed rows (their count is reported)")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="progress bars")]



def _checked_device(value: str) -> str:
    """Check ``--device`` while the options are parsed: a GPU this machine lacks stops before any loading.

    ``auto`` stays ``auto`` (each model resolves it; the onnx backend reads it as its CPU default).
    """
    from ..utils import resolve_device

    try:
        resolve_device(value)
    except DsembedError as exc:
        fail(str(exc))
    return value.strip().lower()


DeviceOpt = Annotated[str, typer.Option(
    "--device", callback=_checked_device, help="where the model (and the head scan) runs: auto (cuda if there "
                                               "is a GPU, else cpu), cpu, cuda or cuda:N")]

RayOpt = Annotated[str | None, typer.Option(
    "--ray", metavar="ADDRESS", help="run on a Ray actor pool: local (start, or attach to this machine's Ray), "
                                     "auto (the running cluster) or HOST:PORT; same cache and output as without")]
RayWorkersOpt = Annotated[int, typer.Option(help="with --ray: actors in the pool (each loads the model once)")]
RayCpusOpt = Annotated[float, typer.Option(help="with --ray: CPUs per actor (also its torch threads)")]
RayGpusOpt = Annotated[float, typer.Option(help="with --ray: GPUs per actor (> 0: the model runs on it)")]


def fail(message: str) -> NoReturn:
    """Stop the command with a one-line error and exit code 2."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command so that a user-caused error prints one line instead of a traceback."""

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DsembedError as exc:
            fail(" ".join(str(exc).split()) or type(exc).__name__)

    return command


class App(typer.Typer):
    """A Typer app whose commands report every :class:`DsembedError` as one line (exit code 2)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("no_args_is_help", True)
        kwargs.setdefault("add_completion", False)
        kwargs.setdefault("pretty_exceptions_enable", False)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        register = super().command(*args, **kwargs)

        def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            register(one_line_errors(fn))
            return fn

        return decorator


def setup() -> None:
    """Logging for a command run (``DSEMBED_LOG`` sets the level); transformers' chatter off."""
    logging.basicConfig(level=os.environ.get("DSEMBED_LOG", "INFO"), format="%(levelname)s %(name)s: %(message)s")
    import transformers

    transformers.logging.set_verbosity_error()


def parse_labels(labels: str | None) -> tuple[str, ...]:
    """``"no,yes"`` -> ``("no", "yes")``."""
    return tuple(x.strip() for x in (labels or "").split(",") if x.strip())


def parse_strategies(strategies: str | None) -> tuple[str, ...] | None:
    """``"bm25,embedding"`` -> ``("bm25", "embedding")``; None (or nothing named) means every strategy."""
    names = tuple(x.strip() for x in (strategies or "").split(",") if x.strip())
    return names or None


def parse_seeds(seeds: str) -> list[int]:
    """``"42,43,44"`` -> ``[42, 43, 44]`` (a one-line error for anything that is not an integer)."""
    try:
        return [int(x) for x in seeds.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--seeds takes comma-separated integers, not {seeds!r}") from None


def task_spec(task: str, kind: str | None, labels: str | None) -> Any:
    """A GLUE task by name, or the user's own task when ``kind`` is given."""
    from ..tasks import custom_task, get_task

    return custom_task(task, kind, parse_labels(labels)) if kind else get_task(task)  # type: ignore[arg-type]


def task_and_data(task: str, train: Path | None, dev: Path | None, kind: str | None, labels: str | None,
                  skip_bad: bool, data_dir: Path | None = None, source: str = "auto") -> tuple[Any, Any, Any]:
    """The task and its train/dev pairs: a GLUE task (local copy or hub) or the user's own files."""
    from ..data import load_glue, read_pairs

    spec = task_spec(task, kind, labels)
    train_ds = read_pairs(train, spec, skip_bad=skip_bad) if train else \
        load_glue(spec, "train", data_dir=data_dir, source=source, skip_bad=skip_bad)
    dev_ds = read_pairs(dev, spec, skip_bad=skip_bad) if dev else \
        load_glue(spec, "dev", data_dir=data_dir, source=source, skip_bad=skip_bad)
    for ds in (train_ds, dev_ds):
        if ds.skipped:
            typer.secho(f"skipped {ds.skipped} malformed rows in {ds.source}", fg=typer.colors.YELLOW, err=True)
    return spec, train_ds, dev_ds
