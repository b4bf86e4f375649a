#!/usr/bin/env bash
# Full-size DSE runs (all training pairs, default hyper-parameters) for the tasks given (default:
# mrpc stsb rte). Each stage resumes from its own checkpoints, so re-running continues an
# interrupted run. Records land in results/full/<task>/ and RESULTS.md is regenerated.
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=("${@:-mrpc stsb rte}")
# Run folders live outside the work tree so a later session on this machine can resume them.
RUNS=${DSEMBED_RUNS:-$HOME/.cache/dsembed/runs}
for task in ${tasks[@]}; do
  dsembed pipeline "$task" --profile full --output-dir "$RUNS/full/$task" --no-progress
  mkdir -p "results/full/$task"
  cp "$RUNS/full/$task/record.json" "results/full/$task/record.json"
  cp "$RUNS/full/$task/student_vs_teacher.png" "results/full/$task/student_vs_teacher.png"
  python scripts/make_results.py
done
