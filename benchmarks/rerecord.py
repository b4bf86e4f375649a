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
from dsembed.config import PipelineConfig
from dsembed.pipeline import run_pipeline
from dsembed.utils import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dirs", type=Path, nargs="+", help="folders under results/ holding a record.json")
    parser.add_argument("--run-dir", type=Path, help="the run folder, where it was moved since (one results dir)")
    parser.add_argument("--check-identical", action="store_true",
                        help="compare every metric and fidelity value with the old record, write "
                             "rerecord_check.json beside it, and exit 1 if any differs (a refactor must not move them)")
    args = parser.parse_args()
    if args.run_dir and len(args.results_dirs) != 1:
        parser.error("--run-dir goes with exactly one results folder")
    failed = False
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
        if args.check_identical and not _identical(folder, old, new):
            failed = True
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_results.py")], check=True)

    if failed:
        raise SystemExit("re-recorded values differ from the old record (see rerecord_check.json)")


def _identical(folder: Path, old: dict, new: dict) -> bool:
    """Every metric and fidelity value of the old record against the new one, exactly; written beside the record."""
    rows = []
    for section in ("results", "teacher_fidelity_dev", "relative_degradation_pct"):
        for name, values in old.get(section, {}).items():
            items = values.items() if isinstance(values, dict) else [("value", values)]
            for key, before in items:
                after = new.get(section, {}).get(name)
                after = after.get(key) if isinstance(after, dict) else after
                rows.append({"section": section, "model": name, "metric": key, "old": before, "new": after,
                             "identical": before == after})
    same = all(row["identical"] for row in rows)
    atomic_write_json(folder / "rerecord_check.json", {"identical": same, "values": rows,
                                                       "old_finished_at": old.get("finished_at"),
                                                       "old_dsembed_command": old["environment"].get("command"),
                                                       "new_finished_at": new.get("finished_at")})
    print(f"{folder.name}: {sum(r['identical'] for r in rows)} of {len(rows)} values identical")
    return same


if __name__ == "__main__":
    main()
