"""Load clients for the server tests, run as their own process (``python _load_clients.py URL SECONDS CLIENTS OUT``).

Kept out of the test process so that the latency the test measures there is the server's, not the wait of
its own probe thread for the GIL behind busy client threads; niced, because real clients do not share the
server's CPUs. Each client waits ``THINK`` seconds between requests. Imports neither torch nor dsembed.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter

import httpx
import numpy as np

WORDS = ("cat", "dog", "man", "woman", "child", "horse", "car", "train", "city", "river", "bread", "music")
THINK = 0.005
INVALID = ["\ud800", "a\udfffb", "nul \x00 inside", "", "   ", "x" * 2001, 7, None, ["nested"]]


def texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"{i} the " + " ".join(rng.choice(WORDS, size=int(rng.integers(2, 7)))) for i in range(n)]


def raw_json(payload: object) -> bytes:
    """JSON with \\u escapes, so that lone surrogates can be sent at all (they are not UTF-8 encodable)."""
    return json.dumps(payload, ensure_ascii=True).encode()


def invalid_requests() -> list[tuple[str, bytes]]:
    """Every invalid text in every text field of every endpoint."""
    out = []
    for bad in INVALID:
        out += [("/encode", raw_json({"sentences": ["fine", bad]})),
                ("/score", raw_json({"pairs": [["fine", bad]]})),
                ("/score", raw_json({"pairs": [[bad, "fine"]]})),
                ("/search", raw_json({"query": bad})),
                ("/search", raw_json({"queries": ["fine", bad]}))]
    return out


class Tally:
    """Thread-safe status counts and latencies per kind of request; ``wrong``: answers not as expected."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.status: Counter[int] = Counter()
        self.latency: dict[str, list[float]] = {}
        self.wrong: list[str] = []

    def timed(self, client: httpx.Client, kind: str, method: str, path: str, expected: int = 200,
              **kwargs: object) -> None:
        start = time.perf_counter()
        res = client.request(method, path, **kwargs)
        seconds = time.perf_counter() - start
        with self.lock:
            self.status[res.status_code] += 1
            self.latency.setdefault(kind, []).append(seconds)
            if res.status_code != expected:
                self.wrong.append(f"{kind} {path}: {res.status_code}, expected {expected}: {res.text[:200]}")

    def to_dict(self) -> dict[str, object]:
        return {"status": dict(self.status), "latency": self.latency, "wrong": self.wrong}


def worker(url: str, seed: int, stop: float, tally: Tally) -> None:
    """One client: /search, /encode, small /score, an invalid text or /health, at random, until ``stop``."""
    rng = np.random.default_rng(seed)
    mine = texts(64, seed=100 + seed)
    invalid = invalid_requests()
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=url, timeout=60) as client:
        while time.monotonic() < stop:
            pick = int(rng.integers(5))
            if pick == 0:
                tally.timed(client, "search", "POST", "/search", json={"query": mine[int(rng.integers(64))],
                                                                       "top_k": 5})
            elif pick == 1:
                tally.timed(client, "encode", "POST", "/encode", json={"sentences": mine[:4]})
            elif pick == 2:
                tally.timed(client, "score", "POST", "/score", json={"pairs": [mine[:2], mine[2:4]]})
            elif pick == 3:
                path, body = invalid[int(rng.integers(len(invalid)))]
                tally.timed(client, "invalid", "POST", path, 422, content=body, headers=headers)
            else:
                tally.timed(client, "health", "GET", "/health")
            time.sleep(THINK)


def main(url: str, seconds: float, clients: int, out: str) -> None:
    os.nice(10)
    tally = Tally()
    stop = time.monotonic() + seconds
    threads = [threading.Thread(target=worker, args=(url, i, stop, tally)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(out, "w") as handle:
        json.dump(tally.to_dict(), handle)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
