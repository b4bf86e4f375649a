#!/usr/bin/env bash
# One student setting on one task, full size, with the GPU-trained mpnet ensemble teacher:
#   benchmarks/student_sweep.sh TASK NAME [extra `dsembed pipeline` options...]
# e.g. benchmarks/student_sweep.sh mrpc epochs-8 --student-epochs 8
# Trains the DSE and the label-only student with the same settings (a fair pair), records to
# results/sweeps/TASK-NAME/record.json and regenerates RESULTS.md. Resumable like every pipeline run.
set -euo pipefail
cd "$(dirname "$0")/.."
task=$1; name=$2; shift 2
RUNS=${DSEMBED_RUNS:-$HOME/.cache/dsembed/runs}
bundles=$(ls -d results/teachers/"$task"-all-mpnet-base-v2-s* | paste -sd, -)
out="$RUNS/sweep/$task-$name"
dsembed pipeline "$task" --profile full --output-dir "$out" --teacher-logits "$bundles" --no-progress "$@"
mkdir -p "results/sweeps/$task-$name"
cp "$out/record.json" "$out/student_vs_teacher.png" "results/sweeps/$task-$name/"
python scripts/make_results.py
