"""Compare the teacher routes on each task's dev set and record it in results/teachers/routes.json.

Routes: the MiniLM cross-encoder (plain recipe, trained on this CPU; from its full-run record),
single all-mpnet-base-v2 cross-encoders (plain recipe, one per seed, trained on a GPU; from their
logits bundles) and the ensemble of those seeds (mean logits). Every metric is recomputed here
from stored logits or read from the record that measured it; nothing is typed in.

    python benchmarks/teacher_routes.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from dsembed.artifacts import RUN_RECORD
from dsembed.data import load_glue
from dsembed.evaluation import compute_metrics
from dsembed.tasks import get_task
from dsembed.teacher import LogitsBundle, load_logits_bundles
from dsembed.utils import atomic_write_json, environment_record

ROOT = Path(__file__).resolve().parents[1]
TEACHERS = ROOT / "results" / "teachers"


def _median_margin(task, logits) -> float | None:  # noqa: ANN001
    """Median |logit[1] - logit[0]| of a binary teacher (how saturated its targets are)."""
    if task.kind != "binary":
        return None
    return float(np.median(np.abs(task.teacher_to_student_logits(logits))))


def routes_for(task_name: str) -> list[dict]:
    task = get_task(task_name)
    train, dev = load_glue(task, "train"), load_glue(task, "dev")
    routes: list[dict] = []
    minilm = ROOT / "results" / "full_minilm_teacher" / task_name / RUN_RECORD
    if minilm.is_file():
        rec = json.loads(minilm.read_text())
        routes.append({"route": "all-MiniLM-L6-v2 cross-encoder, plain recipe", "members": 1,
                       "metrics": rec["results"]["teacher"], "device": rec["environment"]["cuda"] or "CPU",
                       "train_seconds": rec["stage_seconds"].get("teacher_train"),
                       "source": minilm.relative_to(ROOT).as_posix()})
    folders = sorted(TEACHERS.glob(f"{task_name}-all-mpnet-base-v2-s*"))
    for folder in folders:
        bundle = LogitsBundle.load(folder)
        bundle.check_matches(train, dev, source=str(folder))
        info = bundle.info
        routes.append({"route": f"all-mpnet-base-v2 cross-encoder, plain recipe, seed {info['seed']}", "members": 1,
                       "metrics": compute_metrics(task, bundle.dev.logits, dev.labels, teacher=True),
                       "device": info["environment"]["cuda"] or "CPU",
                       "train_seconds": info["teacher_train_wall_seconds"],
                       "source": folder.relative_to(ROOT).as_posix()})
    if len(folders) > 1:
        ensemble = load_logits_bundles(",".join(str(f) for f in folders))
        ensemble.check_matches(train, dev)
        members = ensemble.info["members"]
        routes.append({"route": f"ensemble of the {len(folders)} all-mpnet-base-v2 cross-encoders (mean logits)",
                       "members": len(folders),
                       "metrics": compute_metrics(task, ensemble.dev.logits, dev.labels, teacher=True),
                       # how much the distillation target says beyond the labels on the student's training pairs
                       "train_metrics": compute_metrics(task, ensemble.train.logits, train.labels, teacher=True),
                       "train_median_abs_margin": _median_margin(task, ensemble.train.logits),
                       "device": members[0]["environment"]["cuda"],
                       "train_seconds": sum(m["teacher_train_wall_seconds"] for m in members),
                       "source": ",".join(f.relative_to(ROOT).as_posix() for f in folders)})
    main = task.main_metric
    best = max(routes, key=lambda r: r["metrics"][main]) if routes else None
    for route in routes:
        route["best"] = route is best
    return routes


def main() -> None:
    tasks = sys.argv[1:] or ["mrpc", "stsb", "rte"]
    record = {"tasks": {t: {"main_metric": get_task(t).main_metric, "routes": routes_for(t)} for t in tasks},
              "environment": environment_record(), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_json(TEACHERS / "routes.json", record)
    for t, entry in record["tasks"].items():
        for r in entry["routes"]:
            print(f"{t:5s} {r['metrics'][entry['main_metric']]:6.2f} {'*' if r['best'] else ' '} {r['route']}")


if __name__ == "__main__":
    main()
