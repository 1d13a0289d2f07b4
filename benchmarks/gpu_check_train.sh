#!/usr/bin/env bash
# The training half of the GPU check (benchmarks/gpu_check_train.py says what it runs): `jobs train` on the embedded
# local Ray with one GPU worker and an injected worker failure, a resume, `jobs evaluate`, `jobs predict` and
# `jobs predict --ray` on CUDA.
# Needs the dali and train wheel sets: `bash benchmarks/gpu_pack.sh dali` and `bash benchmarks/gpu_pack.sh train`
# here, each piece brought over in its own transfer followed by `bash benchmarks/gpu_unpack.sh --stash` there.
# Results: train_check.json in $OUT (default ./gpu_check_out). Not yet run on a GPU (estimated 3–5 minutes there).
set -uo pipefail
cd "$(dirname "$0")/.."
bash benchmarks/gpu_unpack.sh --stash > /dev/null
sites=$(bash benchmarks/gpu_unpack.sh dali train) || exit 2
export PYTHONPATH=$(echo $sites | tr ' ' ':')${PYTHONPATH:+:$PYTHONPATH}
export OUT="${OUT:-$PWD/gpu_check_out}"; mkdir -p "$OUT"
exec timeout "${GPU_CHECK_TRAIN_TIMEOUT:-540}" "${PYTHON:-python3}" benchmarks/gpu_check_train.py --out "$OUT" "$@"
