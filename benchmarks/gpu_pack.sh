#!/usr/bin/env bash
# Packs wheels for a GPU machine that has no package index (Python 3.12, x86-64, its own torch, numpy, SciPy, OpenCV,
# Pillow, tqdm and PyYAML) and cuts them into pieces of at most $GPU_PIECE_MIB MiB (default 56: one transfer carries
# 64 MiB with the working tree) under .whl/SET/piece-NN/ (one folder per transfer; .whl/ is ignored by git).
#   bash benchmarks/gpu_pack.sh dali    DALI, nvImageCodec, webdataset (benchmarks/gpu_check_dali.sh needs them)
#   bash benchmarks/gpu_pack.sh train   Ray Train and MLflow with what they import (benchmarks/gpu_check_train.sh
#                                       needs them and the dali set)
# Versions are requirements.txt's pins. Bring the folders over one at a time, run `bash benchmarks/gpu_unpack.sh
# --stash` after each (it moves the piece out of the working tree, so the next transfer stays small), then
# `bash benchmarks/gpu_unpack.sh SET` reassembles and installs (the check scripts call it themselves).
# GPU_PACK_WHEELS=DIR takes the wheels from DIR instead of downloading them; GPU_PACK_DIR (default .whl) is where the
# pieces go.
set -euo pipefail
cd "$(dirname "$0")/.."
SET="${1:?usage: gpu_pack.sh dali|train}"
PYV="${GPU_PYTHON_VERSION:-3.12}"
MIB="${GPU_PIECE_MIB:-56}"
case "$SET" in
  dali)
    names="webdataset braceexpand nvidia-dali-cuda130 nvidia-nvimgcodec-cu13 nvidia-libnvcomp-cu13 nvidia-nvjpeg
           nvidia-nvjpeg2k-cu13 nvidia-nvtiff-cu13 astunparse gast optree nvtx makefun libcst" ;;
  train)
    # the import closure of ray[train] and mlflow in this checkout's environment, less what the GPU machine has
    # (torch, its CUDA libraries, numpy, SciPy, Pillow, PyYAML) and MLflow's plotting / scikit-learn extras
    # (MLflow logs, registers and loads the model without them)
    py=.venv/bin/python; [ -x "$py" ] || py=python3
    names=$("$py" - <<'PY'
import importlib.metadata as md
import re

from packaging.requirements import Requirement

SKIP = {"torch", "triton", "numpy", "scipy", "pillow", "pyyaml", "setuptools", "pip", "scikit-learn",
        "matplotlib", "skops", "contourpy", "kiwisolver", "fonttools", "joblib", "threadpoolctl", "cycler",
        "pyparsing"}
ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux", "os_name": "posix",
       "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
       "platform_python_implementation": "CPython"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


found: dict[str, None] = {}


def walk(name: str, extras: tuple[str, ...] = ()) -> None:
    key = norm(name)
    if key in SKIP or key.startswith("nvidia-") or (key, extras) in found:
        return
    found[(key, extras)] = None
    for text in md.distribution(name).requires or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({**ENV, "extra": e}) for e in ("",) + extras):
            walk(req.name, tuple(sorted(req.extras)))


walk("ray", ("train",))
walk("mlflow")
print(" ".join(sorted({k for k, _ in found})))
PY
) ;;
  *) echo "unknown set $SET: dali or train" >&2; exit 2 ;;
esac
pins=""
for n in $names; do
  pin=$(grep -iE "^${n//-/[-_.]}==" requirements.txt || true)
  [ -n "$pin" ] || { echo "requirements.txt has no pin for $n" >&2; exit 1; }
  pins="$pins $pin"
done
dest="${GPU_PACK_DIR:-.whl}/$SET"
rm -rf "$dest" && mkdir -p "$dest/wheels"
if [ -n "${GPU_PACK_WHEELS:-}" ]; then
  cp "$GPU_PACK_WHEELS"/*.whl "$dest/wheels/"
else
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d "$dest/wheels" $pins
fi
(cd "$dest/wheels" && for w in *.whl; do sha256sum "$w" >> ../SHA256SUMS; split -b "${MIB}M" -d -a 2 "$w" "$w.part"; rm "$w"; done)
n=0; size=0; mkdir -p "$dest/piece-00"
mv "$dest/SHA256SUMS" "$dest/piece-00/$SET.SHA256SUMS"
for part in $(ls -S "$dest"/wheels/*.part*); do
  s=$(stat -c %s "$part")
  if [ $((size + s)) -gt $((MIB * 1024 * 1024)) ]; then n=$((n + 1)); size=0; mkdir -p "$dest/piece-$(printf %02d $n)"; fi
  mv "$part" "$dest/piece-$(printf %02d $n)/"; size=$((size + s))
done
rmdir "$dest/wheels"
echo "$SET: $(echo $pins | wc -w) wheels in $((n + 1)) pieces"
du -sh "$dest"/piece-* | sed 's/^/carry /'
