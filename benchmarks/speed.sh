#!/usr/bin/env bash
# Speed benchmark: 1 query x N candidates (N = 1k, 10k, 100k, 1M), teacher cross-encoder vs student exact head
# vs ANN prefilter + head re-rank vs sentence-transformers encode + cosine, plus encoding throughput.
# Writes results/speed/speed.json and results/speed/speed.png (see `dsembed bench --help`).
#
#   MODEL=path/to/student TEACHER=path/to/teacher THREADS=1 benchmarks/speed.sh
#
# MODEL / TEACHER default to a trained MRPC student / teacher under runs/ when one exists; otherwise the bench
# uses an untrained head on all-MiniLM-L6-v2 (speed numbers stay valid, recall numbers then mean little).
# The 1M store needs ~13 GB of disk under $WORK (default: ~/.cache/dsembed/bench) and is deleted afterwards.
# Takes ~20-30 minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

pick() {  # first existing student/teacher folder
  for candidate in "$@"; do
    if [ -f "$candidate/dse_config.json" ] || [ -f "$candidate/dsembed_teacher.json" ]; then
      echo "$candidate"; return 0
    fi
  done
}

MODEL="${MODEL:-$(pick runs/full/mrpc/dse_student/model runs/quick/mrpc/dse_student/model)}"
TEACHER="${TEACHER:-$(pick runs/full/mrpc/teacher/model runs/quick/mrpc/teacher/model)}"
THREADS="${THREADS:-0}"
SIZES="${SIZES:-1000,10000,100000,1000000}"
OUT="${OUT:-results/speed}"
args=(--sizes "$SIZES" --threads "$THREADS" --queries "${QUERIES:-10}" -o "$OUT" --no-progress)
[ -n "$MODEL" ] && args+=(--model "$MODEL")
[ -n "$TEACHER" ] && args+=(--teacher "$TEACHER")
[ -n "${WORK:-}" ] && args+=(--work-dir "$WORK")
[ -n "${NOTE:-}" ] && args+=(--note "$NOTE")
mkdir -p "$OUT"
echo "dsembed bench ${args[*]}" | tee "$OUT/speed.log"
DSEMBED_LOG="${DSEMBED_LOG:-INFO}" dsembed bench "${args[@]}" 2>&1 | tee -a "$OUT/speed.log"
