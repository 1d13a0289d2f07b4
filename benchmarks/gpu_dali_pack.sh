#!/usr/bin/env bash
# Packs DALI and its dependencies for a GPU machine that has no package index (Python 3.12, x86-64): downloads the
# wheels and cuts them into pieces of at most $DALI_PIECE_MIB MiB (default 56: a transfer carries 64 MiB with the working tree) under .whl/dali/piece-NN/ (one folder per transfer; .whl/ is
# ignored by git). Bring the folders over one at a time, run `bash benchmarks/gpu_check_dali.sh --stash` after each
# (it moves the piece out of the working tree), then `bash benchmarks/gpu_check_dali.sh` reassembles and runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PYV="${DALI_PYTHON_VERSION:-3.12}"
MIB="${DALI_PIECE_MIB:-56}"
dest=.whl/dali
rm -rf "$dest" && mkdir -p "$dest/wheels"
pins=$(grep -E '^(webdataset|braceexpand|nvidia-dali-cuda130|nvidia-nvimgcodec-cu13|nvidia-libnvcomp-cu13|nvidia-nvjpeg|nvidia-nvjpeg2k-cu13|nvidia-nvtiff-cu13|astunparse|gast|optree|nvtx|makefun|libcst)==' requirements.txt)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any -d "$dest/wheels" $pins
cat "$dest"/wheels/*.whl > /dev/null
(cd "$dest/wheels" && for w in *.whl; do split -b "${MIB}M" -d -a 2 "$w" "$w.part"; rm "$w"; done)
n=0; size=0; mkdir -p "$dest/piece-00"
for part in $(ls -S "$dest"/wheels/*.part*); do
  s=$(stat -c %s "$part")
  if [ $((size + s)) -gt $((MIB * 1024 * 1024)) ]; then n=$((n + 1)); size=0; mkdir -p "$dest/piece-$(printf %02d $n)"; fi
  mv "$part" "$dest/piece-$(printf %02d $n)/"; size=$((size + s))
done
rmdir "$dest/wheels"
du -sh "$dest"/piece-* | sed 's/^/carry /'
