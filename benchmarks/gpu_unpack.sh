#!/usr/bin/env bash
# The GPU machine's side of benchmarks/gpu_pack.sh:
#   bash benchmarks/gpu_unpack.sh --stash     move every piece brought in this transfer (.whl/SET/piece-*/) to
#                                             /tmp/a2u-pieces/SET/ (run it after each transfer)
#   bash benchmarks/gpu_unpack.sh SET...      reassemble SET's wheels, check them against the packed SHA-256 sums,
#                                             install them into /tmp/a2u-site-SET (once) and print that path
# The check scripts put /tmp/a2u-site-SET on PYTHONPATH themselves. $PYTHON (default python3) installs;
# GPU_PACK_DIR (default .whl) is where transfers land, GPU_UNPACK_ROOT (default /tmp) holds pieces and sites.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="${GPU_UNPACK_ROOT:-/tmp}"
PIECES="$ROOT/a2u-pieces"
if [ "${1:-}" = "--stash" ]; then
  for dir in "${GPU_PACK_DIR:-.whl}"/*/; do
    [ -d "$dir" ] || continue
    set_name=$(basename "$dir"); mkdir -p "$PIECES/$set_name"
    find "$dir" -type f \( -name '*.part*' -o -name '*.SHA256SUMS' \) -exec mv {} "$PIECES/$set_name"/ \;
  done
  for d in "$PIECES"/*/; do [ -d "$d" ] && echo "$(basename "$d"): $(ls "$d" | wc -l) files, $(du -sh "$d" | cut -f1)"; done
  exit 0
fi
[ $# -gt 0 ] || { echo "usage: gpu_unpack.sh --stash | SET..." >&2; exit 2; }
for set_name in "$@"; do
  site="$ROOT/a2u-site-$set_name"
  if [ -f "$site/.installed" ]; then echo "$site"; continue; fi
  src="$PIECES/$set_name"; wheels="$ROOT/a2u-wheels-$set_name"
  sums="$src/$set_name.SHA256SUMS"
  [ -f "$sums" ] || { echo "no $set_name pieces in $src: run benchmarks/gpu_pack.sh $set_name and bring them over" >&2; exit 2; }
  rm -rf "$wheels" && mkdir -p "$wheels"
  while read -r _ whl; do
    ls "$src/$whl".part* > /dev/null 2>&1 || { echo "$set_name: no pieces of $whl (a transfer is missing)" >&2; exit 2; }
    cat $(ls "$src/$whl".part* | sort) > "$wheels/$whl"
  done < "$sums"
  (cd "$wheels" && sha256sum --quiet -c "$sums") || { echo "$set_name: a reassembled wheel differs from the packed one" >&2; exit 2; }
  "${PYTHON:-python3}" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$wheels"/*.whl >&2 || exit 1
  touch "$site/.installed"
  echo "$site"
done
