"""``dsembed bench``: the speed benchmark (CPU rows, plus GPU rows where there is a GPU), recorded under results/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import App, DeviceOpt, ProgressOpt, setup
from .retrieval import _ints


def bench(
    model: Annotated[str | None, typer.Option(help="student folder (default: untrained head on MiniLM)")] = None,
    teacher: Annotated[str | None, typer.Option(help="cross-encoder (default: untrained head on MiniLM)")]
    = None,
    base: Annotated[str, typer.Option(help="without --model/--teacher: the encoder the untrained student and "
                                           "teacher are built on (a known base or a model folder)")]
    = "all-MiniLM-L6-v2",
    sizes: Annotated[str, typer.Option(help="candidate counts, comma separated")] = "1000,10000,100000,1000000",
    real: Annotated[int, typer.Option(help="real GLUE sentences encoded; larger stores are extended synthetically")]
    = 12000,
    queries: Annotated[int, typer.Option(help="timed queries per size (medians)")] = 5,
    teacher_max: Annotated[int, typer.Option(help="largest N the cross-encoder actually runs")] = 10000,
    prefilters: Annotated[str, typer.Option(help="ANN prefilter sizes M")] = "100,200,500,1000,2000",
    prefilter_kinds: Annotated[str, typer.Option(help="ANN rows: head,cosine, one of them, or none")]
    = "head,cosine",
    output: Annotated[Path, typer.Option("--output", "-o")] = Path("results/speed"),
    work_dir: Annotated[Path | None, typer.Option(help="where the large stores go (default: cache dir)")]
    = None,
    keep_stores: bool = False,
    encode_sentences: Annotated[int, typer.Option(help="sentences for the throughput comparison")] = 2000,
    threads: Annotated[int, typer.Option(help="torch/faiss threads for every method (0: library default)")] = 0,
    note: Annotated[str, typer.Option(help="free text stored in the record")] = "",
    backends: Annotated[str, typer.Option(help="encoding rows: torch, plus onnx and/or onnx-int8 (needs an "
                                               "export of --model)")] = "torch",
    progress: ProgressOpt = True,
    device: DeviceOpt = "auto",
) -> None:
    """Speed benchmark: teacher vs student exact head vs ANN + re-rank vs plain ST cosine, over N.

    On a GPU (--device auto finds one; cuda, cuda:N) it adds GPU rows for encoding, teacher scoring and the exact
    head scan beside the CPU rows; the ANN rows stay on the CPU (faiss-cpu).
    """
    setup()
    from ..bench import BenchConfig, format_summary, run_bench

    cfg = BenchConfig(model=model, teacher=teacher, base=base, sizes=_ints(sizes, "--sizes"), device=device,
                      prefilter_kinds=tuple(x.strip() for x in prefilter_kinds.split(",")
                                            if x.strip() not in ("", "none")),
                      real_sentences=real, queries=queries, teacher_max=teacher_max,
                      prefilters=_ints(prefilters, "--prefilters"), output=str(output),
                      work_dir=str(work_dir) if work_dir else None, keep_stores=keep_stores,
                      encode_sentences=encode_sentences, threads=threads, note=note, show_progress_bar=progress,
                      backends=tuple(x.strip() for x in backends.split(",") if x.strip()))
    record = run_bench(cfg)
    typer.echo(format_summary(record))


def register(app: App) -> None:
    """Add ``bench`` to ``app``."""
    app.command("bench")(bench)
