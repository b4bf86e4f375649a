#!/usr/bin/env bash
# The README's main job, timed end to end; its record is kept under results/quick/mrpc/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${DSEMBED_RUNS:-$HOME/.cache/dsembed/runs}/quick/mrpc
rm -rf "$out"
start=$(date +%s)
dsembed pipeline mrpc --profile quick --output-dir "$out" --no-progress
end=$(date +%s)
mkdir -p results/quick/mrpc
python - "$out/record.json" "$((end - start))" <<'PY'
import json, sys
record = json.load(open(sys.argv[1]))
record["main_job_wall_seconds"] = int(sys.argv[2])
json.dump(record, open("results/quick/mrpc/record.json", "w"), indent=2, sort_keys=True)
PY
cp "$out/student_vs_teacher.png" results/quick/mrpc/
python scripts/make_results.py
