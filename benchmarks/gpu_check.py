"""The prepared GPU check: every CUDA path of the model side in one run of a few minutes, most likely failures first.

Each step runs in its own Python process with its own time limit (a hang or a crash costs that step only), under one
overall deadline; what needs CUDA is skipped with a message on a machine without it, so the same command is a dry run
on a CPU box. It needs only torch, numpy, PyYAML and (for the kernels) Triton: Ray, DALI and MLflow are not used (the
DALI loader has its own check, `benchmarks/gpu_check_dali.sh`).

Writes `summary.json`, `summary.md` and `log.txt` into `--out` (default `$OUT`, else `./gpu_check_out`).

    bash benchmarks/gpu_check.sh                 # the whole check (exit 0 when no step failed)
    python benchmarks/gpu_check.py --only resume predict
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

RESULT_TAG = "GPU_CHECK_RESULT "
SKIP_TAG = "GPU_CHECK_SKIP "


# ------------------------------------------------------------------------------------------------ helpers (in steps)
def emit(result: dict[str, Any]) -> None:
    """Hand a step's result to the driver (the last such line of the step's output wins)."""
    print(RESULT_TAG + json.dumps(result, default=str), flush=True)


def skip(reason: str) -> None:
    print(SKIP_TAG + reason, flush=True)
    sys.exit(0)


def need_cuda():
    import torch

    if not torch.cuda.is_available():
        skip("no CUDA device")
    return torch


def cuda_ms(fn: Callable[[], Any], iters: int, warmup: int = 1) -> float:
    """Median milliseconds of `fn` timed with CUDA events."""
    import statistics

    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def run_child(argv: list[str], timeout: float) -> tuple[int, str]:
    proc = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------------ steps
def step_env() -> None:
    """Versions, the card, and Triton's launcher build (needs a C compiler and Python headers on first use)."""
    import sysconfig

    import torch

    result: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                              "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
                              "cc": shutil.which("cc") or shutil.which("gcc"),
                              "python_h": (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file()}
    try:
        import triton

        result["triton"] = triton.__version__
    except Exception as exc:  # noqa: BLE001
        result["triton"] = f"unavailable: {exc}"
    if shutil.which("nvidia-smi"):
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                            "--format=csv,noheader"], capture_output=True, text=True)
        result["nvidia_smi"] = q.stdout.strip()
    if not torch.cuda.is_available():
        emit(result)
        skip("no CUDA device: versions only")
    props = torch.cuda.get_device_properties(0)
    result.update(gpu=props.name, capability=f"{props.major}.{props.minor}", sms=props.multi_processor_count,
                  memory_gib=round(props.total_memory / 2 ** 30, 1), device_count=torch.cuda.device_count())
    import triton
    import triton.language as tl

    @triton.jit
    def _add(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) + tl.load(y_ptr + offs, mask=mask), mask=mask)

    x = torch.randn(10_000, device="cuda")
    y = torch.randn_like(x)
    out = torch.empty_like(x)
    t0 = time.perf_counter()
    _add[(triton.cdiv(x.numel(), 1024),)](x, y, out, x.numel(), BLOCK=1024)
    torch.cuda.synchronize()
    result["triton_first_launch_s"] = round(time.perf_counter() - t0, 2)
    result["triton_launch_ok"] = bool(torch.equal(out, x + y))
    emit(result)


def _synthetic_batch(batch: int, crop: int, device, seed: int = 0):
    from benchmarks.bench_step import synthetic_batch

    return synthetic_batch(batch, crop, device, seed)


def step_resume() -> None:
    """Fused Adam steps, checkpoint, restore into fresh objects (the trainer's order), one more step: the resumed
    weights must equal the uninterrupted run's, and the optimiser state must sit on the GPU."""
    torch = need_cuda()
    from jobs.checkpointing import capture_rng_state, read_checkpoint, restore_rng_state, write_checkpoint
    from jobs.config import TrainConfig
    from jobs.training_state import build_training_state, misplaced_optimizer_state
    from model.losses import matting_loss
    from model.net import A2UMatting

    device = torch.device("cuda")
    cfg = TrainConfig()
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    inputs, target = _synthetic_batch(2, 128, device)

    def one_step(state) -> float:
        state.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            pred = state.net(inputs)
        loss = matting_loss(pred.float(), target["alpha"], target["trimap"], target["fg"], target["bg"],
                            target["image"])
        loss.backward()
        state.optimizer.step()
        return loss.item()

    torch.manual_seed(0)
    state = build_training_state(A2UMatting(), cfg, device)
    fused = bool(state.optimizer.defaults.get("fused"))
    losses = [one_step(state) for _ in range(2)]
    tmp = tempfile.mkdtemp(prefix="gpu-check-ckpt-")
    write_checkpoint(tmp, {"model": state.net.state_dict(), "optimizer": state.optimizer.state_dict(),
                           "scheduler": state.scheduler.state_dict(), "step": 2, "epoch": 0,
                           "batch_in_epoch": 2, "mlflow_run_id": "gpu-check", "rng": [capture_rng_state()]})
    losses.append(one_step(state))
    try:  # the order that used to be the trainer's: Adam built and restored on the CPU, the net moved afterwards
        old_state = build_training_state(A2UMatting(), cfg, torch.device("cpu"), read_checkpoint(tmp))
        old_state.net.to(device)
        old_order = f"no error, loss {one_step(old_state):.4f}"
    except Exception as exc:  # noqa: BLE001
        old_order = f"{type(exc).__name__}: {exc}"[:200]
    torch.manual_seed(1)
    saved = read_checkpoint(tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    resumed = build_training_state(A2UMatting(), cfg, device, saved)
    restore_rng_state(saved["rng"][0])  # the ASPP's dropout draws from it
    misplaced = misplaced_optimizer_state(resumed.optimizer, resumed.net)
    resumed_loss = one_step(resumed)
    diff = max((a.float() - b.float()).abs().max().item()
               for a, b in zip(state.net.state_dict().values(), resumed.net.state_dict().values())
               if a.is_floating_point())
    emit({"fused_adam": fused, "losses": losses, "resumed_loss": resumed_loss, "misplaced_state": misplaced[:5],
          "old_order_outcome": old_order,
          "max_weight_diff_vs_uninterrupted": diff,  # bitwise on CPU; atomics in CUDA backward kernels may differ
          "ok": not misplaced and math.isfinite(resumed_loss) and diff < 1e-2})


def step_ddp() -> None:
    """NCCL process group (world 1), SyncBatchNorm conversion and DDP, bf16 steps with fused Adam: the path a Ray
    Train GPU worker takes, without Ray. At world size 1 SyncBatchNorm computes local statistics and DDP reduces
    nothing across processes: this checks the wiring, not the collectives."""
    torch = need_cuda()
    import torch.distributed as dist

    from jobs.config import TrainConfig
    from jobs.training_state import build_training_state
    from model.losses import matting_loss
    from model.net import A2UMatting, convert_sync_batchnorm

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    dist.init_process_group("nccl", rank=0, world_size=1, device_id=torch.device("cuda", 0))
    try:
        torch.manual_seed(0)
        state = build_training_state(convert_sync_batchnorm(A2UMatting()), TrainConfig(), torch.device("cuda"))
        ddp = torch.nn.parallel.DistributedDataParallel(state.net, device_ids=[0])
        inputs, target = _synthetic_batch(4, 256, torch.device("cuda"))
        losses = []
        for _ in range(3):
            state.optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                pred = ddp(inputs)
            loss = matting_loss(pred.float(), target["alpha"], target["trimap"], target["fg"], target["bg"],
                                target["image"])
            loss.backward()
            state.optimizer.step()
            losses.append(loss.item())
        sync_bn = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in state.net.modules())
        emit({"backend": dist.get_backend(), "sync_batchnorm_modules": sync_bn, "losses": losses,
              "ok": all(math.isfinite(v) for v in losses)})
    finally:
        dist.destroy_process_group()


def _pytest(args: list[str], timeout: float) -> None:
    if not __import__("torch").cuda.is_available():
        skip("no CUDA device: these tests run on the CPU in the suite")
    code, out = run_child([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "--timeout",
                           "120", *args], timeout)
    print(out[-6000:])
    tail = [ln for ln in out.strip().splitlines() if re.search(r"\d+ (passed|failed|error)", ln)]
    emit({"exit_code": code, "summary": tail[-1] if tail else out.strip().splitlines()[-1:], "ok": code == 0})


def step_fused_tests() -> None:
    """The fused Triton kernels compiled for the card, against the reference (fp32/bf16/fp16, layouts, compile)."""
    _pytest(["tests/test_model/test_fused_ops.py"], 170)


def step_gpu_tests() -> None:
    """Every other GPU-marked model test (inference and operators on CUDA)."""
    _pytest(["tests/test_model", "-m", "gpu", "--ignore", "tests/test_model/test_fused_ops.py"], 110)


def step_predict() -> None:
    """`predict_alpha` of the released net: 1080p, and 4096² tiled (default max_pixels) and untiled."""
    torch = need_cuda()
    import numpy as np

    from model.inference import predict_alpha
    from model.net import A2UMatting

    torch.manual_seed(0)
    net = A2UMatting().cuda().eval()
    rows = []
    for name, (h, w), kwargs in [("1080p", (1080, 1920), {}), ("4096² tiled", (4096, 4096), {}),
                                 ("4096² untiled", (4096, 4096), {"max_pixels": 4096 * 4096})]:
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        trimap = np.full((h, w), 128, np.uint8)
        trimap[: h // 4] = 0
        trimap[-h // 4:] = 255
        try:
            predict_alpha(net, image, trimap, **kwargs)  # warm-up (cuDNN plans, kernel compiles)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            predict_alpha(net, image, trimap, **kwargs)
            torch.cuda.synchronize()
            rows.append({"case": name, "seconds": round(time.perf_counter() - t0, 3),
                         "peak_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)})
        except Exception as exc:  # noqa: BLE001
            rows.append({"case": name, "error": f"{type(exc).__name__}: {exc}"[:300]})
        print(json.dumps(rows[-1]), flush=True)
        torch.cuda.empty_cache()
    emit({"rows": rows, "ok": all("error" not in r for r in rows)})


def _json_rows(out: str) -> list[dict]:
    rows = []
    for line in out.splitlines():
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    return rows


def step_ops_bench() -> None:
    """Reassembly fwd+bwd, fused kernels vs unfold, at the crop-512 training shapes (batch 8); the kernel generator
    fwd+bwd, batched vs the official per-sample loop, at the net's four generator inputs (batch 16, fp32 and bf16,
    channels_last)."""
    need_cuda()
    code, out = run_child([sys.executable, "benchmarks/bench_step.py", "--ops", "--iters", "20"], 100)
    print(out[-4000:])
    rows = _json_rows(out)
    gen_code, gen_out = run_child([sys.executable, "benchmarks/bench_step.py", "--generator", "--batch", "16",
                                   "--channels-last", "--iters", "10"], 80)
    print(gen_out[-4000:])
    gen_rows = _json_rows(gen_out)
    emit({"exit_codes": [code, gen_code], "rows": rows, "generator_rows": gen_rows,
          "ok": code == 0 and gen_code == 0 and bool(rows) and bool(gen_rows)})


def step_tiles() -> None:
    """Launch-tile sweep of the six reassembly kernels at the training shapes (16 × 512², bf16 channels_last):
    the best tile per kernel against the default (`benchmarks/bench_tiles.py`)."""
    need_cuda()
    code, out = run_child([sys.executable, "benchmarks/bench_tiles.py"], 170)
    print(out[-8000:])
    rows = _json_rows(out)
    summary = next((r for r in rows if "per_kernel" in r), None)
    emit({"exit_code": code, "summary": summary, "mismatched": [r for r in rows if r.get("mismatched")],
          "ok": code == 0 and summary is not None})


def step_train_bench() -> None:
    """Whole training step at the recipe's settings (16 × 512², bf16 and fp32, channels_last, ours), without and
    with cuDNN's per-shape algorithm timing; the other variants (unfold, per-sample generator, both) with e.g.
    GPU_CHECK_STEP_ARGS="--batch 16 8"."""
    need_cuda()
    extra = os.environ.get("GPU_CHECK_STEP_ARGS", "--batch 16 --variants ours --channels-last").split()
    rows, codes = [], []
    for benchmark in ([], ["--cudnn-benchmark"]):  # cuDNN's default algorithm choice, then its per-shape timing
        code, out = run_child([sys.executable, "benchmarks/bench_step.py", "--crop", "512", "--warmup", "3",
                               "--iters", "10", *extra, *benchmark], 100)
        print(out[-4000:])
        rows += [{**r, "cudnn_benchmark": bool(benchmark)} for r in _json_rows(out)]
        codes.append(code)
    emit({"exit_codes": codes, "rows": rows, "ok": codes == [0, 0] and bool(rows)})


def step_profile() -> None:
    """Where the training step's time goes on the card, at the recipe's settings (16 × 512², bf16, channels_last,
    fused Adam): kernel time by category and by phase, the top kernels, and the GPU's busy fraction of the wall
    time (`benchmarks/profile_step.py`)."""
    need_cuda()
    from benchmarks.profile_step import markdown, profile_training_step

    result = profile_training_step(16, 512, "cuda", "bf16", channels_last=True, warmup=3, steps=3, iters=5, top=20)
    print(markdown(result), flush=True)
    emit({**result, "ok": True})


def _soft_alphas(torch, n: int, seed: int):
    """n soft-edged 1024² uint8 alphas (smooth noise, a third of the pixels in the unknown range)."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 1, 32, 32, generator=gen)
    return (torch.nn.functional.interpolate(low, size=(1024, 1024), mode="bilinear").mul(3).sub(1).clamp(0, 1)
            .mul(255).round().to(torch.uint8)[:, 0])


def step_crop_workers() -> None:
    """The loader's crop step alone for 16-sample batches (1024² alphas, crop 512, half the samples combined) on this
    machine's cores: in the calling thread, then in 2, 4 and 8 crop worker processes (`data.crop_workers`); samples/s
    and the calling thread's CPU-ms per sample (the loader's serial share). Needs no DALI."""
    torch = need_cuda()  # a CPU step, timed on the GPU machine's host: the cores a GPU loader has
    from benchmarks.crop_timing import time_crop_step

    batches = []
    for b in range(6):
        a1, a2 = _soft_alphas(torch, 16, 10 + b), _soft_alphas(torch, 16, 20 + b)
        erosion = [(1 + (3 * j + b) % 29, 1 + (7 * j + b) % 29) for j in range(16)]
        batches.append((list(a1), list(a2), [j % 2 == 0 for j in range(16)], erosion, 512, 10, 100 + b, False))
    rows = time_crop_step(batches, [2, 4, 8])
    emit({"cores": len(os.sched_getaffinity(0)), "batch": 16, "crop": 512,
          "rows": [{"crop_workers": w, "samples_per_s": round(r, 1), "loader_thread_cpu_ms_per_sample": round(ms, 3)}
                   for w, r, ms in rows], "ok": True})


def step_crop() -> None:
    """The loader's crop choice for a 16-sample batch (1024² alphas, crop 512) as `pipeline.loader` runs it: on the
    CPU (one torch thread), its crop-sized results then copied up on a stream of their own. Timed idle and right after
    a training-sized burst of work was queued on the main stream (the host time should not grow: nothing waits for
    the burst); beside it, the same choice made on the GPU on its own stream (the placement it replaced)."""
    torch = need_cuda()
    from pipeline.crop import crop_from_alpha  # plain torch: the pipeline package loads DALI only when asked to
    from pipeline.crop_step import single_torch_thread

    alphas = _soft_alphas(torch, 16, 0)
    alphas_gpu = alphas.cuda()
    copy_stream = torch.cuda.Stream()

    def on_cpu() -> None:
        g = torch.Generator().manual_seed(1)
        with single_torch_thread(alphas.device):
            outs = [crop_from_alpha(alphas[j], 1 + 2 * j, 29 - j, 512, 10, g) for j in range(alphas.shape[0])]
        with torch.cuda.stream(copy_stream):
            a = torch.stack([w.apply(alphas[j], 512) for j, (w, _) in enumerate(outs)]).float().div_(255)
            t = torch.stack([tri for _, tri in outs])
            a.pin_memory().cuda(non_blocking=True), t.pin_memory().cuda(non_blocking=True)
        copy_stream.synchronize()

    def on_gpu() -> None:
        g = torch.Generator().manual_seed(1)
        with torch.cuda.stream(copy_stream):
            for j in range(alphas_gpu.shape[0]):
                crop_from_alpha(alphas_gpu[j], 1 + 2 * j, 29 - j, 512, 10, g)
        copy_stream.synchronize()

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)

    def host_ms(fn, burst: bool) -> float:
        torch.cuda.synchronize()
        if burst:
            for _ in range(100):  # ≈ 0.1 s of matrix work queued on the main stream, like a training step
                a @ a
        t0 = time.perf_counter()
        fn()
        host = (time.perf_counter() - t0) * 1e3
        torch.cuda.synchronize()
        return host

    out = {}
    for name, fn in (("cpu", on_cpu), ("gpu", on_gpu)):
        for burst in (False, True):
            host_ms(fn, burst)
            out[f"{name}_{'after_burst' if burst else 'idle'}_host_ms"] = round(
                sorted(host_ms(fn, burst) for _ in range(3))[1], 2)
    emit({**out, "ok": True})


def step_compile() -> None:
    """Eager vs torch.compile (default, reduce-overhead) training steps at 16 × 512² bf16, fused Adam, with Dynamo's
    graph-break / recompile counts and Inductor's CUDA-graph skips."""
    torch = need_cuda()
    import torch._dynamo
    from torch._dynamo.utils import counters

    from benchmarks.bench_step import Stepper
    from model.net import A2UMatting

    mode = os.environ.get("GPU_CHECK_COMPILE_MODES", "default,reduce-overhead").split(",")
    torch.manual_seed(0)
    base = A2UMatting()
    inputs, target = _synthetic_batch(16, 512, torch.device("cuda"))
    rows = []
    eager = Stepper(base, torch.device("cuda"), "bf16", False, False)
    rows.append({"mode": "eager", "ms_per_step": round(cuda_ms(lambda: eager.step(inputs, target), 10, 3), 2)})
    print(json.dumps(rows[-1]), flush=True)
    del eager
    for m in mode:
        torch._dynamo.reset()
        counters.clear()
        stepper = Stepper(base, torch.device("cuda"), "bf16", False, False)
        stepper.fwd = torch.compile(stepper.net, mode=m)
        t0 = time.perf_counter()
        try:
            stepper.step(inputs, target)
            torch.cuda.synchronize()
            first = time.perf_counter() - t0
            ms = cuda_ms(lambda: stepper.step(inputs, target), 10, 3)
            row = {"mode": m, "compile_and_first_step_s": round(first, 1), "ms_per_step": round(ms, 2),
                   "images_per_s": round(16 / ms * 1e3, 1)}
        except Exception as exc:  # noqa: BLE001
            row = {"mode": m, "error": f"{type(exc).__name__}: {exc}"[:400]}
        row["graph_breaks"] = dict(counters["graph_break"])
        row["unique_graphs"] = counters["stats"].get("unique_graphs", 0)
        row["recompiles"] = {k: v for k, v in counters["recompiles"].items()} if "recompiles" in counters else {}
        row["cudagraph_skips"] = dict(counters["inductor"]).get("cudagraph_skips", 0)
        rows.append(row)
        print(json.dumps(row, default=str), flush=True)
        del stepper
        torch.cuda.empty_cache()
    emit({"rows": rows, "ok": all("error" not in r for r in rows)})


# name, function, time limit (s); in the order of failures found per second
STEPS: list[tuple[str, Callable[[], None], int]] = [
    ("env", step_env, 90),
    ("resume", step_resume, 120),
    ("ddp", step_ddp, 90),
    ("fused_tests", step_fused_tests, 180),
    ("gpu_tests", step_gpu_tests, 120),
    ("predict", step_predict, 120),
    ("ops_bench", step_ops_bench, 190),
    ("train_bench", step_train_bench, 210),
    ("profile", step_profile, 90),
    ("tiles", step_tiles, 180),
    ("crop", step_crop, 60),
    ("crop_workers", step_crop_workers, 90),
    ("compile", step_compile, 300),
]


# ------------------------------------------------------------------------------------------------ driver
def run_step_in_child(name: str, limit: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.run([sys.executable, __file__, "--step", name], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=limit, env=env)
        out, code, status = proc.stdout + proc.stderr, proc.returncode, None
    except subprocess.TimeoutExpired as exc:
        out = ((exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or "")
        out += ((exc.stderr or b"").decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or "")
        code, status = None, f"timed out after {limit:.0f} s"
    record: dict[str, Any] = {"step": name, "seconds": round(time.perf_counter() - t0, 1)}
    results = [ln[len(RESULT_TAG):] for ln in out.splitlines() if ln.startswith(RESULT_TAG)]
    skips = [ln[len(SKIP_TAG):] for ln in out.splitlines() if ln.startswith(SKIP_TAG)]
    if results:
        record["result"] = json.loads(results[-1])
    if skips:
        record["status"] = "skipped: " + skips[-1]
    elif status:
        record["status"] = "failed: " + status
    elif code != 0:
        tail = [ln for ln in out.strip().splitlines() if ln.strip()][-3:]
        record["status"] = f"failed: exit {code}: " + " | ".join(tail)[:500]
    elif record.get("result", {}).get("ok", True) is False:
        record["status"] = "failed: see result"
    else:
        record["status"] = "passed"
    record["output"] = out
    return record


def markdown(records: list[dict[str, Any]], header: str) -> str:
    lines = [header, "", "| step | status | seconds | result |", "|---|---|---|---|"]
    for r in records:
        result = json.dumps(r.get("result", {}), default=str)
        lines.append(f"| {r['step']} | {r['status']} | {r['seconds']} | {result[:1500]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out")
    parser.add_argument("--deadline", type=float, default=420.0, help="seconds for the whole check")
    parser.add_argument("--only", nargs="+", choices=[s[0] for s in STEPS], help="run only these steps")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        dict((n, f) for n, f, _ in STEPS)[args.step]()
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_end = time.monotonic() + args.deadline
    records = []
    header = (f"# gpu_check {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, "
              f"python {platform.python_version()}")
    with open(out / "log.txt", "w") as log:
        for name, _, limit in STEPS:
            if args.only and name not in args.only:
                continue
            left = t_end - time.monotonic()
            if left < 5:
                record = {"step": name, "seconds": 0, "status": "skipped: out of time (--deadline)"}
            else:
                record = run_step_in_child(name, min(limit, left))
            log.write(f"\n===== {name}: {record['status']} ({record['seconds']} s)\n{record.pop('output', '')}\n")
            log.flush()
            records.append(record)
            print(f"{name}: {record['status']} ({record['seconds']} s) {json.dumps(record.get('result', {}))[:400]}",
                  flush=True)
            (out / "summary.json").write_text(json.dumps({"header": header, "steps": records}, indent=1,
                                                         default=str))
            (out / "summary.md").write_text(markdown(records, header))
    failed = [r["step"] for r in records if r["status"].startswith("failed")]
    print(f"gpu_check: {len(records) - len(failed)} of {len(records)} steps passed or skipped; failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
