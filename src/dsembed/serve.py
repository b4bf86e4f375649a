"""HTTP scoring service over a student (and optionally a candidate store): encode, score pairs, search.

``create_app`` builds the FastAPI app (tests use it with a real uvicorn server on 127.0.0.1);
``serve`` runs it with uvicorn. Handlers are plain ``def`` functions, so FastAPI runs them in its thread
pool and several requests are served at once; only the tokenizer/encoder call is serialised by a lock
(Hugging Face fast tokenizers are not safe to call from several threads at once), while the head scoring
of concurrent requests runs in parallel.
"""

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError, StoreError

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


def create_app(model: "DSEModel", store: "CandidateStore | str | Path | None" = None,
               limits: "ServeLimits | None" = None) -> "FastAPI":
    """The FastAPI app: ``GET /health``, ``POST /encode``, ``POST /score``, ``POST /search``."""
    # One function on purpose: the request models and endpoints close over ``limits``, the opened store, its
    # ANN indexes and the encoder lock; splitting them out would only pass that state around.
    from fastapi import FastAPI, HTTPException
    from pydantic import BaseModel, Field, field_validator

    from .retrieval import PREFILTER_KINDS, has_ann, load_ann, open_store, rank, resolve_label

    limits = limits or ServeLimits()
    opened = open_store(store, model) if store is not None else None
    if opened is not None:
        opened.require_complete()  # an unfinished build or add is not served
    anns = {} if opened is None else {k: load_ann(opened, k) for k in PREFILTER_KINDS if has_ann(opened, k)}
    encode_lock = threading.Lock()
    model.eval()

    def encode(texts: list[str]) -> np.ndarray:
        with encode_lock:
            return np.asarray(model.encode(texts, batch_size=32, show_progress_bar=False), dtype=np.float32)

    def check_text(value: str) -> str:
        if not value.strip():
            raise ValueError("empty sentence")
        if len(value) > limits.max_chars:
            raise ValueError(f"sentence longer than {limits.max_chars} characters")
        return value

    class EncodeRequest(BaseModel):
        sentences: list[str] = Field(min_length=1, max_length=limits.max_sentences)
        normalize: bool = False

        @field_validator("sentences")
        @classmethod
        def _texts(cls, value: list[str]) -> list[str]:
            return [check_text(x) for x in value]

    class ScoreRequest(BaseModel):
        pairs: list[tuple[str, str]] = Field(min_length=1, max_length=limits.max_pairs)
        raw: bool = False

        @field_validator("pairs")
        @classmethod
        def _texts(cls, value: list[tuple[str, str]]) -> list[tuple[str, str]]:
            return [(check_text(a), check_text(b)) for a, b in value]

    class SearchRequest(BaseModel):
        query: str | None = None
        queries: list[str] | None = Field(default=None, min_length=1, max_length=limits.max_queries)
        top_k: int = Field(default=10, ge=1, le=limits.max_top_k)
        prefilter: int | None = Field(default=None, ge=1, le=limits.max_prefilter)
        prefilter_kind: str = Field(default="auto", pattern="^(auto|cosine|head)$")
        nprobe: int | None = Field(default=None, ge=1, le=65536)
        precision: str = Field(default="fp32", pattern="^(fp32|bf16)$")
        label: int | str | None = None

        @field_validator("query")
        @classmethod
        def _query(cls, value: str | None) -> str | None:
            return None if value is None else check_text(value)

        @field_validator("queries")
        @classmethod
        def _queries(cls, value: list[str] | None) -> list[str] | None:
            return None if value is None else [check_text(x) for x in value]

    app = FastAPI(title="dsembed", version="1", summary="Distilled sentence embeddings: encode, score, search")

    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "task": model.task.name, "kind": model.task.kind, "dim": model.embedding_dim,
                "store": None if opened is None else {"count": opened.count, "ann": sorted(anns)},
                "limits": limits.__dict__}

    @app.post("/encode")
    def encode_endpoint(req: EncodeRequest) -> dict[str, Any]:
        emb = encode(req.sentences)
        if req.normalize:
            emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return {"embeddings": emb.tolist(), "dim": int(emb.shape[1])}

    @app.post("/score")
    def score_endpoint(req: ScoreRequest) -> dict[str, Any]:
        with encode_lock:  # predict encodes each distinct sentence once; the tokenizer is not thread-safe
            values = model.predict([tuple(p) for p in req.pairs], batch_size=32, apply_activation=not req.raw)
        return {"scores": np.asarray(values, dtype=np.float64).tolist(), "kind": model.task.kind}

    @app.post("/search")
    def search_endpoint(req: SearchRequest) -> dict[str, Any]:
        if opened is None:
            raise HTTPException(status_code=409, detail="this server has no candidate store (start it with --store)")
        if (req.query is None) == (req.queries is None):
            raise HTTPException(status_code=422, detail="give exactly one of 'query' or 'queries'")
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
        u = encode(texts)
        try:
            results = rank(model, u, opened, req.top_k, prefilter=req.prefilter, nprobe=req.nprobe,
                           precision=req.precision, label=req.label,
                           ann=anns.get(kind) if req.prefilter is not None else None)
        except StoreError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        elapsed = time.perf_counter() - start
        payload = [{"query": q, "hits": [h.to_dict() for h in hits]} for q, hits in zip(texts, results, strict=True)]
        out: dict[str, Any] = {"seconds": elapsed, "count": opened.count}
        if req.query is not None:
            out.update(payload[0])
        else:
            out["results"] = payload
        return out

    return app


def serve(model: "DSEModel | str | Path", store: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000,
          limits: ServeLimits | None = None, log_level: str = "info") -> None:
    """Serve a student (a loaded one, or its folder) and optionally a store with uvicorn until interrupted."""
    import uvicorn

    from .student.model import DSEModel

    if not isinstance(model, DSEModel):
        model = DSEModel.load(model)
    app = create_app(model, store, limits)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
