#!/usr/bin/env bash
# Full-size students with teacher-scored mined pairs (issue 14), on a CPU: one task, one teacher model.
#
#   bash benchmarks/full_mined.sh TASK TEACHER_MODEL [WORK]
#   e.g. bash benchmarks/full_mined.sh mrpc /work/runs/teacher-mpnet-mrpc-s42/model
#
# 1. `dsembed augment mine`: random, BM25 and embedding neighbours (2 per source sentence each) and swapped pairs
#    from the task's training sentences only (never a dev or test sentence; the mined file's record says so).
# 2. `dsembed augment score --max-pairs B×labelled`: the teacher scores only the pairs a ×B budget uses (the
#    smallest pair hashes, FULL_MINED_BUDGET, default 3), so a larger budget later scores only the added pairs.
#    About 12 pairs/s for an all-mpnet-base-v2 teacher with 2 threads: ×3 of MRPC (11k pairs) is ~15 min.
# 3. `dsembed pipeline --profile full` for seeds 42 and 43 (FULL_MINED_SEEDS) with two student processes of one
#    thread each: DSE + mined pairs, the AugSBERT anchor on the same pairs, plain DSE and label-only, all at the
#    optimiser steps of the 8-epoch labelled run; the teacher's logits bundle gives the teacher row (dev, test).
#    A full-size MRPC student takes 60-80 min of one core, one with mined rows about twice that: the whole run
#    is several sessions of a 2-core CPU; every stage resumes (`bash` it again).
# The seed-summary record goes to results/full_mined/TASK/ and RESULTS.md is regenerated.
set -euo pipefail
cd "$(dirname "$0")/.."
TASK=${1:?task}
TEACHER=${2:?teacher model folder}
WORK=${3:-${DSEMBED_RUNS:-$HOME/.cache/dsembed/runs}/full-mined/$TASK}
BUDGET=${FULL_MINED_BUDGET:-3}
SEEDS=${FULL_MINED_SEEDS:-42,43}
export HF_HUB_OFFLINE=1
mkdir -p "$WORK"
if [[ ! -f $WORK/mined.jsonl ]]; then
  OMP_NUM_THREADS=2 dsembed augment mine "$TASK" --strategy random,bm25,embedding,swap --per-sentence 2 \
    -o "$WORK/mined.jsonl"
fi
labelled=$(python3 -c "from dsembed.data import load_glue; print(len(load_glue('$TASK', 'train')))")
max_pairs=$(python3 -c "print(int($BUDGET * $labelled))")
OMP_NUM_THREADS=2 dsembed augment score "$WORK/mined.jsonl" --teacher "$TEACHER" --max-pairs "$max_pairs" \
  --cache "$WORK/store" -o "$WORK/bundle-x$BUDGET"
# the teacher's logits on the labelled pairs (train, dev and, where the local copy has labels, test), with 2 threads
glue=$(python3 -c "from dsembed.data import default_glue_dir; print(default_glue_dir())")
test_file=$(python3 -c "from dsembed.tasks import get_task; print(get_task('$TASK').local_dir)")
test_args=()
[[ $TASK == mrpc || $TASK == stsb ]] && test_args=(--test "$glue/$test_file/test.tsv")
if [[ ! -f $WORK/teacher-bundle/train.safetensors ]]; then
  OMP_NUM_THREADS=2 dsembed teacher export-logits "$TASK" --teacher "$TEACHER" "${test_args[@]}" \
    -o "$WORK/teacher-bundle" --no-progress
fi
OMP_NUM_THREADS=1 dsembed pipeline "$TASK" --profile full --seeds "$SEEDS" --jobs 2 --teacher-logits "$WORK/teacher-bundle" \
  --mined "$WORK/bundle-x$BUDGET" --mined-budget "$BUDGET" --augsbert --output-dir "$WORK/full-x$BUDGET" --no-progress
mkdir -p "results/full_mined/$TASK"
cp "$WORK/full-x$BUDGET/record.json" "results/full_mined/$TASK/record-x$BUDGET.json"
python3 scripts/make_results.py
