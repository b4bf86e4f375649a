#!/usr/bin/env python
"""Re-record a finished pipeline run with today's evaluation code, reusing its trained models.

Records made before a metric or field existed (ROC-AUC, dev curves, fidelity) show "–" in
RESULTS.md. This re-runs the pipeline with the exact config stored in the record: every finished
stage is reused (the run-config guard refuses anything that does not match), only evaluation runs
again, and the new record replaces the old one in the run folder and in the results folder given.

    python benchmarks/rerecord.py results/sweeps/mrpc-official-lr   (reads its record.json's run folder)
    python benchmarks/rerecord.py results/sweeps/stsb-official-lr --run-dir ~/.cache/dsembed/runs/full-v2/stsb
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from dsembed.artifacts import MODEL_DIR, RUN_PLOT, RUN_RECORD, TEACHER_INFO, TEACHER_SUBDIR, TRAINING_RECORD
from dsembed.pipeline import PipelineConfig, run_pipeline

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dirs", type=Path, nargs="+", help="folders under results/ holding a record.json")
    parser.add_argument("--run-dir", type=Path, help="the run folder, where it was moved since (one results dir)")
    args = parser.parse_args()
    if args.run_dir and len(args.results_dirs) != 1:
        parser.error("--run-dir goes with exactly one results folder")
    for folder in args.results_dirs:
        old = json.loads((folder / RUN_RECORD).read_text())
        # the run folder from the record (or where it was moved), not from the config object: records outlive
        # PipelineConfig's shape
        run_dir = args.run_dir.expanduser().absolute() if args.run_dir else Path(old["config"]["output_dir"])
        moved = {"output_dir": str(run_dir)} if args.run_dir else {}
        cfg = PipelineConfig.from_record(old["config"], show_progress_bar=False, **moved)
        if not (run_dir / RUN_RECORD).is_file():
            raise SystemExit(f"{folder}: its run folder {run_dir} is not on this machine")
        # re-evaluate only: a missing model would be trained again (hours), so refuse instead
        needed = [run_dir / name / TRAINING_RECORD for name in old["stages"] if name.endswith("_student")]
        if old["stages"].get("teacher", {}).get("source") not in ("logits bundle", "given"):  # trained in the run
            needed.append(run_dir / TEACHER_SUBDIR / MODEL_DIR / TEACHER_INFO)
        missing = [str(p) for p in needed if not p.is_file()]
        if missing:
            raise SystemExit(f"{folder}: finished models missing, nothing re-recorded: {', '.join(missing)}")
        new = run_pipeline(cfg)
        shutil.copy2(run_dir / RUN_RECORD, folder / RUN_RECORD)
        if (run_dir / RUN_PLOT).is_file():
            shutil.copy2(run_dir / RUN_PLOT, folder / RUN_PLOT)
        main = new["main_metric"]
        for name, metrics in new["results"].items():
            before = old["results"].get(name, {}).get(main)
            print(f"{folder.name} {name}: {main} {before} -> {metrics[main]}")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_results.py")], check=True)


if __name__ == "__main__":
    main()
