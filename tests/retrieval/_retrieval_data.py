"""Shared inputs of the retrieval tests: the sentences, the reference store, the brute-force scores.

Each test module defines its own module-scoped fixtures from these (a conftest.py here would take
``conftest``'s place in ``sys.modules`` and break the root tests' ``from conftest import ...``).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from _tiny import sentences
from dsembed.retrieval import CandidateStore, build_store

CANDIDATES = sentences(150, seed=1)
QUERIES = ["the dog runs", "a woman reads a book", "the old city river"]


def reference_store(model, workdir: Path) -> CandidateStore:  # noqa: ANN001
    """The store the tests share: every candidate, several chunks, all three copies and a cosine index."""
    return build_store(model, CANDIDATES, workdir / "store", chunk_size=40, show_progress_bar=False,
                       copies=("bfloat16", "float16", "int8"), ann="Flat")


def brute_force(model, query: str, texts: list[str]) -> np.ndarray:  # noqa: ANN001
    """Scores of the plain head on every (query, candidate) pair."""
    return np.asarray(model.predict([(query, t) for t in texts]))


def free_port() -> int:
    """A local TCP port nobody listens on (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(app) -> Iterator[str]:  # noqa: ANN001
    """A real uvicorn server for ``app`` in a thread on a free local port; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
