"""A2U reassembly operators against scalar-loop transcriptions of docs/model.md §2.1/§2.2."""
from __future__ import annotations

import itertools

import pytest
import torch

from model import ops
from model.ops import (_down_forward, _up_forward, a2u_downsample, a2u_upsample, downsample_offset,
                       reference_downsample, reference_upsample)
from model.phase_ops import phase_downsample, phase_upsample


@pytest.fixture(autouse=True, params=["tap-loop", "unfold"])
def formulation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs once per CPU formulation: the tap loop, and the unfold form that tiny maps take on CPU."""
    limit = 0 if request.param == "tap-loop" else 1 << 30
    monkeypatch.setattr(ops, "SMALL_MAP_PIXELS", {"upsample": limit, "downsample": limit})
    return request.param


# ----------------------------------------------------------------------------------------------------------------
# naive transcriptions of the formulas (one Python loop per index; tiny sizes only)
# ----------------------------------------------------------------------------------------------------------------

def naive_upsample(x: torch.Tensor, mask: torch.Tensor, k: int, groups: int, r: int) -> torch.Tensor:
    n, c, h, w = x.shape
    radius = (k - 1) // 2
    cg = c // groups
    out = torch.zeros(n, c, h * r, w * r, dtype=x.dtype)
    for b, ch, big_y, big_x in itertools.product(range(n), range(c), range(h * r), range(w * r)):
        g = ch // cg
        total = x.new_zeros(())
        for i in range(2 * radius + 1):
            for j in range(2 * radius + 1):
                py, px = big_y // r + i - radius, big_x // r + j - radius
                if 0 <= py < h and 0 <= px < w:
                    total = total + mask[b, g * k * k + i * k + j, big_y, big_x] * x[b, ch, py, px]
        out[b, ch, big_y, big_x] = total
    return out


def naive_downsample(x: torch.Tensor, mask: torch.Tensor, k: int, groups: int, r: int) -> torch.Tensor:
    n, c, big_h, big_w = x.shape
    h, w = big_h // r, big_w // r
    offset = (k - 2) // 2 if k % 2 == 0 else (k - 1) // 2
    cg = c // groups
    out = torch.zeros(n, c, h, w, dtype=x.dtype)
    for b, ch, y, xx in itertools.product(range(n), range(c), range(h), range(w)):
        g = ch // cg
        total = x.new_zeros(())
        for i in range(k):
            for j in range(k):
                py, px = r * y + i - offset, r * xx + j - offset
                if 0 <= py < big_h and 0 <= px < big_w:
                    total = total + mask[b, g * k * k + i * k + j, y, xx] * x[b, ch, py, px]
        out[b, ch, y, xx] = total
    return out


def _inputs(shape_x, shape_m, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape_x, generator=gen, dtype=dtype)
    m = torch.randn(shape_m, generator=gen, dtype=dtype)
    return x, m


def _compare_with_grads(op, naive, x, m, k, groups, r):
    x1, m1 = x.clone().requires_grad_(), m.clone().requires_grad_()
    x2, m2 = x.clone().requires_grad_(), m.clone().requires_grad_()
    out1 = op(x1, m1, k, groups, r)
    out2 = naive(x2, m2, k, groups, r)
    torch.testing.assert_close(out1, out2, rtol=1e-12, atol=1e-12)
    upstream = torch.randn_like(out1)
    out1.backward(upstream)
    out2.backward(upstream)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m1.grad, m2.grad, rtol=1e-12, atol=1e-12)


# (n, c, h, w, k, groups, r): borders everywhere, maps smaller than the kernel, G = 1/2/4, r = 2/3
UP_CASES = [
    (1, 4, 3, 4, 3, 1, 2),
    (2, 4, 3, 3, 3, 2, 2),
    (1, 8, 2, 3, 3, 4, 2),
    (1, 4, 2, 2, 5, 2, 2),   # 2×2 map, 5×5 kernel
    (1, 2, 1, 1, 3, 1, 2),   # 1×1 map
    (1, 4, 2, 3, 3, 2, 3),   # scale 3
    (1, 2, 3, 2, 1, 1, 2),   # k = 1: pure nearest weighting
]
DOWN_CASES = [
    (1, 4, 6, 8, 6, 1, 2),
    (2, 4, 4, 4, 6, 2, 2),   # 4×4 map, 6×6 kernel
    (1, 8, 4, 6, 4, 4, 2),
    (1, 4, 6, 6, 2, 2, 3),   # scale 3
    (1, 2, 6, 3, 6, 1, 3),   # scale 3, 6-tap kernel wider than the block
    (1, 2, 4, 4, 3, 1, 2),   # odd k, centred window
    (1, 2, 2, 2, 6, 1, 2),   # 2×2 map
]


@pytest.mark.parametrize("n,c,h,w,k,groups,r", UP_CASES)
def test_upsample_matches_naive_formula(n, c, h, w, k, groups, r):
    x, m = _inputs((n, c, h, w), (n, groups * k * k, h * r, w * r))
    _compare_with_grads(a2u_upsample, naive_upsample, x, m, k, groups, r)


@pytest.mark.parametrize("n,c,big_h,big_w,k,groups,r", DOWN_CASES)
def test_downsample_matches_naive_formula(n, c, big_h, big_w, k, groups, r):
    x, m = _inputs((n, c, big_h, big_w), (n, groups * k * k, big_h // r, big_w // r))
    _compare_with_grads(a2u_downsample, naive_downsample, x, m, k, groups, r)


def test_gradcheck_both_operators():
    x, m = _inputs((1, 4, 3, 3), (1, 2 * 9, 6, 6))
    assert torch.autograd.gradcheck(lambda a, b: a2u_upsample(a, b, 3, 2, 2),
                                    (x.requires_grad_(), m.requires_grad_()))
    x, m = _inputs((1, 4, 6, 4), (1, 2 * 36, 3, 2))
    assert torch.autograd.gradcheck(lambda a, b: a2u_downsample(a, b, 6, 2, 2),
                                    (x.requires_grad_(), m.requires_grad_()))


def test_gradient_of_one_argument_only():
    x, m = _inputs((1, 2, 3, 3), (1, 9, 6, 6))
    x.requires_grad_()
    a2u_upsample(x, m, 3).sum().backward()
    expected = torch.autograd.grad(naive_upsample(x, m, 3, 1, 2).sum(), x)[0]
    torch.testing.assert_close(x.grad, expected)


def test_downsample_special_cases_equal_average_pooling():
    x = torch.randn(2, 3, 8, 6, dtype=torch.float64)
    quarter = torch.full((2, 4, 4, 3), 0.25, dtype=torch.float64)
    torch.testing.assert_close(a2u_downsample(x, quarter, 2), torch.nn.functional.avg_pool2d(x, 2))
    sixteenth = torch.full((2, 16, 4, 3), 1 / 16, dtype=torch.float64)
    pooled = torch.nn.functional.avg_pool2d(x, 4, stride=2, padding=1, count_include_pad=True)
    torch.testing.assert_close(a2u_downsample(x, sixteenth, 4), pooled)
    assert downsample_offset(6) == 2 and downsample_offset(5) == 2 and downsample_offset(2) == 0


def test_upsample_with_centre_kernel_is_nearest():
    x = torch.randn(1, 3, 4, 5)
    m = torch.zeros(1, 9, 8, 10)
    m[:, 4] = 1.0
    torch.testing.assert_close(a2u_upsample(x, m, 3), torch.nn.functional.interpolate(x, scale_factor=2))


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_low_precision_agrees_with_float64(dtype, tol):
    x, m = _inputs((2, 8, 6, 6), (2, 2 * 9, 12, 12))
    m = m.softmax(1)
    ref = a2u_upsample(x, m, 3, 2)
    xl, ml = x.to(dtype).requires_grad_(), m.to(dtype).requires_grad_()
    out = a2u_upsample(xl, ml, 3, 2)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)
    out.float().sum().backward()
    assert xl.grad.dtype == dtype and ml.grad.dtype == dtype
    xd, md = _inputs((2, 8, 12, 12), (2, 2 * 36, 6, 6))
    md = md.softmax(1)
    torch.testing.assert_close(a2u_downsample(xd.to(dtype), md.to(dtype), 6, 2).double(),
                               a2u_downsample(xd, md, 6, 2), rtol=tol, atol=tol)


def test_no_grad_path_equals_autograd_path(formulation: str):
    """Without a gradient the phase-split forward runs; it sums the taps in the tap loop's order (bit for bit),
    while the unfold form that tiny maps take with a gradient sums them in another (rounding only)."""
    exact = {"rtol": 0, "atol": 0} if formulation == "tap-loop" else {}
    x, m = _inputs((1, 4, 4, 4), (1, 9, 8, 8))
    with torch.no_grad():
        plain = reference_upsample(x, m, 3, 1, 2)
    tracked = reference_upsample(x.clone().requires_grad_(), m, 3, 1, 2)
    torch.testing.assert_close(plain, tracked.detach(), **exact)
    x, m = _inputs((1, 4, 8, 8), (1, 36, 4, 4))
    with torch.no_grad():
        plain = reference_downsample(x, m, 6, 1, 2)
    tracked = reference_downsample(x, m.clone().requires_grad_(), 6, 1, 2)
    torch.testing.assert_close(plain, tracked.detach(), **exact)


@pytest.mark.parametrize("case", UP_CASES[:4])
def test_phase_split_inference_form_equals_tap_loop(case):
    """The forward that no-grad CPU calls and exported graphs use (model/phase_ops.py) sums the same taps."""
    n, c, h, w, k, groups, r = case
    x, m = _inputs((n, c, h, w), (n, groups * k * k, h * r, w * r))
    torch.testing.assert_close(phase_upsample(x, m, k, groups, r), _up_forward(x, m, k, groups, r))
    n, c, big_h, big_w, k, groups, r = DOWN_CASES[UP_CASES.index(case)]
    x, m = _inputs((n, c, big_h, big_w), (n, groups * k * k, big_h // r, big_w // r))
    torch.testing.assert_close(phase_downsample(x, m, k, groups, r), _down_forward(x, m, k, groups, r))


def test_non_contiguous_inputs():
    x, m = _inputs((1, 4, 4, 3), (1, 9, 8, 6))
    x_nc, m_nc = x.transpose(2, 3), m.transpose(2, 3)
    torch.testing.assert_close(a2u_upsample(x_nc, m_nc, 3),
                               naive_upsample(x_nc.contiguous(), m_nc.contiguous(), 3, 1, 2))


@pytest.mark.parametrize("call,match", [
    (lambda: a2u_upsample(torch.zeros(4, 3, 3), torch.zeros(1, 9, 6, 6), 3), "4-D"),
    (lambda: a2u_upsample(torch.zeros(1, 4, 3, 3), torch.zeros(9, 6, 6), 3), "4-D"),
    (lambda: a2u_upsample(torch.zeros(1, 4, 3, 3), torch.zeros(1, 8, 6, 6), 3), "expected groups"),
    (lambda: a2u_upsample(torch.zeros(1, 4, 3, 3), torch.zeros(1, 9, 6, 5), 3), "kernel map"),
    (lambda: a2u_upsample(torch.zeros(1, 4, 3, 3), torch.zeros(1, 27, 6, 6), 3, groups=3), "does not divide"),
    (lambda: a2u_upsample(torch.zeros(1, 4, 3, 3), torch.zeros(1, 16, 6, 6), 4), "odd"),
    (lambda: a2u_upsample(torch.zeros(1, 4, 3, 3), torch.zeros(2, 9, 6, 6), 3), "batch"),
    (lambda: a2u_upsample(torch.zeros(1, 4, 3, 3), torch.zeros(1, 9, 6, 6, dtype=torch.float64), 3), "dtype"),
    (lambda: a2u_upsample(torch.zeros(1, 4, 3, 3, dtype=torch.long), torch.zeros(1, 9, 6, 6), 3), "floating"),
    (lambda: a2u_upsample(torch.zeros(1, 4, 3, 3), torch.zeros(1, 9, 6, 6), 3, scale=0), "scale"),
    (lambda: a2u_downsample(torch.zeros(1, 4, 7, 8), torch.zeros(1, 36, 3, 4), 6), "not divisible"),
    (lambda: a2u_downsample(torch.zeros(1, 4, 8, 8), torch.zeros(1, 36, 4, 3), 6), "kernel map"),
    (lambda: a2u_downsample(torch.zeros(1, 4, 8, 8), torch.zeros(1, 35, 4, 4), 6), "expected groups"),
    (lambda: a2u_downsample(torch.zeros(1, 6, 8, 8), torch.zeros(1, 144, 4, 4), 6, groups=4), "does not divide"),
    (lambda: a2u_downsample(torch.zeros(4, 8, 8), torch.zeros(1, 36, 4, 4), 6), "4-D"),
])
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.gpu
def test_cuda_matches_cpu():
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 3e-2)):
        x, m = _inputs((2, 16, 8, 8), (2, 2 * 9, 16, 16), dtype=torch.float32)
        m = m.softmax(1)
        xc, mc = x.to(dtype).cuda().requires_grad_(), m.to(dtype).cuda().requires_grad_()
        xr, mr = x.to(dtype).requires_grad_(), m.to(dtype).requires_grad_()
        out_c, out_r = a2u_upsample(xc, mc, 3, 2), a2u_upsample(xr, mr, 3, 2)
        torch.testing.assert_close(out_c.float().cpu(), out_r.float(), rtol=tol, atol=tol)
        out_c.float().sum().backward()
        out_r.float().sum().backward()
        torch.testing.assert_close(xc.grad.float().cpu(), xr.grad.float(), rtol=tol, atol=tol)
        torch.testing.assert_close(mc.grad.float().cpu(), mr.grad.float(), rtol=tol * 4, atol=tol * 4)

        xd, md = _inputs((2, 16, 16, 16), (2, 2 * 36, 8, 8), dtype=torch.float32)
        md = md.softmax(1)
        xc, mc = xd.to(dtype).cuda().requires_grad_(), md.to(dtype).cuda().requires_grad_()
        xr, mr = xd.to(dtype).requires_grad_(), md.to(dtype).requires_grad_()
        out_c, out_r = a2u_downsample(xc, mc, 6, 2), a2u_downsample(xr, mr, 6, 2)
        torch.testing.assert_close(out_c.float().cpu(), out_r.float(), rtol=tol, atol=tol)
        out_c.float().sum().backward()
        out_r.float().sum().backward()
        torch.testing.assert_close(xc.grad.float().cpu(), xr.grad.float(), rtol=tol, atol=tol)
        torch.testing.assert_close(mc.grad.float().cpu(), mr.grad.float(), rtol=tol * 4, atol=tol * 4)


def test_small_maps_take_the_unfold_form_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a gradient to track and the shipped thresholds, maps at or below SMALL_MAP_PIXELS go through unfold,
    larger ones the tap loop; without a gradient every size takes the phase-split forward."""
    monkeypatch.setattr(ops, "SMALL_MAP_PIXELS", {"upsample": 64, "downsample": 16})
    calls: list[str] = []
    for name in ("unfold_upsample", "unfold_downsample"):
        real = getattr(ops, name)
        monkeypatch.setattr(ops, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    x, m = _inputs((1, 4, 8, 8), (1, 9, 16, 16))
    with torch.no_grad():
        a2u_upsample(x, m, 3)                   # no gradient: phase-split
    a2u_upsample(x.requires_grad_(), m, 3)      # 64 low-res pixels: unfold
    x, m = _inputs((1, 4, 8, 16), (1, 9, 16, 32))
    a2u_upsample(x.requires_grad_(), m, 3)      # 128: tap loop
    x, m = _inputs((1, 4, 8, 8), (1, 36, 4, 4))
    with torch.no_grad():
        a2u_downsample(x, m, 6)                 # no gradient: phase-split
    a2u_downsample(x.requires_grad_(), m, 6)    # 16 output pixels: unfold
    x, m = _inputs((1, 4, 16, 8), (1, 36, 8, 4))
    a2u_downsample(x.requires_grad_(), m, 6)    # 32: tap loop
    assert calls == ["unfold_upsample", "unfold_downsample"]
