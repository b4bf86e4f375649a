"""The same run over several seeds: one folder per seed, and a record of the seed means with their spread.

One seed cannot tell a real difference between two students from noise (the label-only and DSE
students of one MRPC seed differ by less than two seeds of either), so the main job reports means.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ..artifacts import RUN_RECORD, SEED_DIR
from ..config import PipelineConfig
from ..errors import ConfigError
from ..utils import atomic_write_json, environment_record
from .report import ROW_LABELS, teacher_description
from .run import run_pipeline


def seed_config(cfg: PipelineConfig, seed: int) -> PipelineConfig:
    """``cfg`` for one seed, in its own sub-folder (teacher, students and data subsets all take the seed)."""
    return replace(cfg, output_dir=str(Path(cfg.output_dir) / SEED_DIR.format(seed=seed)),
                   teacher=replace(cfg.teacher, seed=seed), student=replace(cfg.student, seed=seed))


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (0 for one value), min, max and the values themselves."""
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values), "values": values}


def _summarise(per_seed: list[dict[str, Any]], key: str) -> dict[str, dict[str, dict[str, Any]]]:
    """{row: {metric: spread}} for ``results`` or ``test_results``, over the seeds that have the row.

    The cosine row has no seed and is computed once (``n`` = 1 in its spread).
    """
    tables = [record.get(key) or {} for record in per_seed]
    rows = list(dict.fromkeys(name for t in tables for name in t))
    out = {}
    for name in rows:
        having = [t[name] for t in tables if name in t]
        out[name] = {metric: spread([values[metric] for values in having])
                     for metric in having[0] if all(metric in values for values in having)}
    return out


def _differences(per_seed: list[dict[str, Any]], key: str, main: str) -> dict[str, dict[str, Any]]:
    """Each student's main metric minus the label-only student's, per seed (paired: same seed, same data)."""
    out: dict[str, dict[str, Any]] = {}
    tables = [record.get(key) or {} for record in per_seed]
    if not tables or not all("label_only_student" in t for t in tables):
        return out
    for name in tables[0]:
        if name in ("teacher", "label_only_student") or not all(name in t for t in tables):
            continue
        out[name] = spread([t[name][main] - t["label_only_student"][main] for t in tables])
    return out


def summarise_seeds(cfg: PipelineConfig, per_seed: list[dict[str, Any]], wall_seconds: float) -> dict[str, Any]:
    """The seed-summary record: means and spreads of every metric, paired differences to label-only."""
    first = per_seed[0]
    main = first["main_metric"]
    summary: dict[str, Any] = {
        "kind": "seed_summary", "task": first["task"], "main_metric": main, "profile": cfg.profile,
        "seeds": [record["config"]["student"]["seed"] for record in per_seed],
        "config": asdict(cfg), "train_pairs": first["train_pairs"], "dev_pairs": first["dev_pairs"],
        "teacher": teacher_description(first["stages"]["teacher"]),
        "results": _summarise(per_seed, "results"),
        "minus_label_only": _differences(per_seed, "results", main),
        "relative_degradation_pct": {
            name: spread([r["relative_degradation_pct"][name] for r in per_seed
                          if name in r["relative_degradation_pct"]])
            for name in dict.fromkeys(n for r in per_seed for n in r["relative_degradation_pct"])},
        "teacher_fidelity_dev": {
            name: {m: spread([r["teacher_fidelity_dev"][name][m] for r in per_seed]) for m in values}
            for name, values in first["teacher_fidelity_dev"].items()
            if all(name in r["teacher_fidelity_dev"] for r in per_seed)},
        "wall_seconds": wall_seconds,
        "environment": environment_record(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "per_seed": per_seed,
    }
    if all("test_results" in r for r in per_seed):
        summary.update({"test_pairs": first["test_pairs"], "test_results": _summarise(per_seed, "test_results"),
                        "test_minus_label_only": _differences(per_seed, "test_results", main)})
    return summary


def _train_one(cfg: PipelineConfig, only_student: str, threads: int) -> None:
    """One student of one run in a worker process (its own torch threads), for :func:`train_side_by_side`."""
    import torch

    torch.set_num_threads(threads)
    run_pipeline(replace(cfg, only_student=only_student))


def train_side_by_side(cfgs: Sequence[PipelineConfig], jobs: int) -> None:
    """Train (and evaluate) every student of the runs ``cfgs`` in a pool of ``jobs`` worker processes.

    Small-batch training uses two cores poorly from one process; two processes with one thread each
    get more done. One pool serves all runs, so its processes start once. The runs that follow reuse
    every student and read its kept evaluations.
    """
    import multiprocessing
    import os

    from .stages import STUDENT_NAMES, student_configs

    keys = {name: key for key, name in STUDENT_NAMES.items()}
    work = [(cfg, keys[name], max(1, (os.cpu_count() or jobs) // jobs))
            for cfg in cfgs for name, _ in student_configs(cfg, with_mined=bool(cfg.mined))]
    with multiprocessing.get_context("spawn").Pool(min(jobs, len(work))) as pool:
        pool.starmap(_train_one, work, chunksize=1)


def run_seeds(cfg: PipelineConfig, seeds: Sequence[int], jobs: int = 1) -> dict[str, Any]:
    """Run (or resume) the pipeline once per seed and write the seed-summary record in ``cfg.output_dir``.

    The untouched encoder + cosine row has no seed: it is computed once, in the first seed's run (its
    threshold tuned on that seed's training pairs). ``jobs > 1`` trains the students in a pool of processes.
    """
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if len(seeds) < 2:
        raise ConfigError("seed means need at least two seeds (for one, run the pipeline with --seed)")
    if cfg.only_student is not None:
        raise ConfigError("only_student trains one student of one run; give it a single --seed, not --seeds")
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, not {jobs}")
    start = time.perf_counter()
    cfgs = [replace(seed_config(cfg, seed), cosine_baseline=cfg.cosine_baseline and i == 0)
            for i, seed in enumerate(seeds)]
    if jobs > 1:
        train_side_by_side(cfgs, jobs)
    per_seed = [run_pipeline(seed_cfg) for seed_cfg in cfgs]
    summary = summarise_seeds(cfg, per_seed, time.perf_counter() - start)
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(cfg.output_dir) / RUN_RECORD, summary)
    return summary


def _cell(values: dict[str, Any] | None) -> str:
    if values is None:
        return "-"
    return f"{values['mean']:.2f} (once)" if values["n"] == 1 else f"{values['mean']:.2f} ± {values['std']:.2f}"


def format_seed_table(summary: dict[str, Any]) -> str:
    """The dev table of seed means ± sample standard deviation, then the paired differences and test means."""
    main, seeds = summary["main_metric"], summary["seeds"]
    metrics = sorted({m for r in summary["results"].values() for m in r})
    rows = [["model", *metrics, f"rel. degr. {main} %"]]
    for name, values in summary["results"].items():
        deg = summary["relative_degradation_pct"].get(name)
        cells = [_cell(values.get(m)) for m in metrics]
        rows.append([ROW_LABELS.get(name, name), *cells, "-" if deg is None else f"{deg['mean']:+.2f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    head = (f"{summary['task']} dev ({summary['dev_pairs']} pairs), trained on {summary['train_pairs']} labelled "
            f"pairs, profile={summary['profile']}; mean ± sample std over seeds {', '.join(map(str, seeds))}")
    out = [head, f"Teacher: {summary['teacher']}", *lines]
    for key, split in (("minus_label_only", "dev"), ("test_minus_label_only", "test")):
        for name, diff in summary.get(key, {}).items():
            per = ", ".join(f"{v:+.2f}" for v in diff["values"])
            out.append(f"{split} {main}, {ROW_LABELS.get(name, name)} minus label-only: {diff['mean']:+.2f} "
                       f"(per seed {per}; better on {sum(v > 0 for v in diff['values'])} of {diff['n']})")
    if summary.get("test_results"):
        cells = ", ".join(f"{ROW_LABELS.get(n, n)} {_cell(v[main])}" for n, v in summary["test_results"].items()
                          if main in v)
        out.append(f"test ({summary['test_pairs']} pairs) {main}: {cells}")
    return "\n".join(out)
