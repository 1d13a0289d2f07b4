"""Forward-only A2U reassembly for inference: the phase-split tap loop (docs/model.md §2).

Why another formulation: the training tap loop (``model/ops.py``) reads stride-2 windows and broadcasts the kernel
weight over a size-2 innermost axis, so each of its k² multiply-adds runs at a fraction of memory speed on CPU. Here
the input is split once into its r×r sampling phases (downsampling) or the output is built one sub-pixel phase at a
time (upsampling). Every tap is then a plain shifted slice whose innermost axis is contiguous (W in NCHW, C in
channels-last), multiplied by a weight map broadcast over the channels: 2–5× faster on CPU, and the taps are summed
in the reference order (t = 0 … k²−1), so results equal the reference up to float rounding (usually bit for bit).

Both memory layouts are served in place: NCHW inputs give NCHW outputs, channels-last inputs give channels-last
outputs (the CPU inference net runs channels-last, see ``model/cpu_inference.py``). No autograd support is intended:
callers use these only when no gradient is needed. Under ``torch.export`` (ONNX) the same sums are written without
in-place writes into views, so the exported graph is a chain of Slice/Mul/Add nodes on contiguous maps.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["phase_upsample", "phase_downsample", "is_channels_last"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def is_channels_last(x: torch.Tensor) -> bool:
    """True when ``x`` is stored channels-last and not also plain contiguous (C = 1 or 1×1 maps are both)."""
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _acc(x: torch.Tensor) -> torch.Tensor:
    """Half and bfloat16 accumulate in float32 (as the reference does)."""
    return x.float() if x.dtype in _LOW_PRECISION else x


def _tap_sum(taps, weights, out: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_t taps[t]·weights[t] in order t = 0, 1, …; the first product allocates the accumulator, or is written into
    ``out`` (a view of the right shape, e.g. one sub-pixel phase of the interleaved output)."""
    first = True
    for tap, weight in zip(taps, weights):
        if first:
            out = tap * weight if out is None else torch.mul(tap, weight, out=out)
            first = False
        elif torch.compiler.is_exporting():
            out = out + tap * weight
        else:
            out.addcmul_(tap, weight)
    return out


def phase_downsample(features: torch.Tensor, kernels: torch.Tensor, kernel_size: int, groups: int = 1,
                     scale: int = 2) -> torch.Tensor:
    """§2.2 downsampling, same contract as ``model.ops.reference_downsample`` (forward only).

    The zero-padded input is rearranged once into its r² phases ``ph[a, b][y, x] = padded[r·y + a, r·x + b]``; tap
    (i, j) of output (y, x) is then ``ph[i % r, j % r][y + i // r, x + j // r]``, a contiguous shifted slice.
    """
    from model.ops import downsample_offset  # local: model.ops imports this module

    n, c, big_h, big_w = features.shape
    k, r, g = kernel_size, scale, groups
    h, w = big_h // r, big_w // r
    before = downsample_offset(k)
    after = max(0, k - r - before)
    pad_h = (-(big_h + before + after)) % r + after  # padded sides are multiples of r
    pad_w = (-(big_w + before + after)) % r + after
    hq, wq = (big_h + before + pad_h) // r, (big_w + before + pad_w) // r
    dtype = features.dtype
    x = _acc(features)
    wts = _acc(kernels.to(dtype)).reshape(n, g, k * k, h, w)
    if is_channels_last(features):
        xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, before, pad_w, before, pad_h))  # N×H'×W'×C
        ph = xp.reshape(n, hq, r, wq, r, c).permute(2, 4, 0, 1, 3, 5).contiguous().reshape(r, r, n, hq, wq, g, c // g)
        wts = wts.permute(2, 0, 3, 4, 1).unsqueeze(-1).contiguous()  # k²×N×h×w×G×1

        def tap(i: int, j: int) -> torch.Tensor:
            return ph[i % r, j % r, :, i // r:i // r + h, j // r:j // r + w]
    else:
        xp = F.pad(x, (before, pad_w, before, pad_h))
        ph = xp.reshape(n, c, hq, r, wq, r).permute(3, 5, 0, 1, 2, 4).contiguous().reshape(r, r, n, g, c // g, hq, wq)
        wts = wts.permute(2, 0, 1, 3, 4).unsqueeze(3).contiguous()  # k²×N×G×1×h×w

        def tap(i: int, j: int) -> torch.Tensor:
            return ph[i % r, j % r, ..., i // r:i // r + h, j // r:j // r + w]
    out = _tap_sum((tap(i, j) for i in range(k) for j in range(k)), wts.unbind(0))
    if is_channels_last(features):
        return out.reshape(n, h, w, c).permute(0, 3, 1, 2).to(dtype)
    return out.reshape(n, c, h, w).to(dtype)


def phase_upsample(features: torch.Tensor, kernels: torch.Tensor, kernel_size: int, groups: int = 1,
                   scale: int = 2) -> torch.Tensor:
    """§2.1 upsampling, same contract as ``model.ops.reference_upsample`` (forward only; odd k).

    Output phase (a, b), i.e. pixels (r·y + a, r·x + b), is a k²-tap sum of shifted slices of the padded input
    weighted by that phase's kernel maps; the r² phases are then interleaved into the output once.
    """
    n, c, h, w = features.shape
    k, r, g = kernel_size, scale, groups
    radius = (k - 1) // 2
    dtype = features.dtype
    x = _acc(features)
    wts = _acc(kernels.to(dtype)).reshape(n, g, k * k, h, r, w, r)
    channels_last = is_channels_last(features)
    if channels_last:
        xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, radius, radius, radius, radius)).reshape(n, h + 2 * radius,
                                                                                           w + 2 * radius, g, c // g)
        wts = wts.permute(4, 6, 2, 0, 3, 5, 1).unsqueeze(-1).contiguous()  # r×r×k²×N×h×w×G×1
        taps = [xp[:, i:i + h, j:j + w] for i in range(k) for j in range(k)]
    else:
        xp = F.pad(x, (radius, radius, radius, radius)).reshape(n, g, c // g, h + 2 * radius, w + 2 * radius)
        wts = wts.permute(4, 6, 2, 0, 1, 3, 5).unsqueeze(5).contiguous()  # r×r×k²×N×G×1×h×w
        taps = [xp[..., i:i + h, j:j + w] for i in range(k) for j in range(k)]
    if torch.compiler.is_exporting() or torch.compiler.is_compiling():
        # traced graphs get no `out=` writes into views (Dynamo refuses them): stack the phases, then interleave
        phases = [_tap_sum(taps, wts[a, b].unbind(0)) for a in range(r) for b in range(r)]
        if channels_last:  # phases N×h×w×G×Cg → N×h×r×w×r×C
            out = torch.stack(phases, dim=3).reshape(n, h, w, r, r, c).permute(0, 1, 3, 2, 4, 5)
        else:  # phases N×G×Cg×h×w → N×C×h×r×w×r
            out = torch.stack(phases, dim=-1).reshape(n, c, h, w, r, r).permute(0, 1, 2, 4, 3, 5)
    else:  # each phase is summed straight into its strided view of the interleaved output (no interleaving copy)
        shape = (n, h, r, w, r, g, c // g) if channels_last else (n, g, c // g, h, r, w, r)
        out = torch.empty(shape, dtype=x.dtype, device=x.device)
        for a in range(r):
            for b in range(r):
                phase = out[:, :, a, :, b] if channels_last else out[..., a, :, b]
                _tap_sum(taps, wts[a, b].unbind(0), out=phase)
    if channels_last:
        return out.reshape(n, r * h, r * w, c).permute(0, 3, 1, 2).to(dtype)
    return out.reshape(n, c, r * h, r * w).to(dtype)
