"""Which mining strategy pays: the DSE + mined pairs student per strategy and per budget, seed means.

Every variant is the base run (a multi-seed ``dsembed pipeline --mined`` job, e.g. the README main
job) with the mined pairs restricted to some strategies and to a budget per labelled pair
(``PipelineConfig.mined_strategies`` / ``mined_budget``); the budget keeps the pairs with the smallest
pair hashes, so the pairs of a smaller budget are a subset of a larger one's. The label-only
students of the base run are linked into every variant's seed folders and reused (the reuse is
checked by fingerprint), so each variant trains only its DSE + mined students, at the same
optimiser steps as the base run. Checkpoints are selected on dev; test is only reported.

    python benchmarks/augment_strategies.py --base-run /work/runs/main_job/mrpc --work /work/runs/strategies \\
        --variant all@0.45 --variant random@0.45 --variant bm25@0.45 --variant embedding@0.45 \\
        --variant swap@0.45 --jobs 2 -o results/augment/mrpc-quick-strategies.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from dsembed.artifacts import RUN_RECORD, SEED_DIR
from dsembed.config import PipelineConfig
from dsembed.errors import DsembedError
from dsembed.pipeline import run_seeds
from dsembed.utils import atomic_write_json, environment_record

REUSED = "label_only_student"


def parse_variant(text: str) -> tuple[str, tuple[str, ...] | None, float | None]:
    """``bm25@0.45`` -> ("bm25@0.45", ("bm25",), 0.45); ``all`` -> every strategy, no budget."""
    names, _, budget = text.partition("@")
    strategies = None if names in ("", "all") else tuple(n for n in names.split("+") if n)
    return text, strategies, float(budget) if budget else None


def variant_row(name: str, summary: dict[str, Any], strategies: tuple[str, ...] | None,
                budget: float | None) -> dict[str, Any]:
    """What the table needs from one variant's seed-summary record."""
    main = summary["main_metric"]
    row = "dse_mined_student"
    used = [r["stages"]["mined"]["used"] for r in summary["per_seed"]]
    return {
        "variant": name, "strategies": list(strategies) if strategies else "all", "budget_per_labelled_pair": budget,
        "mined_pairs_used": used,
        "mined_by_strategy": [r["stages"]["mined"]["strategies"] for r in summary["per_seed"]],
        "dev": summary["results"][row], "test": (summary.get("test_results") or {}).get(row),
        "dev_minus_label_only": summary["minus_label_only"].get(row),
        "test_minus_label_only": (summary.get("test_minus_label_only") or {}).get(row),
        "fidelity_dev": summary["teacher_fidelity_dev"].get(row), "main_metric": main,
        "optimizer_steps": [r["stages"][row]["training"]["optimizer_steps"] for r in summary["per_seed"]],
        "wall_seconds": summary["wall_seconds"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base-run", required=True, help="folder of a multi-seed pipeline job with --mined")
    ap.add_argument("--work", required=True, help="where the variants' run folders go")
    ap.add_argument("--variant", action="append", required=True,
                    help="STRATEGY[+STRATEGY...][@BUDGET] or all[@BUDGET] (budget: mined pairs per labelled pair)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    base_dir = Path(args.base_run)
    base = json.loads((base_dir / RUN_RECORD).read_text())
    if base.get("kind") != "seed_summary" or not base["config"].get("mined"):
        raise SystemExit(f"error: {base_dir / RUN_RECORD} is not a multi-seed record of a run with --mined")
    seeds = base["seeds"]
    cfg = PipelineConfig.from_record(base["config"])
    start = time.perf_counter()
    rows = [variant_row("base run (every strategy, whole bundle)", base, cfg.mined_strategies, cfg.mined_budget)]
    for text in args.variant:
        name, strategies, budget = parse_variant(text)
        out = Path(args.work) / name.replace("@", "-at-").replace("+", "-")
        for seed in seeds:  # reuse the base run's label-only students (distill checks their fingerprint)
            seed_dir = out / SEED_DIR.format(seed=seed)
            seed_dir.mkdir(parents=True, exist_ok=True)
            link, target = seed_dir / REUSED, (base_dir / SEED_DIR.format(seed=seed) / REUSED).resolve()
            if not link.exists():
                link.symlink_to(target, target_is_directory=True)
        variant = replace(cfg, output_dir=str(out), mined_strategies=strategies, mined_budget=budget,
                          plain_dse_baseline=False, augsbert_baseline=False, cosine_baseline=False, plot=False,
                          show_progress_bar=False)
        print(f"variant {name}: {out}", file=sys.stderr)
        try:
            summary = run_seeds(variant, seeds, jobs=args.jobs)
        except DsembedError as exc:
            raise SystemExit(f"error: variant {name}: {exc}") from None
        rows.append(variant_row(name, summary, strategies, budget))
    label_only = {"dev": base["results"]["label_only_student"],
                  "test": (base.get("test_results") or {}).get("label_only_student"),
                  "fidelity_dev": base["teacher_fidelity_dev"].get("label_only_student")}
    cosine = {"dev": base["results"].get("pretrained_cosine"),
              "test": (base.get("test_results") or {}).get("pretrained_cosine")}
    record = {"benchmark": "augmentation strategies and budgets (DSE + mined pairs student, seed means)",
              "command": " ".join(sys.argv), "base_run": str(base_dir),
              "base_command": base["environment"].get("command"),
              "task": base["task"], "main_metric": base["main_metric"], "seeds": seeds,
              "train_pairs": base["train_pairs"], "dev_pairs": base["dev_pairs"], "test_pairs": base.get("test_pairs"),
              "teacher": base["teacher"], "mined_bundle": base["config"]["mined"],
              "teacher_rows": {"dev": base["results"]["teacher"],
                               "test": (base.get("test_results") or {}).get("teacher")},
              "label_only": label_only, "pretrained_cosine": cosine, "variants": rows,
              "wall_seconds": time.perf_counter() - start, "environment": environment_record(),
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_json(Path(args.output), record)
    main_metric = base["main_metric"]
    for row in rows:
        diff = row["dev_minus_label_only"]
        print(f"{row['variant']:<45} pairs {row['mined_pairs_used']}  dev {main_metric} "
              f"{row['dev'][main_metric]['mean']:.2f} ± {row['dev'][main_metric]['std']:.2f}  "
              f"minus label-only {diff['mean']:+.2f}" if diff else row["variant"])


if __name__ == "__main__":
    main()
