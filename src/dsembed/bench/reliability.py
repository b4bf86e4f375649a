"""RESULTS.md tables for the reliability records: kill -9 resumes, reader fuzzing, the service soak.

Each record is written by its own benchmark (``benchmarks/kill_soak.py``, ``benchmarks/fuzz_readers.py``,
``benchmarks/serve_soak.py``); these functions only turn them into Markdown.
"""

from __future__ import annotations

from collections import Counter
from typing import Any


def _machine(record: dict[str, Any]) -> str:
    env = record.get("environment", {})
    return (f"{env.get('platform', '?')}, {env.get('cpu_count', '?')} CPUs, torch {env.get('torch', '?')}; "
            f"command `{env.get('command') or record.get('command', '?')}`; finished {record.get('finished_at', '?')}")


def kill_table(record: dict[str, Any], source: str) -> list[str]:
    """Kills injected per command and moment, and how the re-run came out."""
    groups: dict[tuple[str, str], Counter[str]] = {}
    for kill in record["kills"]:
        moment = "at a random moment" if kill["moment"].startswith("at a random") else kill["moment"]
        counts = groups.setdefault((kill["command"], moment), Counter())
        counts["kills"] += int(kill["killed"])
        counts["identical"] += int(kill["killed"] and kill["resumed_identical"])
        counts["failed"] += int(kill["rerun_exit_code"] != 0 or not kill["resumed_identical"])
    lines = [f"### kill -9 during work, then the same command again (`{source}`)", "",
             "A real SIGKILL in a subprocess on the tiny model; the re-run must give exactly what an uninterrupted "
             f"run gives (weights, logits or store files compared byte for byte). {_machine(record)}; "
             f"{record.get('wall_seconds', '?')} s.", "",
             "| command | moment of the kill | kills | resumed identical | failed |", "|---|---|---:|---:|---:|"]
    lines += [f"| {command} | {moment} | {c['kills']} | {c['identical']} | {c['failed']} |"
              for (command, moment), c in groups.items()]
    return [*lines, ""]


def fuzz_table(record: dict[str, Any], source: str) -> list[str]:
    """Fuzz cases per reader: correct parses, one-line errors, and the two targets (0 tracebacks, 0 partial)."""
    rows = [*record["readers"], *([record["encode_cli"]] if "cases" in record.get("encode_cli", {}) else [])]
    lines = [f"### Reader fuzzing (`{source}`)", "",
             f"Property-based (hypothesis, seed {record['settings'].get('seed')}): random bytes, NUL, BOM, CRLF, "
             "lone surrogates, huge lines, non-finite numbers, wrong column counts. Every case must be a correct "
             f"parse or a one-line error naming file and line. {_machine(record)}; {record.get('wall_seconds')} s.",
             "", "| reader | format | task | cases | parsed | one-line errors | tracebacks | bad errors | "
             "invalid parses | partial outputs |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        partial = "–" if row.get("partial_outputs") is None else row["partial_outputs"]
        lines.append(f"| {row['reader']} | {row['format']} | {row.get('task') or '–'} | {row['cases']} | "
                     f"{row['parsed']} | {row['one_line_errors']} | {row['tracebacks']} | {row['bad_errors']} | "
                     f"{row['invalid_parses']} | {partial} |")
    totals = record["totals"]
    lines += ["", f"Total {totals['cases']} cases: {totals['tracebacks']} tracebacks (target 0), "
                  f"{totals['partial_outputs']} partial outputs (target 0): "
                  f"{'met' if record.get('passed') else 'MISSED'}.", ""]
    return lines


def serve_table(record: dict[str, Any], source: str) -> list[str]:
    """The service under concurrent load: status codes, latency of /search and /health, memory."""
    lat = record.get("latency_ms", {})
    health, search = lat.get("/health", {}), lat.get("/search", {})
    codes = ", ".join(f"{code}: {n}" for code, n in sorted(record.get("status_codes", {}).items()))
    p99 = health.get("p99")
    lines = [f"### The HTTP service under load (`{source}`)", "",
             f"{record.get('clients')} concurrent clients for {record.get('duration_seconds')} s on "
             f"{record.get('model', '?')}; {_machine(record)}.", "",
             "| requests | status codes | /search p50 / p99 (ms) | /health p50 / p99 (ms) | RSS before → after (MB) |",
             "|---:|---|---:|---:|---:|",
             f"| {record.get('requests')} | {codes} | {search.get('p50', float('nan')):.1f} / "
             f"{search.get('p99', float('nan')):.1f} | {health.get('p50', float('nan')):.1f} / "
             f"{p99 if p99 is None else f'{p99:.1f}'} | {record.get('rss_mb_before', '?')} → "
             f"{record.get('rss_mb_after', '?')} |", ""]
    if p99 is not None:
        lines += [f"/health p99 under 100 ms while the encoder is busy: {'met' if p99 < 100 else 'MISSED'}.", ""]
    return lines
