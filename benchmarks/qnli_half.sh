#!/usr/bin/env bash
# QNLI as a fourth distillation task (issue 13): its dev set split by question, one half to distil on,
# the other half the ranking benchmark `qnli-bench`. QNLI train is not in the shared data.
#
#   bash benchmarks/qnli_half.sh [WORK]        # WORK defaults to runs/qnli-half; every step resumes
#
# 1. benchmarks/retrieval_bench.py --export-qnli-train: the train half, split again by question into train.tsv
#    and dev.tsv (every checkpoint is selected on dev.tsv, never on the benchmark half), and test.tsv = the
#    benchmark half's pairs (pair accuracy: only reported).
# 2. the teacher: all-mpnet-base-v2 fine-tuned as a cross-encoder, 1 epoch (QNLI_TEACHER_EPOCHS; on a 2-core CPU
#    an epoch of its 2.3k pairs takes about 25 min with 2 threads), resumable per epoch.
# 3. its logits on train, dev and test as a bundle (`teacher export-logits --test`).
# 4. `dsembed pipeline` at full size (8 epochs, all pairs) for seeds 42 and 43 (QNLI_SEEDS), two student
#    processes with one thread each; the seed-summary record and the split record go to results/qnli_half/.
# 5. the ranking half: `dsembed eval-retrieval --set qnli-bench` on every seed's students, plus pretrained cosine
#    and BM25 -> results/retrieval/qnli-bench.json. With QNLI_TEACHER_QUERIES=N the teacher column and the
#    cascades run on a seeded sample of N questions (about 6 min of 2 CPU threads per question: 2,269
#    candidates each); their scores are cached by pair in WORK/retrieval, so a larger N later adds questions.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/qnli-half}
DATA=$WORK/data
SEEDS=${QNLI_SEEDS:-42,43}
OWN=(--train "$DATA/train.tsv" --dev "$DATA/dev.tsv" --kind binary --labels not_entailment,entailment)
export HF_HUB_OFFLINE=1
mkdir -p "$WORK"
[[ -f $DATA/qnli_split.json ]] || python3 benchmarks/retrieval_bench.py --export-qnli-train "$DATA"
if [[ ! -f $WORK/teacher/model/config.json ]]; then
  OMP_NUM_THREADS=${QNLI_TEACHER_THREADS:-2} dsembed teacher train qnli-half "${OWN[@]}" --base all-mpnet-base-v2 \
    --epochs "${QNLI_TEACHER_EPOCHS:-1}" --max-length 128 --seed 42 -o "$WORK/teacher" --no-progress
fi
if [[ ! -f $WORK/bundle/test.safetensors ]]; then
  OMP_NUM_THREADS=${QNLI_TEACHER_THREADS:-2} dsembed teacher export-logits qnli-half "${OWN[@]}" \
    --test "$DATA/test.tsv" --teacher "$WORK/teacher/model" -o "$WORK/bundle" --no-progress
fi
OMP_NUM_THREADS=1 dsembed pipeline qnli-half "${OWN[@]}" --test "$DATA/test.tsv" --profile full --max-length 128 \
  --seeds "$SEEDS" --jobs 2 --teacher-logits "$WORK/bundle" --output-dir "$WORK/full" --no-progress
mkdir -p results/qnli_half
cp "$WORK/full/record.json" results/qnli_half/record.json
cp "$DATA/qnli_split.json" results/qnli_half/qnli_split.json
students=()
for seed in ${SEEDS//,/ }; do
  for row in dse dse_mined label_only; do
    model=$WORK/full/seed-$seed/${row}_student/model
    if [[ -d $model ]]; then students+=(--student "${row//_/-}-s$seed=$model"); fi
  done
done
teacher_args=()
if [[ ${QNLI_TEACHER_QUERIES:-0} -gt 0 ]]; then
  teacher_args=(--teacher "$WORK/teacher/model" --teacher-queries "$QNLI_TEACHER_QUERIES")
fi
OMP_NUM_THREADS=2 dsembed eval-retrieval --set qnli-bench "${students[@]}" "${teacher_args[@]}" \
  --work-dir "$WORK/retrieval" -o results/retrieval/qnli-bench.json --plot results/retrieval
python3 scripts/make_results.py
