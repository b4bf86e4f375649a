"""HTTP scoring service over a student (and optionally a candidate store): encode, score pairs, search.

``create_app`` builds the FastAPI app (tests use it with a real uvicorn server on 127.0.0.1);
``serve`` runs it with uvicorn. What keeps it healthy under load:

* ``GET /health`` is an ``async`` route that reads precomputed state: it never waits for the encoder or
  for a worker thread, so a load balancer sees a busy server as alive.
* The work endpoints are plain ``def`` functions: FastAPI runs them in its thread pool, off the event
  loop, and they build their JSON response there too. Only the tokenizer/encoder call is serialised
  (Hugging Face fast tokenizers are not safe to call from several threads at once), by a FIFO lock taken
  per batch of ``ServeLimits.encode_batch`` sentences, so a 1,024-pair request lets small requests in
  between its batches instead of holding the encoder for its whole length. Head scoring runs unlocked.
* Every text field is checked (:func:`check_text`): a string, valid Unicode (no lone surrogate), no NUL,
  not blank, not over ``max_chars``; anything else is a 422 that does not echo the input back.
* A re-ranker (a cross-encoder over /search's head candidates) takes the same lock per ``rerank_batch``
  pairs (:class:`~dsembed.retrieval.TurnTakingScorer`): a long re-rank never blocks /health or starves others.
* A store is opened, required complete (no unfinished ingest) and, by default, verified byte for byte
  against its checksums before the first request; a damaged row found later answers 503, never a ranking.
"""

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .data.validate import text_problem
from .errors import ConfigError, CorruptFileError, StoreError
from .utils import FairLock

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI

    from .retrieval import CandidateStore
    from .student.model import DSEModel


@dataclass
class ServeLimits:
    """Request limits; anything larger is refused with 413 (body) or 422 (fields)."""

    max_body_bytes: int = 1_000_000
    max_sentences: int = 256
    max_pairs: int = 1024
    max_queries: int = 32
    max_chars: int = 2000
    max_top_k: int = 1000
    max_prefilter: int = 10_000
    encode_batch: int = 64  # sentences encoded per turn of the encoder lock (big requests yield in between)
    max_rerank_top: int = 200  # head candidates per query a request may send to the re-ranker
    rerank_batch: int = 16  # pairs the re-ranker scores per turn of the lock


class BodyLimitMiddleware:
    """ASGI middleware: 413 for a body over ``max_bytes``, whether announced (Content-Length) or streamed."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Any, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await self._reject(send, 400, "invalid Content-Length")
                return
            if size > self.max_bytes:
                await self._reject(send, 413, f"request body over {self.max_bytes} bytes")
                return
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Any:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True  # the app sees a disconnect and stops reading; we answer 413 below
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Any) -> None:
            nonlocal started
            if exceeded:
                return  # whatever the app answers to the cut-off body is replaced by the 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._reject(send, 413, f"request body over {self.max_bytes} bytes")


def check_text(value: object, max_chars: int) -> str:
    """A request's text, or ``ValueError`` (a 422) saying what is wrong with it.

    Unicode and NUL follow the same rule as every file reader (``dsembed.data.validate``).
    """
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise ValueError(f"sentence longer than {max_chars} characters")
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    if not value.strip():
        raise ValueError("empty sentence")
    return value


class Encoder:
    """The student's encoder behind a :class:`FairLock` taken per batch; head scoring outside the lock."""

    def __init__(self, model: "DSEModel", batch: int) -> None:
        if batch < 1:
            raise ConfigError(f"encode_batch must be >= 1, got {batch}")
        self.model = model
        self.batch = batch
        self.lock = FairLock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        parts = []
        for lo in range(0, len(texts), self.batch):
            with self.lock:
                parts.append(np.asarray(self.model.encode(list(texts[lo:lo + self.batch]), batch_size=32,
                                                          show_progress_bar=False), dtype=np.float32))
        return np.concatenate(parts) if parts else np.zeros((0, self.model.embedding_dim), dtype=np.float32)

    def score(self, pairs: Sequence[tuple[str, str]], raw: bool) -> np.ndarray:
        """Like ``DSEModel.predict``: each distinct sentence encoded once, in batches."""
        unique: dict[str, int] = {}
        for a, b in pairs:
            unique.setdefault(a, len(unique))
            unique.setdefault(b, len(unique))
        emb = self.encode(list(unique))
        ia = np.fromiter((unique[a] for a, _ in pairs), dtype=np.int64, count=len(pairs))
        ib = np.fromiter((unique[b] for _, b in pairs), dtype=np.int64, count=len(pairs))
        logits = self.model.head_logits(emb[ia], emb[ib])
        return logits if raw else self.model.scores_from_logits(logits)


def _printable(value: Any) -> Any:
    """A string that can be sent as UTF-8 JSON (a lone surrogate becomes a ``\\udXXX`` escape)."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(value, str) else value


async def _invalid_request(request: Any, exc: Any) -> Any:
    """422 naming each bad field; the input is not echoed back (it may be large, or not encodable as UTF-8)."""
    from fastapi.responses import JSONResponse

    errors = [{"type": e.get("type"), "loc": [_printable(x) for x in e.get("loc", ())],
               "msg": _printable(str(e.get("msg", "")))} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": errors})


async def _http_error(request: Any, exc: Any) -> Any:
    """FastAPI's HTTP errors, except that a body that is not UTF-8 is a 422 like any other invalid text."""
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.responses import JSONResponse

    cause = exc.__cause__
    if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError):  # FastAPI's "error parsing the body"
        detail = [{"type": "json_invalid", "loc": ["body"], "msg": f"the body is not UTF-8 (byte {cause.start})"}]
        return JSONResponse(status_code=422, content={"detail": detail})
    return await http_exception_handler(request, exc)


def _request_models(limits: ServeLimits) -> tuple[Any, Any, Any]:
    """The pydantic bodies of /encode, /score and /search: strict strings, every text through :func:`check_text`."""
    from pydantic import BaseModel, Field, StrictStr, field_validator

    def text(value: str, where: str) -> str:
        try:
            return check_text(value, limits.max_chars)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

    def texts(values: list[str], field: str) -> list[str]:
        return [text(x, f"{field}[{i}]") for i, x in enumerate(values)]

    class EncodeRequest(BaseModel):
        sentences: list[StrictStr] = Field(min_length=1, max_length=limits.max_sentences)
        normalize: bool = False

        @field_validator("sentences")
        @classmethod
        def _texts(cls, value: list[str]) -> list[str]:
            return texts(value, "sentences")

    class ScoreRequest(BaseModel):
        pairs: list[tuple[StrictStr, StrictStr]] = Field(min_length=1, max_length=limits.max_pairs)
        raw: bool = False

        @field_validator("pairs")
        @classmethod
        def _texts(cls, value: list[tuple[str, str]]) -> list[tuple[str, str]]:
            return [(text(a, f"pairs[{i}][0]"), text(b, f"pairs[{i}][1]")) for i, (a, b) in enumerate(value)]

    class SearchRequest(BaseModel):
        query: StrictStr | None = None
        queries: list[StrictStr] | None = Field(default=None, min_length=1, max_length=limits.max_queries)
        top_k: int = Field(default=10, ge=1, le=limits.max_top_k)
        prefilter: int | None = Field(default=None, ge=1, le=limits.max_prefilter)
        prefilter_kind: str = Field(default="auto", pattern="^(auto|cosine|head)$")
        nprobe: int | None = Field(default=None, ge=1, le=65536)
        precision: str = Field(default="fp32", pattern="^(fp32|bf16)$")
        label: int | str | None = None
        rerank: bool = True  # false: the head's ranking only, even on a server with a re-ranker
        rerank_top: int | None = Field(default=None, ge=1, le=limits.max_rerank_top)

        @field_validator("query", "label")
        @classmethod
        def _query(cls, value: Any, info: Any) -> Any:
            return text(value, info.field_name) if isinstance(value, str) else value

        @field_validator("queries")
        @classmethod
        def _queries(cls, value: list[str] | None) -> list[str] | None:
            return None if value is None else texts(value, "queries")

    return EncodeRequest, ScoreRequest, SearchRequest


def _open_for_serving(model: "DSEModel", store: "CandidateStore | str | Path", verify: bool) -> "CandidateStore":
    """The store, refused before the first request if it is incomplete or (``verify``) damaged anywhere."""
    from .retrieval import open_store, verify_store

    opened = open_store(store, model)
    opened.require_complete()
    if verify:
        verify_store(opened)
    return opened


def _search(req: Any, model: "DSEModel", store: "CandidateStore", anns: dict[str, Any], encoder: Encoder,
            reranker: Any = None, rerank_top: int | None = None) -> dict:
    """The body of a /search answer; client mistakes are HTTP errors, a damaged row found by the scan a 503."""
    from fastapi import HTTPException

    from .retrieval import rank, rerank_hits, resolve_label
    from .retrieval.rerank import depth

    if (req.query is None) == (req.queries is None):
        raise HTTPException(status_code=422, detail="give exactly one of 'query' or 'queries'")
    if req.rerank_top is not None and (reranker is None or not req.rerank):
        raise HTTPException(status_code=422, detail="'rerank_top' needs re-ranking: this server has no re-ranker "
                            "(start it with --rerank)" if reranker is None else "'rerank_top' with 'rerank': false")
    reranker = reranker if req.rerank else None
    kind = req.prefilter_kind if req.prefilter_kind != "auto" else ("head" if "head" in anns else "cosine")
    if req.prefilter is not None and kind not in anns:
        raise HTTPException(status_code=409, detail=f"the store has no {kind} ANN index; search "
                            "without 'prefilter' or build one (`dsembed index ann`)")
    try:
        resolve_label(model.task, req.label)
    except ConfigError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    texts = [req.query] if req.query is not None else list(req.queries or [])
    start = time.perf_counter()
    u = encoder.encode(texts)
    head_k = req.top_k if reranker is None else depth(req.top_k, req.rerank_top or rerank_top)
    try:
        results = rank(model, u, store, head_k, prefilter=req.prefilter, nprobe=req.nprobe,
                       precision=req.precision, label=req.label, device=model.device,  # scan where the model is
                       ann=anns.get(kind) if req.prefilter is not None else None)
        if reranker is not None:  # the texts, not ``u``: the cross-encoder reads the query itself
            results = rerank_hits(reranker, texts, results, req.top_k, label=resolve_label(model.task, req.label))
    except CorruptFileError as exc:  # no ranking rather than a wrong one
        raise HTTPException(status_code=503, detail=str(exc)) from None
    except StoreError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    except ConfigError as exc:  # the re-ranker gave no usable score: no ranking rather than a wrong one
        raise HTTPException(status_code=503, detail=str(exc)) from None
    elapsed = time.perf_counter() - start
    payload = [{"query": q, "hits": [h.to_dict() for h in hits]} for q, hits in zip(texts, results, strict=True)]
    out: dict[str, Any] = {"seconds": elapsed, "count": store.count}
    if req.query is not None:
        out.update(payload[0])
    else:
        out["results"] = payload
    return out


def create_app(model: "DSEModel", store: "CandidateStore | str | Path | None" = None,
               limits: "ServeLimits | None" = None, verify_store: bool = True, reranker: Any = None,
               rerank_top: int | None = None) -> "FastAPI":
    """The FastAPI app: ``GET /health``, ``POST /encode``, ``POST /score``, ``POST /search``.

    ``verify_store``: read the whole store once against its checksums before serving (seconds per million
    rows); off, only the cheap checks of opening it run. ``reranker``: a cross-encoder (``dsembed.load_teacher``)
    that re-ranks each /search's head top ``rerank_top`` (default 50; a request may ask for another, up to
    ``limits.max_rerank_top``, or send ``"rerank": false``).
    """
    from fastapi import FastAPI, HTTPException
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from .retrieval import PREFILTER_KINDS, has_ann, load_ann
    from .retrieval.rerank import serving_reranker

    limits = limits or ServeLimits()
    encoder = Encoder(model, limits.encode_batch)
    locked, top = serving_reranker(reranker, model.task, rerank_top, limits.max_rerank_top, encoder.lock,
                                   limits.rerank_batch)
    rerank_info = None if locked is None else {"teacher": str(getattr(reranker, "path", "")), "rerank_top": top}
    opened = _open_for_serving(model, store, verify_store) if store is not None else None
    anns = {} if opened is None else {k: load_ann(opened, k) for k in PREFILTER_KINDS if has_ann(opened, k)}
    EncodeRequest, ScoreRequest, SearchRequest = _request_models(limits)  # noqa: N806 - classes
    model.eval()
    health_body = {"status": "ok", "task": model.task.name, "kind": model.task.kind, "dim": model.embedding_dim,
                   "store": None if opened is None else {"count": opened.count, "ann": sorted(anns)},
                   "rerank": rerank_info,
                   "limits": dict(limits.__dict__)}

    app = FastAPI(title="dsembed", version="1", summary="Distilled sentence embeddings: encode, score, search")
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)

    @app.get("/health")
    async def health() -> dict[str, Any]:  # async: answered on the event loop, never behind the encoder
        return health_body

    @app.post("/encode", response_class=JSONResponse)
    def encode_endpoint(req: EncodeRequest) -> JSONResponse:
        emb = encoder.encode(req.sentences)
        if req.normalize:
            emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return JSONResponse({"embeddings": emb.tolist(), "dim": int(emb.shape[1])})  # rendered in this thread

    @app.post("/score", response_class=JSONResponse)
    def score_endpoint(req: ScoreRequest) -> JSONResponse:
        values = encoder.score([tuple(p) for p in req.pairs], raw=req.raw)
        return JSONResponse({"scores": np.asarray(values, dtype=np.float64).tolist(), "kind": model.task.kind})

    @app.post("/search", response_class=JSONResponse)
    def search_endpoint(req: SearchRequest) -> JSONResponse:
        if opened is None:
            raise HTTPException(status_code=409, detail="this server has no candidate store (start it with --store)")
        return JSONResponse(_search(req, model, opened, anns, encoder, locked, rerank_top))

    return app


def serve(model: "DSEModel | str | Path", store: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000,
          limits: ServeLimits | None = None, log_level: str = "info", verify_store: bool = True,
          threads: int = 0, reranker: Any = None, rerank_top: int | None = None, device: str | None = None) -> None:
    """Serve a student (a loaded one, or its folder, loaded on ``device``) and optionally a store until interrupted.

    ``threads``: torch's intra-op threads (0: torch's default, one per core). Fewer leave a core to the
    event loop and the request threads; on a small machine that keeps /health and small requests quick.
    """
    import torch
    import uvicorn

    from .student.model import DSEModel

    if threads < 0:
        raise ConfigError(f"threads must be >= 0, got {threads}")
    if threads:
        torch.set_num_threads(threads)

    if not isinstance(model, DSEModel):
        model = DSEModel.load(model, device=device)
    app = create_app(model, store, limits, verify_store=verify_store, reranker=reranker, rerank_top=rerank_top)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
