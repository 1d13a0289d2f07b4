"""Fused Triton A2U reassembly kernels against the reference (`model.ops`) and naive loops of docs/model.md §2.

Without a GPU the kernels run in Triton's CPU interpreter (`TRITON_INTERPRET=1`, set below before anything imports
the kernels); with a GPU the same tests run on CUDA with compiled kernels. Shapes are tiny so the interpreter is quick.
"""
from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # must precede the first import of model.triton_kernels

pytest.importorskip("triton")

from model import fused_ops  # noqa: E402
from model.fused_ops import fused_downsample, fused_upsample  # noqa: E402
from model.ops import a2u_downsample, a2u_upsample, reference_downsample, reference_upsample  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


# ------------------------------------------------------------------------------------------------ naive formulas
def naive_upsample(x: torch.Tensor, m: torch.Tensor, k: int, groups: int, r: int) -> torch.Tensor:
    """§2.1 written as loops over output pixels and taps (vectorised over batch and the group's channels)."""
    n, c, h, w = x.shape
    radius, cg = (k - 1) // 2, c // groups
    out = x.new_zeros(n, c, h * r, w * r)
    for big_y in range(h * r):
        for big_x in range(w * r):
            for i in range(2 * radius + 1):
                for j in range(2 * radius + 1):
                    py, px = big_y // r + i - radius, big_x // r + j - radius
                    if 0 <= py < h and 0 <= px < w:
                        for g in range(groups):
                            sl = slice(g * cg, (g + 1) * cg)
                            out[:, sl, big_y, big_x] += m[:, g * k * k + i * k + j, big_y, big_x, None] * x[:, sl, py, px]
    return out


def naive_downsample(x: torch.Tensor, m: torch.Tensor, k: int, groups: int, r: int) -> torch.Tensor:
    """§2.2 written as loops over output pixels and taps."""
    n, c, big_h, big_w = x.shape
    offset, cg = ((k - 2) // 2 if k % 2 == 0 else (k - 1) // 2), c // groups
    out = x.new_zeros(n, c, big_h // r, big_w // r)
    for y in range(big_h // r):
        for xx in range(big_w // r):
            for i in range(k):
                for j in range(k):
                    py, px = r * y + i - offset, r * xx + j - offset
                    if 0 <= py < big_h and 0 <= px < big_w:
                        for g in range(groups):
                            sl = slice(g * cg, (g + 1) * cg)
                            out[:, sl, y, xx] += m[:, g * k * k + i * k + j, y, xx, None] * x[:, sl, py, px]
    return out


def _inputs(shape_x, shape_m, dtype=torch.float32, seed=0, device=DEVICE):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape_x, generator=gen, dtype=torch.float64)
    m = torch.randn(shape_m, generator=gen, dtype=torch.float64)
    return x.to(device, dtype), m.to(device, dtype)


def _run(op, x, m, k, groups, r, upstream):
    """Output and both gradients of `op` for fresh leaves copied from (x, m)."""
    xl, ml = x.clone().requires_grad_(), m.clone().requires_grad_()
    out = op(xl, ml, k, groups, r)
    gx, gm = torch.autograd.grad(out, (xl, ml), upstream.to(out.dtype))
    return out.detach(), gx, gm


# (n, c, h, w, k, groups, r): borders everywhere, maps smaller than the kernel, G = 1/2, r = 2/3
UP_CASES = [
    (2, 4, 4, 3, 3, 1, 2),
    (1, 4, 3, 3, 3, 2, 2),
    (1, 4, 2, 3, 3, 2, 3),    # scale 3
    (1, 2, 1, 2, 3, 1, 2),    # map smaller than the kernel
    (1, 4, 2, 2, 5, 2, 2),    # 2×2 map, 5×5 kernel
    (1, 3, 2, 3, 1, 1, 2),    # k = 1, odd channel count
]
DOWN_CASES = [
    (2, 4, 6, 8, 6, 1, 2),
    (1, 4, 6, 4, 6, 2, 2),
    (1, 4, 6, 9, 6, 2, 3),    # scale 3
    (1, 2, 2, 4, 6, 1, 2),    # map smaller than the kernel
    (1, 3, 4, 4, 4, 1, 2),    # k = 4, odd channel count
    (1, 2, 4, 6, 3, 1, 2),    # odd k (centred window)
]


def _up_shapes(n, c, h, w, k, groups, r):
    return (n, c, h, w), (n, groups * k * k, h * r, w * r)


def _down_shapes(n, c, big_h, big_w, k, groups, r):
    return (n, c, big_h, big_w), (n, groups * k * k, big_h // r, big_w // r)


@pytest.mark.parametrize("case", UP_CASES, ids=str)
def test_upsample_fp64_equals_naive_and_reference(case):
    n, c, h, w, k, groups, r = case
    x, m = _inputs(*_up_shapes(*case), dtype=torch.float64, seed=sum(case))
    upstream = torch.randn((n, c, h * r, w * r), dtype=torch.float64, device=DEVICE)
    fused = _run(fused_upsample, x, m, k, groups, r, upstream)
    for other in (naive_upsample, reference_upsample):
        expected = _run(other, x, m, k, groups, r, upstream)
        for got, want in zip(fused, expected):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", DOWN_CASES, ids=str)
def test_downsample_fp64_equals_naive_and_reference(case):
    n, c, big_h, big_w, k, groups, r = case
    x, m = _inputs(*_down_shapes(*case), dtype=torch.float64, seed=sum(case))
    upstream = torch.randn((n, c, big_h // r, big_w // r), dtype=torch.float64, device=DEVICE)
    fused = _run(fused_downsample, x, m, k, groups, r, upstream)
    for other in (naive_downsample, reference_downsample):
        expected = _run(other, x, m, k, groups, r, upstream)
        for got, want in zip(fused, expected):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(DEVICE == "cuda", reason="on a GPU benchmarks/bench_tiles.py compares every tile with the default "
                    "tile at the training shapes (compiling them here too would double the check's compile time)")
@pytest.mark.parametrize("i", range(max(len(fused_ops.CHANNEL_TILES), len(fused_ops.TAP_TILES))))
def test_every_swept_launch_tile_gives_the_reference_result(i):
    """The tiles a GPU tile sweep may pick (partial channel blocks, several pixel blocks per map, 2–8 warps) give
    the reference's numbers: a tile changes which program owns an element, never its sum."""
    ct = fused_ops.CHANNEL_TILES[i % len(fused_ops.CHANNEL_TILES)]
    tt = fused_ops.TAP_TILES[i % len(fused_ops.TAP_TILES)]
    tiles = {name: (tt if name.endswith("grad_m") else ct) for name in fused_ops.KERNELS}
    for op, ref, shapes, case in ((fused_upsample, reference_upsample, _up_shapes, (2, 20, 9, 11, 3, 1, 2)),
                                  (fused_downsample, reference_downsample, _down_shapes, (2, 20, 18, 22, 6, 1, 2))):
        x, m = _inputs(*shapes(*case), dtype=torch.float64, seed=i)
        r = case[-1]
        out_shape = shapes(*case)[1][:1] + (case[1],) + shapes(*case)[1][2:]
        upstream = torch.randn(out_shape, dtype=torch.float64, device=DEVICE)
        with fused_ops.launch_tiles(tiles):
            got = _run(op, x, m, case[4], case[5], r, upstream)
        want = _run(ref, x, m, case[4], case[5], r, upstream)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


def test_launch_tiles_names_unknown_kernels_and_restores_the_defaults():
    with pytest.raises(ValueError, match="up_forward"):
        with fused_ops.launch_tiles({"up_forward": fused_ops.LaunchTile(8, 64)}):
            pass
    with fused_ops.launch_tiles({"up_fwd": fused_ops.LaunchTile(8, 128, 8)}):
        assert fused_ops._tile(64, "up_fwd") == (8, 128, 8, 8)
        assert fused_ops._tile(64, "down_fwd") == (16, 64, 4, 4)
    assert fused_ops._tile(64, "up_fwd") == (16, 64, 4, 4)
    assert fused_ops._tile_m(6, "down_grad_m") == (64, 64, 4)


# fp32 accumulates in fp32 like the reference; bf16/fp16 are read in their dtype and accumulated in fp32, so the
# fused result is at least as close to float64 truth as the reference's (which also accumulates in fp32).
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2), (torch.float16, 2e-3)],
                         ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("op,ref,shapes,case", [
    (fused_upsample, reference_upsample, _up_shapes, (2, 8, 5, 4, 3, 2, 2)),
    (fused_downsample, reference_downsample, _down_shapes, (2, 8, 8, 6, 6, 2, 2)),
], ids=["up", "down"])
def test_low_precision_within_tolerance(op, ref, shapes, case, dtype, tol):
    n, c, _, _, k, groups, r = case
    x64, m64 = _inputs(*shapes(*case), dtype=torch.float64, seed=3)
    m64 = m64.abs() / 4  # kernel-like weights (positive, ~sum-to-one scale) so the relative check is meaningful
    truth_out = ref(x64, m64, k, groups, r)
    upstream = torch.randn(truth_out.shape, dtype=torch.float64, device=DEVICE)
    truth = _run(ref, x64, m64, k, groups, r, upstream)
    x, m = x64.to(dtype), m64.to(dtype)
    got = _run(op, x, m, k, groups, r, upstream.to(dtype))
    reference = _run(ref, x, m, k, groups, r, upstream.to(dtype))
    # Triton's CPU interpreter converts fp32 → bf16 by truncation (compiled kernels round to nearest even), which
    # doubles the final rounding error; allow for that only there.
    slack = 3.0 if (dtype == torch.bfloat16 and DEVICE == "cpu") else 1.5
    for g, want, theirs in zip(got, truth, reference):
        assert g.dtype == dtype
        assert torch.isfinite(g).all()
        err = ((g.double() - want).norm() / want.norm()).item()
        ref_err = ((theirs.double() - want).norm() / want.norm()).item()
        assert err <= tol, f"relative error {err:.3g} > {tol}"
        assert err <= slack * ref_err + 1e-7, f"fused error {err:.3g} worse than reference {ref_err:.3g}"


@pytest.mark.parametrize("which", ["up", "down"])
def test_nan_propagates_like_the_reference(which):
    """A NaN in the input must reach exactly the outputs (and gradients) that read it: NaN never passes silently."""
    if which == "up":
        case, op, ref, shapes = (1, 2, 4, 4, 3, 1, 2), fused_upsample, reference_upsample, _up_shapes
    else:
        case, op, ref, shapes = (1, 2, 8, 8, 6, 1, 2), fused_downsample, reference_downsample, _down_shapes
    n, c, _, _, k, groups, r = case
    x, m = _inputs(*shapes(*case), seed=5)
    x[0, 1, 2, 1] = float("nan")
    m[0, 3, 1, 2] = float("nan")
    out = op(x, m, k, groups, r)
    want = ref(x, m, k, groups, r)
    assert torch.isnan(out).any()
    assert torch.equal(torch.isnan(out), torch.isnan(want))
    finite = ~torch.isnan(want)
    torch.testing.assert_close(out[finite], want[finite], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("which", ["up", "down"])
def test_backward_is_bitwise_deterministic(which):
    if which == "up":
        case, op, shapes = (2, 16, 6, 5, 3, 1, 2), fused_upsample, _up_shapes
    else:
        case, op, shapes = (2, 16, 10, 8, 6, 1, 2), fused_downsample, _down_shapes
    n, c, _, _, k, groups, r = case
    x, m = _inputs(*shapes(*case), seed=7)
    upstream = torch.randn_like(op(x, m, k, groups, r))
    first = _run(op, x, m, k, groups, r, upstream)
    second = _run(op, x, m, k, groups, r, upstream)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_gradient_of_one_argument_only():
    x, m = _inputs((1, 4, 3, 3), (1, 9, 6, 6), seed=9)
    ml = m.clone().requires_grad_()
    out = fused_upsample(x, ml, 3, 1, 2)
    (gm,) = torch.autograd.grad(out.sum(), (ml,))
    xl = x.clone().requires_grad_()
    (gx,) = torch.autograd.grad(fused_upsample(xl, m, 3, 1, 2).sum(), (xl,))
    _, want_gx, want_gm = _run(reference_upsample, x, m, 3, 1, 2, torch.ones_like(out))
    torch.testing.assert_close(gm, want_gm, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx, want_gx, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("which", ["up", "down"])
def test_strided_inputs_are_read_in_place(which):
    """channels_last features/kernels, a sliced (non-contiguous) map and an expanded (stride-0) upstream gradient
    give the reference's numbers; channels_last outputs and gradients stay channels_last (no layout round trip)."""
    if which == "up":
        case, op, ref, shapes = (2, 4, 3, 4, 3, 1, 2), fused_upsample, reference_upsample, _up_shapes
    else:
        case, op, ref, shapes = (2, 4, 6, 8, 6, 1, 2), fused_downsample, reference_downsample, _down_shapes
    n, c, _, _, k, groups, r = case
    x, m = _inputs(*shapes(*case), seed=12)
    cl = torch.channels_last
    xl = x.to(memory_format=cl).requires_grad_()
    ml = m.to(memory_format=cl).requires_grad_()
    out = op(xl, ml, k, groups, r)
    assert out.is_contiguous(memory_format=cl)
    upstream = torch.randn(out.shape[1:], device=DEVICE).expand_as(out)  # stride 0 over the batch
    out.backward(upstream)
    assert xl.grad.is_contiguous(memory_format=cl) and ml.grad.is_contiguous(memory_format=cl)
    want = _run(ref, x, m, k, groups, r, upstream.contiguous())
    for got, exp in zip((out.detach(), xl.grad, ml.grad), want):
        torch.testing.assert_close(got, exp, rtol=1e-5, atol=1e-5)
    wide = torch.randn(n, 2 * c, *x.shape[2:], device=DEVICE)[:, ::2]  # channel stride 2
    torch.testing.assert_close(op(wide, m, k, groups, r), ref(wide.contiguous(), m, k, groups, r))


def test_mixed_dtype_inputs():
    """fp32 kernels with bf16 features (the layout autocast produces): output in the features' dtype. The kernels
    read the mix as it is; the public checks allow it only inside autocast (test_public_ops_accept_...)."""
    x, m = _inputs((1, 4, 4, 4), (1, 9, 8, 8), seed=11)
    xb = x.to(torch.bfloat16)
    out = fused_ops.fused_up_unchecked(xb, m, 3, 1, 2)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference_upsample(xb.float(), m, 3, 1, 2), rtol=1e-2, atol=1e-2)


def test_autocast_casts_features_not_kernels():
    x, m = _inputs((1, 4, 8, 8), (1, 36, 4, 4), seed=13)
    xl, ml = x.clone().requires_grad_(), m.clone().requires_grad_()
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        out = fused_downsample(xl, ml, 6, 1, 2)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert xl.grad.dtype == torch.float32 and ml.grad.dtype == torch.float32
    want = reference_downsample(x.to(torch.bfloat16).float(), m, 6, 1, 2)
    torch.testing.assert_close(out.float(), want, rtol=1e-2, atol=1e-2)


def test_opcheck_custom_ops():
    """torch.library.opcheck: schema, autograd registration, fake tensors and AOT dispatch (dynamic shapes)."""
    x, m = _inputs((1, 2, 3, 2), (1, 9, 6, 4), seed=15)
    torch.library.opcheck(fused_ops.upsample_op, (x.requires_grad_(), m.requires_grad_(), 3, 1, 2))
    x, m = _inputs((1, 2, 4, 4), (1, 36, 2, 2), seed=16)
    torch.library.opcheck(fused_ops.downsample_op, (x.requires_grad_(), m.requires_grad_(), 6, 1, 2))


def test_torch_compile_traces_through_the_op():
    backend = "inductor" if DEVICE == "cuda" else "aot_eager"  # no C++ codegen for CPU tensors in interpreter tests

    def step(x, m):
        return (fused_upsample(x * 2, m, 3, 1, 2) + 1).square().sum()

    compiled = torch.compile(step, backend=backend, fullgraph=True)
    x, m = _inputs((1, 4, 3, 4), (1, 9, 6, 8), seed=17)
    xl, ml = x.clone().requires_grad_(), m.clone().requires_grad_()
    loss = compiled(xl, ml)
    loss.backward()
    xr, mr = x.clone().requires_grad_(), m.clone().requires_grad_()
    want = step(xr, mr)
    want.backward()
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(xl.grad, xr.grad)
    torch.testing.assert_close(ml.grad, mr.grad)


def test_backend_selection(monkeypatch):
    x, m = _inputs((1, 4, 3, 3), (1, 9, 6, 6), seed=19)
    calls: list[str] = []

    def spy(name, fn):
        def wrapped(*args):
            calls.append(name)
            return fn(*args)
        return wrapped

    monkeypatch.setattr(fused_ops, "fused_up_unchecked", spy("up", fused_ops.fused_up_unchecked))
    monkeypatch.setattr(fused_ops, "fused_down_unchecked", spy("down", fused_ops.fused_down_unchecked))
    xd, md = _inputs((1, 4, 6, 6), (1, 36, 3, 3), seed=20)
    monkeypatch.setenv(fused_ops.BACKEND_ENV, "fused")
    assert fused_ops.select_backend(x) == "fused"
    torch.testing.assert_close(a2u_upsample(x, m, 3), reference_upsample(x, m, 3))
    torch.testing.assert_close(a2u_downsample(xd, md, 6), reference_downsample(xd, md, 6))
    assert calls == ["up", "down"]
    monkeypatch.setenv(fused_ops.BACKEND_ENV, "reference")
    assert fused_ops.select_backend(x) == "reference"
    a2u_upsample(x, m, 3)
    assert calls == ["up", "down"]
    monkeypatch.setenv(fused_ops.BACKEND_ENV, "auto")
    assert fused_ops.select_backend(x) == ("fused" if DEVICE == "cuda" else "reference")
    monkeypatch.setenv(fused_ops.BACKEND_ENV, "sometimes")
    with pytest.raises(ValueError, match="A2U_OPS_BACKEND"):
        fused_ops.select_backend(x)


@pytest.mark.parametrize("call,match", [
    (lambda: fused_upsample(torch.zeros(1, 3, 2, 2), torch.zeros(1, 18, 4, 4), 3, 2), "does not divide"),
    (lambda: fused_upsample(torch.zeros(1, 2, 2, 2), torch.zeros(1, 9, 3, 4), 3), "kernel map is 3×4"),
    (lambda: fused_downsample(torch.zeros(1, 2, 5, 4), torch.zeros(1, 36, 2, 2), 6), "not divisible by scale"),
    (lambda: fused_downsample(torch.zeros(1, 2, 4, 4), torch.zeros(1, 35, 2, 2), 6), "groups·k²"),
    (lambda: fused_upsample(torch.zeros(1, 2, 2, 2, dtype=torch.int64), torch.zeros(1, 9, 4, 4), 3), "floating"),
])
def test_bad_arguments_raise(call, match):
    """The fused entry points check their arguments with model.ops' checks: same errors, same types."""
    with pytest.raises(ValueError, match=match):
        call()


def test_every_launch_runs_under_the_features_device(monkeypatch):
    """Triton launches on the current GPU: each fused op (forward and backward) makes the tensors' GPU current."""
    seen = []

    class Guard:
        def __init__(self, device):
            seen.append(device)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(torch.cuda, "device", Guard)
    with fused_ops._on_device_of(torch.empty(0, device="meta").as_strided((0,), (1,))):
        pass
    assert seen == []  # not a CUDA tensor: nothing to switch
    fake_cuda = type("T", (), {"device": torch.device("cuda", 1)})()
    with fused_ops._on_device_of(fake_cuda):
        pass
    assert seen == [torch.device("cuda", 1)]
    devices = []
    original = fused_ops._on_device_of
    monkeypatch.setattr(fused_ops, "_on_device_of", lambda t: devices.append(t.device) or original(t))
    x, m = _inputs((1, 2, 3, 3), (1, 9, 6, 6))
    fused_upsample(x.requires_grad_(), m.requires_grad_(), 3).sum().backward()
    xd, md = _inputs((1, 2, 4, 4), (1, 36, 2, 2))
    fused_downsample(xd.requires_grad_(), md.requires_grad_(), 6).sum().backward()
    assert devices == [x.device] * 4


# ------------------------------------------------------------------------------------------------ GPU only
@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)], ids=["fp32", "bf16"])
def test_gpu_training_shapes_match_reference(dtype, tol):
    """Compiled kernels at (scaled-down) training shapes: fused vs reference, forward and both gradients."""
    for op, ref, xs, ms, k in [
        (fused_upsample, reference_upsample, (2, 64, 32, 40), (2, 9, 64, 80), 3),
        (fused_downsample, reference_downsample, (2, 64, 64, 80), (2, 36, 32, 40), 6),
    ]:
        x64, m64 = _inputs(xs, ms, dtype=torch.float64, seed=21, device="cuda")
        m64 = m64.abs() / (k * k)
        upstream = torch.randn(ref(x64, m64, k, 1, 2).shape, dtype=torch.float64, device="cuda")
        truth = _run(ref, x64, m64, k, 1, 2, upstream)
        got = _run(op, x64.to(dtype), m64.to(dtype), k, 1, 2, upstream.to(dtype))
        for g, want in zip(got, truth):
            err = ((g.double() - want).norm() / want.norm()).item()
            assert err <= tol, f"{op.__name__} {dtype}: relative error {err:.3g}"


@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_public_ops_accept_the_autocast_dtype_mix(monkeypatch, backend):
    """Inside autocast, bf16 features with fp32 kernels (what CUDA autocast produces in the net: convs in bf16,
    GroupNorm/softmax in fp32) pass `model.ops` on both backends; gradients come back in each input's dtype.
    Outside autocast the mix is still rejected (model/ops.py keeps that check)."""
    monkeypatch.setenv(fused_ops.BACKEND_ENV, backend)
    for op, ref, xs, ms, k in [(a2u_upsample, reference_upsample, (1, 4, 3, 4), (1, 9, 6, 8), 3),
                               (a2u_downsample, reference_downsample, (1, 4, 6, 8), (1, 36, 3, 4), 6)]:
        x, m = _inputs(xs, ms, seed=25)
        xb = x.to(torch.bfloat16).requires_grad_()
        mf = m.clone().requires_grad_()
        with pytest.raises(ValueError, match="dtype"):
            op(xb, mf, k)
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            out = op(xb, mf, k)
        assert out.dtype == torch.bfloat16
        out.float().sum().backward()
        assert xb.grad.dtype == torch.bfloat16 and mf.grad.dtype == torch.float32
        want = ref(xb.detach().float(), m, k)
        torch.testing.assert_close(out.float(), want, rtol=2e-2, atol=2e-2)


def test_whole_net_with_fused_ops_equals_reference(monkeypatch):
    """A2UMatting forward + backward with every A2U op on the fused path equals the reference path (eval mode)."""
    from model.net import A2UMatting

    torch.manual_seed(27)
    net = A2UMatting().to(DEVICE).eval()
    x = torch.randn(1, 4, 16, 32, device=DEVICE)
    results = {}
    for backend in ("reference", "fused"):
        monkeypatch.setenv(fused_ops.BACKEND_ENV, backend)
        net.zero_grad(set_to_none=True)
        out = net(x)
        out.square().mean().backward()
        grads = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
        results[backend] = (out.detach(), grads)
    for got, want in zip(results["fused"], results["reference"]):
        assert torch.isfinite(got).all()
        assert ((got - want).norm() / want.norm()).item() < 1e-4


# ------------------------------------------------------------------------------------------------ compiled mode, no GPU
_AOT_SCRIPT = r'''
import os, sys
sys.path.insert(0, sys.argv[1])
os.environ.pop("TRITON_INTERPRET", None)
os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"
import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from model import fused_ops
from model.triton_kernels import reassembly as R

bc, bp, _, warps = fused_ops._tile(64, "up_fwd")
k2p_up, bp_up, _ = fused_ops._tile_m(3, "up_grad_m")
k2p_dn, bp_dn, _ = fused_ops._tile_m(6, "down_grad_m")
acc = tl.float32
cases = [
    (R.up_fwd_kernel, ("x_ptr", "m_ptr", "out_ptr"), dict(K=3, NT=3, R=1, S=2, BLOCK_C=bc, BLOCK_P=bp)),
    (R.up_grad_x_kernel, ("go_ptr", "m_ptr", "gx_ptr"), dict(K=3, NT=3, R=1, S=2, BLOCK_C=bc, BLOCK_P=bp)),
    (R.up_grad_m_kernel, ("x_ptr", "go_ptr", "gm_ptr"), dict(K=3, NT=3, R=1, S=2, K2P=k2p_up, BLOCK_P=bp_up)),
    (R.down_fwd_kernel, ("x_ptr", "m_ptr", "out_ptr"), dict(K=6, PAD=2, S=2, BLOCK_C=bc, BLOCK_P=bp)),
    (R.down_grad_x_kernel, ("go_ptr", "m_ptr", "gx_ptr"), dict(K=6, PAD=2, S=2, KS=3, BLOCK_C=bc, BLOCK_P=bp)),
    (R.down_grad_m_kernel, ("x_ptr", "go_ptr", "gm_ptr"), dict(K=6, PAD=2, S=2, K2P=k2p_dn, BLOCK_P=bp_dn)),
]
for fn, ptrs, consts in cases:
    consts = dict(consts, ACC=acc)
    names = fn.arg_names
    sig = {}
    for name in names:
        if name in consts:
            sig[name] = "constexpr"
        elif name in ptrs:
            sig[name] = "*fp32" if name.startswith("m") or name.startswith("gm") else "*bf16"
        else:
            sig[name] = "i64" if name in ("sxn", "smn", "son", "sgn") else "i32"
    src = ASTSource(fn=fn, signature=sig, constexprs={(names.index(k),): v for k, v in consts.items()})
    print("KERNEL", fn.__name__, flush=True)
    triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
    sys.stdout.flush()
'''


@pytest.mark.skipif(DEVICE == "cuda", reason="the CUDA run compiles and runs the kernels for real")
def test_kernels_compile_for_sm90_without_spills(tmp_path):
    """Compile every kernel at its launch tile for sm_90 (Triton + bundled ptxas, no GPU needed): catches errors
    the interpreter tolerates, and register spills (which made an earlier 64×64 unrolled tiling slow)."""
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, TRITON_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("TRITON_INTERPRET", None)
    repo = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run([sys.executable, "-c", _AOT_SCRIPT, repo], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout
    assert log.count("KERNEL") == 6
    spills = [line for line in log.splitlines() if "spill" in line]
    assert len(spills) == 6, log[-3000:]
    assert all(" 0 bytes spill stores, 0 bytes spill loads" in line for line in spills), "\n".join(spills)
