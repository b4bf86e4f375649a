#!/usr/bin/env bash
# Full-size DSE runs (all training pairs, default hyper-parameters) for the tasks given (default:
# mrpc stsb rte). Each stage resumes from its own checkpoints, so re-running continues an
# interrupted run. Records land in results/full/<task>/ and RESULTS.md is regenerated.
#
# The teacher: when results/teachers/ holds logits bundles of all-mpnet-base-v2 cross-encoders for
# the task (trained on a GPU by benchmarks/gpu_teachers.py), their mean is the teacher (an ensemble);
# otherwise a MiniLM cross-encoder is fine-tuned here (hours at RTE's length on a 2-core CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=("${@:-mrpc stsb rte}")
# Run folders live outside the work tree so a later session on this machine can resume them.
RUNS=${DSEMBED_RUNS:-$HOME/.cache/dsembed/runs}
for task in ${tasks[@]}; do
  bundles=$(ls -d results/teachers/"$task"-all-mpnet-base-v2-s* 2>/dev/null | paste -sd, - || true)
  if [ -n "$bundles" ]; then
    out="$RUNS/full-v4/$task"  # v4: 8 student epochs (v3: 3 epochs, head lr 1e-3; v2: the official single rate)
    teacher_args=(--teacher-logits "$bundles")
  else
    out="$RUNS/full/$task"
    teacher_args=()
  fi
  dsembed pipeline "$task" --profile full --output-dir "$out" "${teacher_args[@]}" --no-progress
  mkdir -p "results/full/$task"
  cp "$out/record.json" "results/full/$task/record.json"
  cp "$out/student_vs_teacher.png" "results/full/$task/student_vs_teacher.png"
  python scripts/make_results.py
done
