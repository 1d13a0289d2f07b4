#!/usr/bin/env bash
# The first thing to run on a GPU machine: the model side's CUDA paths, most likely failures first, in one run of at
# most 8 minutes (benchmarks/gpu_check.py has the steps). Results: summary.json, summary.md and log.txt in $OUT
# (default ./gpu_check_out). Uses the python3 on PATH (or $PYTHON) with its own torch and Triton; Ray, DALI and MLflow
# are not needed. On a machine without CUDA every CUDA step is skipped with a message (a dry run).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3)}"
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && ! "$PY" -c 'import torch' 2>/dev/null && PY=.venv/bin/python
export OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
exec "$PY" benchmarks/gpu_check.py --out "$OUT" --deadline "${GPU_CHECK_DEADLINE:-450}" "$@"
