#!/usr/bin/env python
"""The kill -9 suite with more random kills: how often a SIGKILLed command resumes to the identical result.

Runs ``tests/reliability/test_kill9.py`` (the same faults CI injects: during checkpoint saves, final
saves, chunk commits) plus ``--rounds`` extra kills at seeded random moments per command, and writes
``results/reliability/kill9.json`` with every kill, the machine and the wall time.

    python benchmarks/kill_soak.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from dsembed.utils import atomic_write_json, environment_record

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="extra random-moment kills per command")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "reliability" / "kill9.json")
    args = parser.parse_args()
    raw = args.out.with_suffix(".raw.json")
    env = {**os.environ, "DSEMBED_KILL_ROUNDS": str(args.rounds), "DSEMBED_RELIABILITY_RECORD": str(raw)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "reliability" / "test_kill9.py")], env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    kills = json.loads(raw.read_text())["kills"]
    raw.unlink()
    record = {"kills": kills, "extra_random_rounds": args.rounds, "suite_passed": done.returncode == 0,
              "wall_seconds": round(seconds, 1), "environment": environment_record(),
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_json(args.out, record)
    print(f"{len(kills)} kills, {sum(k['resumed_identical'] for k in kills)} resumed identical -> {args.out}")
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
