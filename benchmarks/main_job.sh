#!/usr/bin/env bash
# The README's main job, timed end to end; its seed-summary record is kept under results/main_job/mrpc/.
# The teacher is carried as bundles (results/teachers/mrpc-mpnet-cpu-s42: its logits on the labelled
# pairs, dev and test, and on the pairs mined from each seed's labelled subset), made by
# benchmarks/augment_bundle.py from an all-mpnet-base-v2 cross-encoder fine-tuned on this CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${DSEMBED_RUNS:-$HOME/.cache/dsembed/runs}/main_job/mrpc
rm -rf "$out"
start=$(date +%s)
bundle=results/teachers/mrpc-mpnet-cpu-s42
dsembed pipeline mrpc --profile quick --max-train-pairs 500 --seeds 42,43,44 \
  --teacher-logits "$bundle" --mined "$bundle/mined" --no-plain-dse --jobs 2 --output-dir "$out" --no-progress
end=$(date +%s)
mkdir -p results/main_job/mrpc
python - "$out/record.json" "$((end - start))" <<'PY'
import json, sys
record = json.load(open(sys.argv[1]))
record["main_job_wall_seconds"] = int(sys.argv[2])
json.dump(record, open("results/main_job/mrpc/record.json", "w"), indent=2, sort_keys=True)
PY
python scripts/make_results.py
