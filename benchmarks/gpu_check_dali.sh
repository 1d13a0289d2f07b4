#!/usr/bin/env bash
# The DALI half of the GPU check (benchmarks/gpu_check.sh is the model half): the "mixed" decoders and the DLPack
# hand-over of the training and evaluation loaders (tests/test_pipeline/test_gpu.py, and the corrupt-sample skip of
# test_bad_input.py on the GPU), and the GPU loader's speed at crop 512, batch 32, png and raw shards, the crop step in
# the loader's thread or in worker processes, on a machine whose python3 has torch with CUDA but no DALI and no
# package index.
# Before it: `bash benchmarks/gpu_pack.sh dali` here, then each piece brought over in its own transfer followed by
# `bash benchmarks/gpu_unpack.sh --stash` there. This script reassembles and installs them (benchmarks/gpu_unpack.sh).
# Results: dali_tests.txt, dali_speed.json and dali_fed_step.json in $OUT (default ./gpu_check_out).
set -uo pipefail
cd "$(dirname "$0")/.."
bash benchmarks/gpu_unpack.sh --stash > /dev/null
site=$(bash benchmarks/gpu_unpack.sh dali) || exit 2
OUT="${OUT:-$PWD/gpu_check_out}"; mkdir -p "$OUT"
export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
python3 -c 'import nvidia.dali as d, webdataset; print("DALI", d.__version__)' 2>&1 | tee "$OUT/dali_tests.txt"
timeout 300 python3 -m pytest -q -p no:cacheprovider --timeout 240 -m gpu tests/test_pipeline/test_gpu.py \
  tests/test_pipeline/test_bad_input.py 2>&1 | tee -a "$OUT/dali_tests.txt"
tests=${PIPESTATUS[0]}
for enc in png raw; do
  data=/tmp/a2u_gpu_loader_1024_$enc
  [ -f "$data/manifest.json" ] || python3 -m data_prep synthetic --out "$data" --count 64 --size 1024 --seed 0 \
    --encoding "$enc" 2>&1 | tail -2
done
timeout 240 python3 - "$OUT/dali_speed.json" <<'PY'
import json, sys, time
import torch
import pipeline
out = sys.argv[1]
rows = []
# crop_workers 0: the crop step on the loader's main thread; 4: in four worker processes. stage_ms: milliseconds per
# batch in each loader stage (TrainLoader.stage_times; all but "finish" are on the main thread)
for enc, threads, workers in (("png", 4, 0), ("png", 8, 0), ("raw", 4, 0), ("raw", 8, 0), ("png", 8, 4),
                              ("raw", 8, 4)):
    ld = pipeline.build_train_loader(f"/tmp/a2u_gpu_loader_1024_{enc}", 32, 512, device="cuda",
                                     num_threads=threads, iterations_per_epoch=12, crop_workers=workers)
    it = iter(ld); next(it); torch.cuda.synchronize(); ld.stage_times(reset=True); t0 = time.perf_counter(); n = k = 0
    for b in it:
        n += b["image"].shape[0]; k += 1
    torch.cuda.synchronize()
    rows.append({"encoding": enc, "batch": 32, "crop": 512, "threads": threads, "crop_workers": workers,
                 "samples_per_s": round(n / (time.perf_counter() - t0), 1),
                 "stage_ms": {s: round(1000 * v / k, 2) for s, v in ld.stage_times().items()}})
    ld.close()
    print(json.dumps(rows[-1]), flush=True)
    json.dump(rows, open(out, "w"), indent=1)
PY
speed=$?
# The training step (16 x 512², bf16, channels_last, fused Adam) fed by the DALI GPU loader vs on one resident batch.
timeout 240 python3 - "$OUT/dali_fed_step.json" <<'PY'
import json, sys, time
import torch
sys.path.insert(0, "benchmarks")
import pipeline
from bench_step import Stepper
from model.net import A2UMatting
out, dev = sys.argv[1], torch.device("cuda")
stepper = Stepper(A2UMatting(), dev, "bf16", False, True)
mean = torch.tensor([0.485, 0.456, 0.406], device=dev).reshape(1, 3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225], device=dev).reshape(1, 3, 1, 1)
def step(b):
    x = torch.cat([(b["image"] - mean) / std, b["trimap"]], dim=1)
    stepper.step(x, b)
rows = []
# alone: one batch, no loader running; beside: the loader runs, its batches are dropped; png/raw: fed by the loader;
# raw+workers: fed by the loader with the crop step in 4 worker processes
for enc in ("alone", "beside", "png", "raw", "raw+workers"):
    ds = f"/tmp/a2u_gpu_loader_1024_{'png' if enc == 'png' else 'raw'}"
    ld = pipeline.build_train_loader(ds, 16, 512, device="cuda", num_threads=8, iterations_per_epoch=24,
                                     crop_workers=4 if enc == "raw+workers" else 0)
    it = iter(ld); first = {k: v.clone() for k, v in next(it).items()}
    if enc == "alone":
        it = iter([None] * 23)
    for _ in range(3): step(first)
    torch.cuda.synchronize(); t0 = time.perf_counter(); n = 0
    for b in it:
        step(first if enc in ("alone", "beside") else b); n += 16
    torch.cuda.synchronize()
    rows.append({"input": enc, "batch": 16, "crop": 512, "loader_threads": 8,
                 "images_per_s": round(n / (time.perf_counter() - t0), 1)})
    ld.close()
    print(json.dumps(rows[-1]), flush=True)
    json.dump(rows, open(out, "w"), indent=1)
PY
fed=$?
[ "$tests" = 0 ] && [ "$speed" = 0 ] && [ "$fed" = 0 ]
