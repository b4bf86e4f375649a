"""Retrieval commands: ``index build/add/ann/info/verify/discard``, ``search``, ``allpairs``, ``serve``.

Registered on the main ``dsembed`` app by :func:`register`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError
from .common import (
    App,
    DeviceOpt,
    ModelArg,
    ProgressOpt,
    RayCpusOpt,
    RayGpusOpt,
    RayOpt,
    RayWorkersOpt,
    setup,
)
from .export import BackendOpt, load_with_backend

StoreArg = Annotated[Path, typer.Argument(help="a candidate store folder (see `dsembed index build`)")]
ColumnOpt = Annotated[str | None, typer.Option(help="text column (.tsv/.csv) or key (.jsonl); default 'sentence'")]
IdColumnOpt = Annotated[str | None, typer.Option(help="column/key holding candidate ids (default: row numbers)")]
RerankOpt = Annotated[str | None, typer.Option(
    "--rerank", metavar="TEACHER", help="re-rank the head's top candidates with this cross-encoder: a dsembed "
                                        "teacher folder, a CrossEncoder folder or hub id, or an ensemble a,b")]
RerankTopOpt = Annotated[int | None, typer.Option(help="with --rerank: head candidates per query the cross-encoder "
                                                       "scores (default 50; at least --top-k)")]
RerankBatchOpt = Annotated[int, typer.Option(help="with --rerank: pairs per cross-encoder batch")]


def load_reranker(spec: str | None, student: object, rerank_top: int | None,
                  device: str | None = None) -> object | None:
    """The cross-encoder for ``--rerank``, refused unless its task has the student's kind and outputs."""
    if spec is None:
        if rerank_top is not None:
            raise ConfigError("--rerank-top needs --rerank TEACHER")
        return None
    from ..retrieval import check_reranker
    from ..teacher import load_teacher

    task = student.task  # type: ignore[attr-defined]
    teacher = load_teacher(spec, task, device=device)  # a cross-encoder with another number of outputs is refused here
    for member in getattr(teacher, "members", [teacher]):
        trained_for = member.info.get("task")
        known = _registered_kind(trained_for)
        if known is not None and known != task.kind:
            raise ConfigError(f"--rerank {member.path} was trained for {trained_for} ({known}), the student's "
                              f"task {task.name} is {task.kind}")
    check_reranker(teacher, task)
    return teacher


def _registered_kind(name: object) -> str | None:
    from ..tasks import TASKS

    return TASKS[name].kind if isinstance(name, str) and name in TASKS else None


def _read_input(path: Path, column: str | None, id_column: str | None) -> tuple[list[str], list[str] | None]:
    from ..data import read_sentences

    texts = read_sentences(path, column=column)
    ids = read_sentences(path, column=id_column) if id_column else None
    if ids is not None and len(ids) != len(texts):
        raise ConfigError(f"{path}: {len(ids)} ids for {len(texts)} sentences")
    return texts, ids


def _ints(value: str, option: str) -> tuple[int, ...]:
    """``"1000,10000"`` -> ``(1000, 10000)``, or a one-line error naming the option."""
    try:
        return tuple(int(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated whole numbers, not {value!r}") from None


def _copies(value: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in value.split(",") if x.strip() and x.strip() != "none")


def _kinds(value: str) -> tuple[str, ...]:
    return ("cosine", "head") if value == "both" else (value,)


def index_build(
    model: ModelArg,
    input: Annotated[Path, typer.Argument(help="candidates: .txt (one per line) or .tsv/.csv/.jsonl column")],
    store: Annotated[Path, typer.Argument(help="output store folder")],
    column: ColumnOpt = None,
    id_column: IdColumnOpt = None,
    copies: Annotated[str, typer.Option(help="low-precision copies: bfloat16,float16,int8 or none")] = "bfloat16",
    ann: Annotated[str, typer.Option(help="FAISS index: auto, none, or a factory string (IVF1024,SQ8)")] = "auto",
    ann_kind: Annotated[str, typer.Option(help="prefilter index: head (head surrogate), cosine or both")]
    = "head",
    chunk_size: Annotated[int, typer.Option(help="sentences encoded and committed per chunk")] = 1024,
    batch_size: int = 32,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = 2,
    ray_cpus: RayCpusOpt = 1.0,
    ray_gpus: RayGpusOpt = 0.0,
    progress: ProgressOpt = True,
    backend: BackendOpt = "torch",
    device: DeviceOpt = "auto",
) -> None:
    """Encode a candidate file into a store (resumes an interrupted build of the same input).

    With --ray the chunks are encoded by a Ray actor pool and committed here, in order: the same store,
    and a build with Ray and one without resume each other.
    """
    setup()
    from ..retrieval import build_store

    texts, ids = _read_input(input, column, id_column)  # an input without sentences stops here: no store folder
    options = {"ids": ids, "source": str(input), "copies": _copies(copies), "chunk_size": chunk_size,
               "batch_size": batch_size, "show_progress_bar": progress, "ann": ann, "ann_kinds": _kinds(ann_kind)}
    if ray is not None:
        from ..scale import build_store_ray

        if backend != "torch":
            raise ConfigError("--ray encodes with the torch backend; drop --backend or --ray")

        st = build_store_ray(model, texts, store, address=ray, concurrency=ray_workers, num_cpus=ray_cpus,
                             num_gpus=ray_gpus, **options)
    else:
        st = build_store(load_with_backend(model, backend, device), texts, store, **options)
    typer.echo(f"{st.count} candidates in {store}" + (f" (+ANN {ann})" if ann != "none" else ""))


def index_add(
    model: ModelArg,
    input: Annotated[Path, typer.Argument(help="more candidates (same formats as build)")],
    store: StoreArg,
    column: ColumnOpt = None,
    id_column: IdColumnOpt = None,
    chunk_size: int = 1024,
    batch_size: int = 32,
    discard_pending: Annotated[bool, typer.Option(help="roll back an unfinished add of another file first")]
    = False,
    allow_duplicate: Annotated[bool, typer.Option(help="add a file that was already added")] = False,
    progress: ProgressOpt = True,
    backend: BackendOpt = "torch",
    device: DeviceOpt = "auto",
) -> None:
    """Append candidates to an existing store (existing rows are not re-encoded; the ANN index is extended)."""
    setup()
    from ..retrieval import discard_pending as discard
    from ..retrieval import ingest, open_store

    texts, ids = _read_input(input, column, id_column)
    student = load_with_backend(model, backend, device)
    st = open_store(store, student)
    if discard_pending:
        dropped = discard(st)
        if dropped:
            typer.echo(f"rolled back {dropped} rows of an unfinished add")
    before = st.count
    ingest(student, st, texts, ids, source=str(input), chunk_size=chunk_size, batch_size=batch_size,
           show_progress_bar=progress, allow_duplicate_source=allow_duplicate)
    typer.echo(f"added {st.count - before} candidates; {store} now holds {st.count}")


def index_ann(
    store: StoreArg,
    factory: Annotated[str, typer.Option(help="auto, Flat, IVF<nlist>,SQ8, IVF<nlist>,Flat, HNSW32 ...")] = "auto",
    kind: Annotated[str, typer.Option(help="cosine, head (head surrogate; needs --model) or both")] = "cosine",
    model: Annotated[Path | None, typer.Option(help="the store's student (for --kind head)")] = None,
    nprobe: Annotated[int | None, typer.Option(help="default IVF lists probed per query")] = None,
    label: Annotated[str | None, typer.Option(help="multiclass: class the head index ranks by")] = None,
    progress: ProgressOpt = True,
) -> None:
    """(Re)build a FAISS prefilter index of a store."""
    setup()
    from ..retrieval import build_ann, open_store

    student = load_with_backend(model) if model is not None else None
    metas = []
    st = open_store(store, student)
    for k in _kinds(kind):
        metas.append(build_ann(st, factory, kind=k, model=student, nprobe=nprobe, label=label,
                               show_progress_bar=progress).meta)
    typer.echo(json.dumps(metas, indent=2))


def index_info(store: StoreArg) -> None:
    """Print a store's manifest, file sizes and ANN state as JSON."""
    from ..retrieval import open_store

    typer.echo(json.dumps(open_store(store).info(), indent=2, default=str))


def index_verify(
    store: StoreArg,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    progress: ProgressOpt = False,
) -> None:
    """Read every byte of a store and check it against the manifest's checksums (exit 2 on any damage)."""
    from ..retrieval import verify_store

    report = verify_store(store, show_progress_bar=progress)
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.summary())


def index_discard(store: StoreArg) -> None:
    """Roll back a store's unfinished build or add (its committed rows are removed)."""
    from ..retrieval import discard_pending, open_store

    st = open_store(store)
    if not st.manifest.get("pending"):
        typer.echo(f"{store} has no unfinished ingest; nothing to do")
        return
    dropped = discard_pending(st)
    typer.echo(f"rolled back {dropped} rows of an unfinished ingest; {store} holds {st.count} rows")


def search(
    model: ModelArg,
    store: StoreArg,
    query: Annotated[list[str] | None, typer.Argument(help="query sentence(s)")] = None,
    queries: Annotated[Path | None, typer.Option(help="file of queries (.txt/.tsv/.jsonl)")] = None,
    column: ColumnOpt = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k")] = 10,
    prefilter: Annotated[int | None, typer.Option(help="ANN: re-rank only the index's top-M (faster)")]
    = None,
    prefilter_kind: Annotated[str, typer.Option(help="which ANN index: auto (head if built), head, cosine")]
    = "auto",
    nprobe: Annotated[int | None, typer.Option(help="IVF lists probed (ANN speed/recall)")] = None,
    precision: Annotated[str, typer.Option(help="fp32 (exact scan) or bf16 (bf16 screen + fp32 rescoring)")]
    = "fp32",
    label: Annotated[str | None, typer.Option(help="multiclass: class to rank by (name or index)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    backend: BackendOpt = "torch",
    rerank: RerankOpt = None,
    rerank_top: RerankTopOpt = None,
    rerank_batch_size: RerankBatchOpt = 64,
    device: DeviceOpt = "auto",
) -> None:
    """Rank every candidate of a store against the query with the student's head (then, with --rerank, the
    head's top candidates with a cross-encoder)."""
    setup()
    import time

    from ..retrieval import rank

    texts = list(query or [])
    if queries is not None:
        texts += _read_input(queries, column, None)[0]
    if not texts:
        raise ConfigError("give a query sentence or --queries FILE")
    student = load_with_backend(model, backend, device)
    reranker = load_reranker(rerank, student, rerank_top, device)
    start = time.perf_counter()
    results = rank(student, texts, store, top_k, prefilter=prefilter, prefilter_kind=prefilter_kind,
                   nprobe=nprobe, precision=precision, label=label, reranker=reranker, rerank_top=rerank_top,
                   rerank_batch_size=rerank_batch_size, device=device)
    elapsed = time.perf_counter() - start
    if as_json:
        out = {"seconds": elapsed, "results": [{"query": q, "hits": [h.to_dict() for h in hits]}
                                                for q, hits in zip(texts, results, strict=True)]}
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    for q, hits in zip(texts, results, strict=True):
        typer.echo(f"# {q}")
        if reranker is not None and hits:
            typer.echo(f"{'#':>3}  {'teacher':<8}  {'student':<8} (rank)  id\ttext")
        for i, h in enumerate(hits, 1):
            if h.teacher_score is None:
                typer.echo(f"{i:>3}  {h.score:.6f}  {h.id}\t{h.text}")
            else:
                typer.echo(f"{i:>3}  {h.teacher_score:.6f}  {h.score:.6f} ({h.student_rank:>3})  {h.id}\t{h.text}")
    typer.secho(f"{len(texts)} quer{'y' if len(texts) == 1 else 'ies'} in {elapsed:.3f} s", err=True)


def allpairs(
    model: ModelArg,
    input: Annotated[Path, typer.Argument(help="sentences (.txt/.tsv/.jsonl)")],
    threshold: Annotated[float, typer.Option(help="emit pairs whose score is at least this")],
    column: ColumnOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help=".tsv or .jsonl (default stdout TSV)")]
    = None,
    symmetrize: Annotated[str, typer.Option(help="combine s(i,j), s(j,i): mean, max, min, or none")] = "mean",
    tile: Annotated[int, typer.Option(help="block size (memory ~ tile^2)")] = 512,
    label: Annotated[str | None, typer.Option(help="multiclass: class to score (name or index)")] = None,
    precision: str = "fp32",
    progress: ProgressOpt = True,
    backend: BackendOpt = "torch",
    device: DeviceOpt = "auto",
) -> None:
    """Head scores of all pairs within a set (dedup/clustering): print the pairs over a threshold."""
    setup()
    from ..retrieval import iter_all_pairs

    texts, _ = _read_input(input, column, None)
    student = load_with_backend(model, backend, device)
    handle = open(output, "w", encoding="utf-8") if output else sys.stdout  # noqa: SIM115
    as_jsonl = output is not None and output.suffix == ".jsonl"
    count = 0
    try:
        for block in iter_all_pairs(student, texts, threshold=threshold, symmetrize=symmetrize, tile=tile,
                                    label=label, precision=precision, show_progress_bar=progress, device=device):
            for i, j, s in zip(block.i.tolist(), block.j.tolist(), block.score.tolist(), strict=True):
                if as_jsonl:
                    handle.write(json.dumps({"i": i, "j": j, "score": s, "a": texts[i], "b": texts[j]},
                                            ensure_ascii=False) + "\n")
                else:
                    handle.write(f"{i}\t{j}\t{s:.6f}\t{texts[i]}\t{texts[j]}\n")
                count += 1
    finally:
        if output:
            handle.close()
    typer.secho(f"{count} pairs >= {threshold} among {len(texts)} sentences", err=True)


def serve(
    model: ModelArg,
    store: Annotated[Path | None, typer.Option(help="candidate store for /search")] = None,
    host: Annotated[str, typer.Option(help="bind address (keep 127.0.0.1 unless you mean to expose it)")]
    = "127.0.0.1",
    port: int = 8000,
    max_body_bytes: int = 1_000_000,
    max_sentences: int = 256,
    max_pairs: int = 1024,
    max_top_k: int = 1000,
    encode_batch: Annotated[int, typer.Option(help="sentences encoded per turn of the encoder (fairness)")] = 64,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="check every byte of the store at start")]
    = True,
    threads: Annotated[int, typer.Option(help="torch threads (0: one per core); fewer keep a core for requests")]
    = 0,
    log_level: str = "info",
    backend: BackendOpt = "torch",
    rerank: RerankOpt = None,
    rerank_top: RerankTopOpt = None,
    max_rerank_top: Annotated[int, typer.Option(help="largest rerank_top a request may ask for")] = 200,
    rerank_batch_size: Annotated[int, typer.Option(help="with --rerank: pairs per turn of the model lock")] = 16,
    device: DeviceOpt = "auto",
) -> None:
    """Serve encode / score / search over HTTP (FastAPI + uvicorn); --rerank adds a cross-encoder to /search."""
    setup()
    from ..serve import ServeLimits
    from ..serve import serve as run_server

    limits = ServeLimits(max_body_bytes=max_body_bytes, max_sentences=max_sentences, max_pairs=max_pairs,
                         max_top_k=max_top_k, encode_batch=encode_batch, max_rerank_top=max_rerank_top,
                         rerank_batch=rerank_batch_size)
    student = load_with_backend(model, backend, device)
    if rerank is not None and store is None:
        raise ConfigError("--rerank re-ranks /search results: give --store too")
    if rerank_top is not None and rerank_top > max_rerank_top:
        raise ConfigError(f"--rerank-top {rerank_top} is over --max-rerank-top {max_rerank_top}")
    run_server(student, store, host=host, port=port, limits=limits, log_level=log_level, verify_store=verify,
               threads=threads, reranker=load_reranker(rerank, student, rerank_top, device), rerank_top=rerank_top,
               device=device)


def register(app: App) -> None:
    """Add the retrieval commands to ``app``."""
    index_app = App(help="Candidate stores: build, add to, ANN index, inspect.")
    app.add_typer(index_app, name="index")
    index_app.command("build")(index_build)
    index_app.command("add")(index_add)
    index_app.command("ann")(index_ann)
    index_app.command("info")(index_info)
    index_app.command("verify")(index_verify)
    index_app.command("discard")(index_discard)
    app.command("search")(search)
    app.command("allpairs")(allpairs)
    app.command("serve")(serve)
