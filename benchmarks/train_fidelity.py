#!/usr/bin/env python
"""How well each student of a finished pipeline run fits the teacher on its own *training* pairs.

The dev-set fidelity in every pipeline record says how far a student is from the teacher on held-out
pairs. This diagnostic adds the training side: a DSE student that is also far from the teacher on the
pairs it was fitted to is underfitting the distillation target (more epochs or capacity would help);
one that fits them closely but not the dev pairs is overfitting it.

    python benchmarks/train_fidelity.py RUN_DIR  ->  results/diagnostics/<task>-<run name>-train-fidelity.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from dsembed.artifacts import MODEL_DIR, RUN_RECORD
from dsembed.evaluation import compute_metrics, evaluate_student, teacher_fidelity
from dsembed.pipeline import PipelineConfig, load_pipeline_data
from dsembed.student import DSEModel
from dsembed.tasks import get_task
from dsembed.teacher import load_logits_bundles
from dsembed.utils import atomic_write_json, environment_record

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a pipeline output folder made with --teacher-logits")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "diagnostics")
    args = parser.parse_args()
    run_dir = args.run_dir.absolute()
    record = json.loads((run_dir / RUN_RECORD).read_text())
    # which task and bundles come from the record, not from PipelineConfig's fields: records outlive its shape
    teacher_stage = record["stages"].get("teacher", {})
    if teacher_stage.get("source") != "logits bundle":
        raise SystemExit(f"{run_dir}: this diagnostic needs a run made from teacher-logits bundles")
    bundles = teacher_stage["path"]
    task = get_task(record["task"])
    train, dev = load_pipeline_data(PipelineConfig.from_record(record["config"]), task)
    bundle = load_logits_bundles(bundles).aligned_to(train, dev, source=bundles)
    out: dict = {"task": task.name, "main_metric": task.main_metric, "run_dir": str(run_dir),
                 "train_pairs": len(train), "students": {},
                 "dev_fidelity": record.get("teacher_fidelity_dev"),
                 "teacher_train_metrics": compute_metrics(task, bundle.train.logits, train.labels, teacher=True)}
    for name in ("dse_student", "label_only_student"):
        folder = run_dir / name / MODEL_DIR
        if not folder.is_dir():
            continue
        start = time.perf_counter()
        model = DSEModel.load(folder, device="cpu")
        metrics, logits = evaluate_student(model, task, train, show_progress_bar=False)
        out["students"][name] = {"train_fidelity": teacher_fidelity(task, logits, bundle.train.logits),
                                 "train_metrics": metrics, "seconds": time.perf_counter() - start}
    out["environment"] = environment_record()
    # full-v3/mrpc -> mrpc-full-v3; sweep/mrpc-default-seed-43 stays as it is
    run_name = f"{task.name}-{run_dir.parent.name}" if run_dir.name == task.name else run_dir.name
    path = args.out / f"{run_name}-train-fidelity.json"
    atomic_write_json(path, out)
    print(json.dumps({k: v["train_fidelity"] for k, v in out["students"].items()}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
