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
            f"command `{env.get('command') or record.get('command', '?')}`; "
            f"finished {record.get('finished_at') or record.get('created', '?')}")


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
    lat, rss, checks = record.get("latency_ms", {}), record.get("server_rss_mb", {}), record.get("checks", {})
    codes = ", ".join(f"{code}: {n}" for code, n in sorted(record.get("status_counts", {}).items()))
    model = record.get("model", {})

    def pair(name: str) -> str:
        row = lat.get(name, {})
        return f"{row.get('p50_ms', float('nan')):.1f} / {row.get('p99_ms', float('nan')):.1f}"

    lines = [f"### The HTTP service under load (`{source}`)", "",
             f"{record.get('clients')} concurrent clients without think time for {record['settings'].get('seconds')} s "
             f"(mixed /search, /score incl. {record['settings'].get('big_pairs')}-pair requests, /encode, invalid "
             f"texts, /health), {record.get('store', {}).get('rows')}-row store, student "
             f"{model.get('kind', '?')} on {model.get('base_model', '?')}; {_machine(record)}.", "",
             "| requests | status codes | /search p50 / p99 (ms) | /health from a probe p50 / p99 (ms) | "
             "/health inside the load p50 / p99 (ms) | server RSS before → after (MB) |",
             "|---:|---|---:|---:|---:|---:|",
             f"| {record.get('requests')} | {codes} | {pair('search')} | {pair('health')} | {pair('health_in_mix')} | "
             f"{rss.get('before', '?')} → {rss.get('after', '?')} |", "",
             f"Checks: /health p99 under 100 ms while the encoder is busy: "
             f"{'met' if checks.get('health_probe_p99_under_100ms') else 'MISSED'}; no 5xx or transport errors: "
             f"{'met' if checks.get('no_5xx_or_transport_errors') else 'MISSED'}; every invalid text answered 422: "
             f"{'met' if checks.get('every_invalid_text_422') else 'MISSED'}. /search latency is queueing behind one "
             "encoder on 2 cores; RSS grows with the big requests in flight (a 60 s run cannot rule out a leak).", ""]
    return lines


def export_table(record: dict[str, Any], source: str) -> list[str]:
    """Torch fp32 vs ONNX fp32 vs ONNX int8: throughput side by side, and the dev metric under each backend."""
    names = ("torch_fp32", "onnx_fp32", "onnx_int8", "onnx_int8_per_tensor")
    lines = [f"## Deployment backends: torch vs ONNX vs int8 (`{source}`)", "",
             f"One run, backends timed in turns on the same {record.get('speed_setup', {}).get('sentences', 1000)} "
             f"sentences and batch; medians of the repeats. {_machine(record)}.", *[f"Note: {n}" for n in
                                                                                     record.get("notes", [])], "",
             "| threads | " + " | ".join(f"{n} sent/s (× torch)" for n in names) + " | contended |",
             "|---:|" + "---:|" * (len(names) + 1)]
    for threads, block in sorted(record["speed"].items()):
        cells = []
        for name in names:
            row = block["backends"].get(name)
            cells.append("–" if row is None else
                         f"{row['sentences_per_s_median']:.1f} ({row['speedup_over_torch_fp32']:.2f}×)")
        lines.append(f"| {threads} | " + " | ".join(cells) + f" | {'yes' if block.get('contended') else 'no'} |")
    lines += ["", "| student | metric | " + " | ".join(names) + " | int8 max abs logit diff |",
              "|---|---|" + "---:|" * (len(names) + 1)]
    for task, block in sorted(record["quality"].items()):
        backends = block["backends"]
        metric = next(iter(k for k in ("f1", "spearman", "accuracy") if k in backends["torch_fp32"]["dev_metrics"]))
        cells = [f"{backends[n]['dev_metrics'][metric]:.2f}" if n in backends else "–" for n in names]
        diff = backends.get("onnx_int8", {}).get("vs_torch", {}).get("max_abs_logit_diff")
        lines.append(f"| {task} | dev {metric} | " + " | ".join(cells) + f" | {_fmt_small(diff)} |")
    lines += ["", *[f"- [{'met' if t['met'] else 'MISSED'}] {t['target']}: measured {t['measured']:.4g}"
                    + (f" ({t['note']})" if t.get("note") else "") for t in record.get("targets", [])], ""]
    return lines


def _fmt_small(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"
