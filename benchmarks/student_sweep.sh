#!/usr/bin/env bash
# One student setting on one task, full size, with the GPU-trained mpnet ensemble teacher:
#   benchmarks/student_sweep.sh TASK NAME [extra `dsembed pipeline` options...]
# e.g. benchmarks/student_sweep.sh mrpc epochs-8 --student-epochs 8
# Trains the DSE and the label-only student with the same settings (a fair pair), records to
# results/sweeps/TASK-NAME/record.json and regenerates RESULTS.md. Resumable like every pipeline run.
# LANES=2 trains the two students in two processes side by side (one thread each unless
# OMP_NUM_THREADS says otherwise), then a third run reuses both, evaluates and records.
set -euo pipefail
cd "$(dirname "$0")/.."
task=$1; name=$2; shift 2
RUNS=${DSEMBED_RUNS:-$HOME/.cache/dsembed/runs}
bundles=$(ls -d results/teachers/"$task"-all-mpnet-base-v2-s* | paste -sd, -)
out="$RUNS/sweep/$task-$name"
run() { dsembed pipeline "$task" --profile full --output-dir "$out" --teacher-logits "$bundles" --no-progress "$@"; }
if [ "${LANES:-1}" = 2 ]; then
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
    run "$@" --only-student dse & dse=$!
    run "$@" --only-student label-only & lo=$!
    wait $dse; wait $lo
fi
run "$@"
mkdir -p "results/sweeps/$task-$name"
cp "$out/record.json" "$out/student_vs_teacher.png" "results/sweeps/$task-$name/"
python scripts/make_results.py
