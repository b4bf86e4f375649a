"""A ranking-evaluation record as markdown for RESULTS.md: one table per set, every number from the record."""

from __future__ import annotations

import math
import re
import statistics
from typing import Any

COLUMNS = ("mrr@10", "ndcg@10", "recall@1", "recall@10", "recall@100")


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{1e3 * seconds:.1f}"


def _row(name: str, m: dict[str, Any]) -> str:
    sample = [_num(m["metrics_sample"][c]) for c in COLUMNS]
    everyone = _num((m["metrics_all_queries"] or {}).get("mrr@10"))
    return (f"| {name} | {' | '.join(sample)} | {everyone} | {m['teacher_calls_per_query']:.1f} | "
            f"{_ms(m['median_seconds_per_query_sample'])} |")


_SEEDED = re.compile(r"^(?P<student>.+)-s(?P<seed>\d+)-(?P<method>head|head-ann|cosine)$")


def seed_means(record: dict[str, Any], metric: str = "mrr@10") -> list[str]:
    """Students named ``NAME-sSEED``: the mean ± sample std over seeds of each method, on all queries."""
    groups: dict[tuple[str, str], list[float]] = {}
    for name, m in record["methods"].items():
        match = _SEEDED.match(name)
        value = (m.get("metrics_all_queries") or {}).get(metric)
        if match and value is not None:
            groups.setdefault((match["student"], match["method"]), []).append(float(value))
    if not groups:
        return []
    lines = ["", f"Seed means of the students (every query; {metric.upper()}):", "",
             f"| student | method | seeds | {metric.upper()} mean ± std |", "|---|---|---:|---:|"]
    for (student, method), values in sorted(groups.items()):
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        lines.append(f"| {student} | {method} | {len(values)} | {statistics.fmean(values):.3f} ± {std:.3f} |")
    return lines


def subset_means(record: dict[str, Any], metric: str = "mrr@10") -> list[str]:
    """Each query subset of the set: the metric of every method that ran on all queries (seeded students: means)."""
    sizes = record["set"].get("query_subsets") or {}
    lines: list[str] = []
    for subset, size in sizes.items():
        groups: dict[str, list[float]] = {}
        for name, m in record["methods"].items():
            value = (m.get("metrics_subsets") or {}).get(subset, {}).get(metric)
            if value is None:
                continue
            match = _SEEDED.match(name)
            key = f"{match['student']}-{match['method']}" if match else name
            groups.setdefault(key, []).append(float(value))
        if not groups:
            continue
        lines += ["", f"On the {size} of {record['set']['queries']} queries with {subset} ({metric.upper()}; "
                      "students: mean ± std over seeds):", "",
                  f"| method | seeds | {metric.upper()} |", "|---|---:|---:|"]
        for key, values in sorted(groups.items(), key=lambda kv: -statistics.fmean(kv[1])):
            std = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
            lines.append(f"| {key} | {len(values)} | {statistics.fmean(values):.3f}{std} |")
    return lines


def render_retrieval_markdown(record: dict[str, Any], source: str) -> str:
    """The set, its query sample and one row per method (standalone first, then cascades by first stage and K)."""
    s, sample = record["set"], record["query_sample"]
    env = record.get("environment", {})
    teacher = record.get("teacher") or {}
    methods = record["methods"]
    order = sorted(methods, key=lambda n: (methods[n]["family"] == "cascade", methods[n]["first_stage"] or "",
                                           methods[n]["k"] or 0))
    on = "all" if sample["all_queries"] else f"a seeded sample (seed {sample['seed']}) of {sample['size']}"
    lines = [f"### {s['name']}: {s['queries']} queries against {s['candidates']} candidates", "",
             f"Source `{s['source']}`; {s['gain_rule']}; relevant at gain ≥ {s['relevant_min']:g}; "
             f"{s['self_exclusion']}. Metrics on {on} of the {sample['of']} queries (the teacher's and the "
             f"cascades' queries); the MRR@10 (all) column is over every query, for methods that ran on all.",
             "", "| method | MRR@10 | nDCG@10 | R@1 | R@10 | R@100 | MRR@10 (all) | teacher calls / query | "
                 "median ms / query |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [_row(name, methods[name]) for name in order]
    spp = teacher.get("seconds_per_pair")
    lines += ["", f"Time per query includes the teacher (its measured {_ms(spp)} ms per pair × calls) for the "
                  f"teacher and the cascades. {env.get('cpu_count', '?')} CPUs, torch threads "
                  f"{env.get('torch_threads', '?')}, load {record.get('load_average')}; wall "
                  f"{record.get('wall_seconds', 0):.0f} s. Record: `{source}`."]
    lines += seed_means(record)
    lines += subset_means(record)
    return "\n".join(lines)
