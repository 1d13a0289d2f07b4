"""Kernel generator: batched formulation equals a per-sample transcription of docs/model.md §1.2 steps 1–7."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from model.kernel_generator import A2UKernelGenerator, generator_parameter_count


def per_sample_reference(gen: A2UKernelGenerator, x: torch.Tensor):
    """Steps 1–7 of §1.2 one sample at a time (with the intended rank-d sum and group-major layout)."""
    n, c, height, width = x.shape
    d, s, g, ke = gen.rank, gen.up_kernel_size, gen.groups, gen.encode_kernel_size
    downs, ups = [], []
    for i in range(n):
        xi = x[i:i + 1]
        u = gen.bconv_U[1](F.adaptive_avg_pool2d(xi, ke))[0]  # (d or d·C)×ke×ke
        v = gen.bconv_V[1](F.adaptive_avg_pool2d(xi, ke))[0]
        gap = F.adaptive_avg_pool2d(xi, 1)
        p_up = gen.bconv_UP[1](gap).reshape(4 * s * s * g, d)
        p_down = gen.bconv_DP[1](gap).reshape(4 * s * s * g, d)
        s_maps = []
        for t in range(d):
            branches = []
            for filt, norm in ((u, gen.bnu), (v, gen.bnv)):
                if gen.share:
                    conv = F.conv2d(xi.transpose(0, 1), filt[t].reshape(1, 1, ke, ke), stride=2,
                                    padding=gen.padding).transpose(0, 1)
                else:
                    conv = F.conv2d(xi, filt[t * c:(t + 1) * c].reshape(c, 1, ke, ke), stride=2,
                                    padding=gen.padding, groups=c)
                branches.append(norm(conv))
            s_maps.append((branches[0] * branches[1]).sum(dim=1) / math.sqrt(c))  # 1×h×w
        z_up = sum(p_up[:, t].reshape(-1, 1, 1) * s_maps[t] for t in range(d))  # 4s²G×h×w
        z_down = sum(p_down[:, t].reshape(-1, 1, 1) * s_maps[t] for t in range(d))
        h, w = z_up.shape[-2:]
        up = torch.zeros(g * s * s, 2 * h, 2 * w, dtype=x.dtype)
        for gg in range(g):
            for kpos in range(s * s):
                for a in range(2):
                    for b in range(2):
                        up[gg * s * s + kpos, a::2, b::2] = z_up[4 * (gg * s * s + kpos) + 2 * a + b]
        up = torch.sigmoid(up).reshape(g, s * s, 2 * h, 2 * w)
        up = up.softmax(dim=1) if s > 1 else up
        ups.append(up.reshape(g * s * s, 2 * h, 2 * w))
        downs.append(z_down.reshape(g, 4 * s * s, h, w).softmax(dim=1).reshape(-1, h, w))
    return torch.stack(downs), torch.stack(ups)


def _randomise(gen: A2UKernelGenerator, scale: float = 1.0) -> None:
    torch.manual_seed(0)
    for p in gen.parameters():
        torch.nn.init.normal_(p, std=scale)


@pytest.mark.parametrize("share,groups,rank,s", [
    (True, 1, 1, 3), (False, 1, 1, 3), (True, 2, 1, 3), (False, 2, 2, 3), (True, 1, 3, 1), (True, 4, 1, 5),
])
def test_batched_equals_per_sample_loop(share, groups, rank, s):
    gen = A2UKernelGenerator(32, up_kernel_size=s, groups=groups, share=share, rank=rank).double()
    _randomise(gen, 0.3)
    x = torch.randn(3, 32, 12, 10, dtype=torch.float64)
    down, up = gen(x)
    ref_down, ref_up = per_sample_reference(gen, x)
    assert down.shape == (3, groups * 4 * s * s, 6, 5) and up.shape == (3, groups * s * s, 12, 10)
    torch.testing.assert_close(down, ref_down, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(up, ref_up, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("groups", [1, 2])
def test_kernels_sum_to_one_and_respect_sigmoid_softmax_bounds(groups):
    gen = A2UKernelGenerator(64, groups=groups)
    _randomise(gen, 3.0)  # large logits: push the weights towards the bounds
    down, up = gen(torch.randn(2, 64, 16, 16) * 5)
    up_g = up.reshape(2, groups, 9, 16, 16)
    down_g = down.reshape(2, groups, 36, 8, 8)
    torch.testing.assert_close(up_g.sum(2), torch.ones(2, groups, 16, 16))
    torch.testing.assert_close(down_g.sum(2), torch.ones(2, groups, 8, 8))
    low, high = 1 / (1 + 8 * math.e), math.e / (math.e + 8)  # (0.04396, 0.25356): "(0.044, 0.254)" rounded
    assert round(low, 3) == 0.044 and round(high, 3) == 0.254
    assert up.min() > low - 1e-6 and up.max() < high + 1e-6
    assert up.max() - up.min() > 0.1, "weights should spread towards the bounds with large logits"
    assert (down >= 0).all()


def test_parameter_counts_match_closed_form():
    for c in (64, 128, 256):
        shared = A2UKernelGenerator(c, share=True)
        unshared = A2UKernelGenerator(c, share=False)
        assert sum(p.numel() for p in shared.parameters()) == 78 * c + 74 == generator_parameter_count(c)
        assert sum(p.numel() for p in unshared.parameters()) == 2 * c * c + 78 * c + 72 \
            == generator_parameter_count(c, share=False)
    total_shared = sum(generator_parameter_count(c) for c in (64, 64, 128, 256))
    total_unshared = sum(generator_parameter_count(c, share=False) for c in (64, 64, 128, 256))
    assert (total_shared, total_unshared) == (40_232, 220_448)


def test_official_submodule_names():
    names = {k for k, _ in A2UKernelGenerator(32).named_parameters()}
    assert names == {f"{m}.{p}" for m in ("bconv_UP.1", "bconv_DP.1", "bconv_U.1", "bconv_V.1", "bnu.0", "bnv.0")
                     for p in ("weight", "bias")}


def test_bad_configuration_and_input():
    with pytest.raises(ValueError, match="divisible by 32"):
        A2UKernelGenerator(48)
    with pytest.raises(ValueError, match="positive int"):
        A2UKernelGenerator(32, rank=0)
    gen = A2UKernelGenerator(32)
    with pytest.raises(ValueError, match="N×32×H×W"):
        gen(torch.randn(1, 16, 8, 8))
    with pytest.raises(ValueError, match="N×32×H×W"):
        gen(torch.randn(32, 8, 8))


def test_gradients_reach_every_parameter():
    gen = A2UKernelGenerator(32, share=False)
    _randomise(gen, 0.2)
    down, up = gen(torch.randn(2, 32, 8, 8))
    (down * torch.randn_like(down)).sum().backward(inputs=list(gen.parameters()), retain_graph=True)
    (up * torch.randn_like(up)).sum().backward(inputs=list(gen.parameters()))
    for name, p in gen.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
