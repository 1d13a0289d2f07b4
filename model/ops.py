"""A2U reassembly operators: kernel-weighted upsampling and downsampling (docs/model.md §2).

Both operators are gathers: every output value is the inner product of a per-pixel kernel (one per group, taken from
``kernels``) with a k×k window of ``features``. Kernel channels are **group-major** (``g·k² + i·k + j``); channel ``c``
belongs to group ``c // (C/G)``; taps outside the feature map read zero and kernels are never renormalised.

Why a tap loop instead of ``unfold``: unfolding materialises k² copies of the map (5 GB at the largest training
shape). Here forward and backward both loop over the k² taps, accumulating shifted-slice products in place, so no
tensor larger than one output map (plus one padded input map) is ever alive, and autograd saves only the two inputs.

Layout of this module:
- ``reference_upsample`` / ``reference_downsample``: the plain-PyTorch reference (any device, any float dtype).
- ``a2u_upsample`` / ``a2u_downsample``: the public API: validate, then dispatch. ``_select_fast_path`` is the single
  place where a faster device-specific implementation (e.g. fused CUDA/Triton kernels) may be plugged in.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from model import cpu_inference, phase_ops

__all__ = [
    "a2u_upsample",
    "a2u_downsample",
    "reference_upsample",
    "reference_downsample",
    "unfold_upsample",
    "unfold_downsample",
    "check_upsample_args",
    "check_downsample_args",
    "downsample_offset",
]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


# ----------------------------------------------------------------------------------------------------------------
# argument validation
# ----------------------------------------------------------------------------------------------------------------

def _check_common(name: str, features: torch.Tensor, kernels: torch.Tensor, kernel_size: int, groups: int,
                  scale: int) -> None:
    if not isinstance(features, torch.Tensor) or not isinstance(kernels, torch.Tensor):
        raise ValueError(f"{name}: features and kernels must be torch tensors")
    if features.dim() != 4:
        raise ValueError(f"{name}: features must be N×C×H×W (4-D), got shape {tuple(features.shape)}")
    if kernels.dim() != 4:
        raise ValueError(f"{name}: kernels must be N×(groups·k²)×H×W (4-D), got shape {tuple(kernels.shape)}")
    if not features.is_floating_point() or not kernels.is_floating_point():
        raise ValueError(f"{name}: features and kernels must be floating point, got {features.dtype}/{kernels.dtype}")
    # inside an autocast region features and kernels may differ in dtype: under CUDA autocast the
    # generator's softmax/GroupNorm give fp32 kernels while the convs give bf16/fp16 features. The reference then
    # casts kernels to the features' dtype; the fused path reads both as they are (model/fused_ops.py).
    if features.dtype != kernels.dtype and not torch.is_autocast_enabled(features.device.type):
        raise ValueError(f"{name}: features ({features.dtype}) and kernels ({kernels.dtype}) must share a dtype "
                         "(outside autocast)")
    if features.device != kernels.device:
        raise ValueError(f"{name}: features on {features.device} but kernels on {kernels.device}")
    for arg, value in (("kernel_size", kernel_size), ("groups", groups), ("scale", scale)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: {arg} must be a positive int, got {value!r}")
    n, c = features.shape[0], features.shape[1]
    if c % groups != 0:
        raise ValueError(f"{name}: groups={groups} does not divide the {c} feature channels")
    if kernels.shape[0] != n:
        raise ValueError(f"{name}: batch of kernels ({kernels.shape[0]}) != batch of features ({n})")
    expected = groups * kernel_size * kernel_size
    if kernels.shape[1] != expected:
        raise ValueError(f"{name}: kernels have {kernels.shape[1]} channels, expected groups·k² = "
                         f"{groups}·{kernel_size}² = {expected}")


def check_upsample_args(features: torch.Tensor, kernels: torch.Tensor, kernel_size: int, groups: int = 1,
                        scale: int = 2) -> None:
    """Raise ``ValueError`` unless the arguments are valid for :func:`a2u_upsample` (§2.1 wrapper rules)."""
    _check_common("a2u_upsample", features, kernels, kernel_size, groups, scale)
    if kernel_size % 2 != 1:
        raise ValueError(f"a2u_upsample: kernel_size must be odd (window centred on the parent pixel), got {kernel_size}")
    h, w = features.shape[2], features.shape[3]
    if kernels.shape[2] != scale * h or kernels.shape[3] != scale * w:
        raise ValueError(f"a2u_upsample: kernel map is {kernels.shape[2]}×{kernels.shape[3]}, expected "
                         f"scale·h×scale·w = {scale * h}×{scale * w}")


def check_downsample_args(features: torch.Tensor, kernels: torch.Tensor, kernel_size: int, groups: int = 1,
                          scale: int = 2) -> None:
    """Raise ``ValueError`` unless the arguments are valid for :func:`a2u_downsample` (§2.2 wrapper rules)."""
    _check_common("a2u_downsample", features, kernels, kernel_size, groups, scale)
    big_h, big_w = features.shape[2], features.shape[3]
    if big_h % scale != 0 or big_w % scale != 0:
        raise ValueError(f"a2u_downsample: feature size {big_h}×{big_w} is not divisible by scale {scale}")
    if kernels.shape[2] != big_h // scale or kernels.shape[3] != big_w // scale:
        raise ValueError(f"a2u_downsample: kernel map is {kernels.shape[2]}×{kernels.shape[3]}, expected "
                         f"H/scale×W/scale = {big_h // scale}×{big_w // scale}")


def downsample_offset(kernel_size: int) -> int:
    """Window offset P of §2.2: (k−2)/2 for even k (window centred on the r×r block), (k−1)/2 for odd k."""
    return (kernel_size - 2) // 2 if kernel_size % 2 == 0 else (kernel_size - 1) // 2


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulate half/bfloat16 in float32: k² rounding steps in bf16 would cost about 2 significant bits."""
    return torch.float32 if dtype in _LOW_PRECISION else dtype


# ----------------------------------------------------------------------------------------------------------------
# reference upsampling (§2.1)
# ----------------------------------------------------------------------------------------------------------------

def _up_views(features: torch.Tensor, kernels: torch.Tensor, k: int, groups: int, scale: int):
    n, c, h, w = features.shape
    radius = (k - 1) // 2
    padded = F.pad(features, (radius, radius, radius, radius))
    padded = padded.reshape(n, groups, c // groups, h + 2 * radius, w + 2 * radius)
    # kernel map as N×G×k²×h×r×w×r: output pixel (Y, X) = (y·r + a, x·r + b)
    kmap = kernels.reshape(n, groups, k * k, h, scale, w, scale)
    return padded, kmap


def _up_forward(features: torch.Tensor, kernels: torch.Tensor, k: int, groups: int, scale: int) -> torch.Tensor:
    n, c, h, w = features.shape
    padded, kmap = _up_views(features, kernels, k, groups, scale)
    out = torch.zeros((n, groups, c // groups, h, scale, w, scale), dtype=_acc_dtype(features.dtype),
                      device=features.device)
    windows = padded.unfold(3, k, 1).unfold(4, k, 1)  # N×G×Cg×h×w×k×k view, no copy
    for i in range(k):
        for j in range(k):
            tap = windows[..., i, j].unsqueeze(5).unsqueeze(4)  # N×G×Cg×h×1×w×1
            weight = kmap[:, :, i * k + j].unsqueeze(2)  # N×G×1×h×r×w×r
            out.addcmul_(tap, weight)
    return out.reshape(n, c, h * scale, w * scale).to(features.dtype)


def _up_backward(grad_out: torch.Tensor, features: torch.Tensor, kernels: torch.Tensor, k: int, groups: int,
                 scale: int, need_features: bool, need_kernels: bool):
    n, c, h, w = features.shape
    radius = (k - 1) // 2
    acc = _acc_dtype(features.dtype)
    padded, kmap = _up_views(features, kernels, k, groups, scale)
    grad = grad_out.reshape(n, groups, c // groups, h, scale, w, scale)
    grad_padded = (torch.zeros(padded.shape, dtype=acc, device=features.device) if need_features else None)
    grad_kmap = (torch.empty(kmap.shape, dtype=features.dtype, device=features.device) if need_kernels else None)
    for i in range(k):
        for j in range(k):
            t = i * k + j
            if need_features:
                weight = kmap[:, :, t].unsqueeze(2)
                grad_padded[:, :, :, i:i + h, j:j + w] += (grad * weight).sum(dim=(4, 6), dtype=acc)
            if need_kernels:
                tap = padded[:, :, :, i:i + h, j:j + w].unsqueeze(5).unsqueeze(4)
                grad_kmap[:, :, t] = (grad * tap).sum(dim=2, dtype=acc)
    grad_features = None
    if need_features:
        grad_features = grad_padded[..., radius:radius + h, radius:radius + w].reshape(n, c, h, w)
        grad_features = grad_features.to(features.dtype)
    grad_kernels = grad_kmap.reshape(kernels.shape) if need_kernels else None
    return grad_features, grad_kernels


class _TapLoopFunction(torch.autograd.Function):
    """Autograd wrapper that saves only the inputs; backward re-loops over the taps (no k²·map buffers).

    ``forward_fn``/``backward_fn`` are the up- or down-sampling tap loops, so both operators share one wrapper.
    """

    @staticmethod
    def forward(ctx, features, kernels, k, groups, scale, forward_fn, backward_fn):  # type: ignore[override]
        ctx.save_for_backward(features, kernels)
        ctx.config = (k, groups, scale, backward_fn)
        return forward_fn(features, kernels, k, groups, scale)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        features, kernels = ctx.saved_tensors
        k, groups, scale, backward_fn = ctx.config
        gf, gk = backward_fn(grad_out.contiguous(), features, kernels, k, groups, scale,
                             ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        return gf, gk, None, None, None, None, None


# On CPU, maps of at most this many low-resolution pixels (the upsampling input, the downsampling output) use the
# unfold formulation: there the tap loop's 2·k² small operations per call cost more than materialising k² copies of
# a tiny map (crossover measured fwd+bwd on one core: up between 8² and 16², down between 4² and 8²; RESULTS.md).
SMALL_MAP_PIXELS = {"upsample": 64, "downsample": 16}


def unfold_upsample(features: torch.Tensor, kernels: torch.Tensor, kernel_size: int, groups: int = 1,
                    scale: int = 2) -> torch.Tensor:
    """§2.1 as unfold + nearest repeat + einsum with plain autograd: k²·r² copies of the map (memory-hungry), but
    the fewest operations; used for tiny maps on CPU and as the plain baseline of the benchmarks."""
    n, c, h, w = features.shape
    k, acc = kernel_size, _acc_dtype(features.dtype)
    cols = F.unfold(features.to(acc), k, padding=(k - 1) // 2).reshape(n, groups, c // groups, k * k, h, w)
    cols = cols.repeat_interleave(scale, dim=4).repeat_interleave(scale, dim=5)
    m = kernels.to(acc).reshape(n, groups, k * k, h * scale, w * scale)
    out = torch.einsum("ngcthw,ngthw->ngchw", cols, m)
    return out.reshape(n, c, h * scale, w * scale).to(features.dtype)


def unfold_downsample(features: torch.Tensor, kernels: torch.Tensor, kernel_size: int, groups: int = 1,
                      scale: int = 2) -> torch.Tensor:
    """§2.2 as pad + strided unfold + einsum with plain autograd (k² copies of the output map); see unfold_upsample."""
    n, c, big_h, big_w = features.shape
    k, acc = kernel_size, _acc_dtype(features.dtype)
    h, w = big_h // scale, big_w // scale
    before, after = _down_geometry(k, scale)
    cols = F.unfold(F.pad(features.to(acc), (before, after, before, after)), k, stride=scale)
    cols = cols.reshape(n, groups, c // groups, k * k, h * w)  # exactly h·w windows (see _down_geometry)
    out = torch.einsum("ngctp,ngtp->ngcp", cols, kernels.to(acc).reshape(n, groups, k * k, h * w))
    return out.reshape(n, c, h, w).to(features.dtype)


def _reference(features: torch.Tensor, kernels: torch.Tensor, k: int, groups: int, scale: int,
               forward_fn: Callable[..., torch.Tensor], backward_fn: Callable[..., tuple],
               unfold_fn: Callable[..., torch.Tensor], low_res_pixels: int, op: str) -> torch.Tensor:
    """Pick the formulation of one reassembly (see reference_upsample) and run it."""
    kernels = kernels.to(features.dtype)  # mixed dtypes under autocast; no-op otherwise
    phase_fn = phase_ops.phase_upsample if op == "upsample" else phase_ops.phase_downsample
    if torch.compiler.is_exporting():
        return phase_fn(features, kernels, k, groups, scale)
    needs_grad = torch.is_grad_enabled() and (features.requires_grad or kernels.requires_grad)
    if not needs_grad and features.device.type == "cpu" and cpu_inference.current_mode() == "fast":
        return phase_fn(features, kernels, k, groups, scale)
    if features.device.type == "cpu" and low_res_pixels <= SMALL_MAP_PIXELS[op]:
        return unfold_fn(features, kernels, k, groups, scale)
    if needs_grad:
        return _TapLoopFunction.apply(features, kernels, k, groups, scale, forward_fn, backward_fn)
    return forward_fn(features, kernels, k, groups, scale)


def reference_upsample(features: torch.Tensor, kernels: torch.Tensor, kernel_size: int, groups: int = 1,
                       scale: int = 2) -> torch.Tensor:
    """Plain-PyTorch A2U upsampling (§2.1) without argument checks; the reference every fast path must match.

    With a gradient to track: the tap-loop autograd.Function (saves only the inputs). Without one on CPU (mode
    ``fast`` of :mod:`model.cpu_inference`) and under ``torch.export``: the phase-split forward of
    :mod:`model.phase_ops` (contiguous taps; its ONNX graph runs 4× faster under onnxruntime than the earlier
    row-vectorised form, RESULTS.md). Otherwise the tap-loop forward, or for tiny maps on CPU with a gradient
    (``SMALL_MAP_PIXELS``) the unfold formulation, which is faster there.
    """
    return _reference(features, kernels, kernel_size, groups, scale, _up_forward, _up_backward,
                      unfold_upsample, features.shape[-2] * features.shape[-1], "upsample")


# ----------------------------------------------------------------------------------------------------------------
# reference downsampling (§2.2)
# ----------------------------------------------------------------------------------------------------------------

def _down_geometry(k: int, scale: int) -> tuple[int, int]:
    offset = downsample_offset(k)
    return offset, max(0, k - scale - offset)


def _down_windows(padded: torch.Tensor, k: int, scale: int, h: int, w: int) -> torch.Tensor:
    """N×G×Cg×h×w×k×k strided view of the padded map: window (y, x) starts at row r·y, column r·x."""
    return padded.unfold(3, k, scale).unfold(4, k, scale)[:, :, :, :h, :w]


def _down_views(features: torch.Tensor, kernels: torch.Tensor, k: int, groups: int, scale: int):
    n, c, big_h, big_w = features.shape
    before, after = _down_geometry(k, scale)
    padded = F.pad(features, (before, after, before, after))
    padded = padded.reshape(n, groups, c // groups, big_h + before + after, big_w + before + after)
    kmap = kernels.reshape(n, groups, k * k, big_h // scale, big_w // scale)
    return padded, kmap


def _down_forward(features: torch.Tensor, kernels: torch.Tensor, k: int, groups: int, scale: int) -> torch.Tensor:
    n, c, big_h, big_w = features.shape
    h, w = big_h // scale, big_w // scale
    padded, kmap = _down_views(features, kernels, k, groups, scale)
    out = torch.zeros((n, groups, c // groups, h, w), dtype=_acc_dtype(features.dtype), device=features.device)
    windows = _down_windows(padded, k, scale, h, w)
    for i in range(k):
        for j in range(k):
            out.addcmul_(windows[..., i, j], kmap[:, :, i * k + j].unsqueeze(2))
    return out.reshape(n, c, h, w).to(features.dtype)


def _down_backward(grad_out: torch.Tensor, features: torch.Tensor, kernels: torch.Tensor, k: int, groups: int,
                   scale: int, need_features: bool, need_kernels: bool):
    n, c, big_h, big_w = features.shape
    h, w = big_h // scale, big_w // scale
    before, _ = _down_geometry(k, scale)
    acc = _acc_dtype(features.dtype)
    padded, kmap = _down_views(features, kernels, k, groups, scale)
    grad = grad_out.reshape(n, groups, c // groups, h, w)
    grad_padded = torch.zeros(padded.shape, dtype=acc, device=features.device) if need_features else None
    grad_kmap = torch.empty(kmap.shape, dtype=features.dtype, device=features.device) if need_kernels else None
    span_h, span_w = scale * (h - 1) + 1, scale * (w - 1) + 1
    for i in range(k):
        for j in range(k):
            t = i * k + j
            if need_features:
                grad_padded[:, :, :, i:i + span_h:scale, j:j + span_w:scale].addcmul_(grad, kmap[:, :, t].unsqueeze(2))
            if need_kernels:
                tap = padded[:, :, :, i:i + span_h:scale, j:j + span_w:scale]
                grad_kmap[:, :, t] = (grad * tap).sum(dim=2, dtype=acc)
    grad_features = None
    if need_features:
        grad_features = grad_padded[..., before:before + big_h, before:before + big_w].reshape(n, c, big_h, big_w)
        grad_features = grad_features.to(features.dtype)
    grad_kernels = grad_kmap.reshape(kernels.shape) if need_kernels else None
    return grad_features, grad_kernels


def reference_downsample(features: torch.Tensor, kernels: torch.Tensor, kernel_size: int, groups: int = 1,
                         scale: int = 2) -> torch.Tensor:
    """Plain-PyTorch A2U downsampling (§2.2) without argument checks; the reference every fast path must match.

    With a gradient to track: the tap-loop autograd.Function (saves only the inputs). Without one on CPU (mode
    ``fast`` of :mod:`model.cpu_inference`) and under ``torch.export``: the phase-split forward of
    :mod:`model.phase_ops` (contiguous taps; its ONNX graph runs 4× faster under onnxruntime than the earlier
    row-vectorised form, RESULTS.md). Otherwise the tap-loop forward, or for tiny maps on CPU with a gradient
    (``SMALL_MAP_PIXELS``) the unfold formulation, which is faster there.
    """
    return _reference(features, kernels, kernel_size, groups, scale, _down_forward,
                      _down_backward, unfold_downsample, kernels.shape[-2] * kernels.shape[-1], "downsample")


# ----------------------------------------------------------------------------------------------------------------
# public API and the one dispatch point
# ----------------------------------------------------------------------------------------------------------------

_Op = Callable[[torch.Tensor, torch.Tensor, int, int, int], torch.Tensor]


def _select_fast_path(op: str, features: torch.Tensor) -> Optional[_Op]:
    """THE place to choose a device-specific fast path (e.g. fused CUDA/Triton kernels of `model/fused_ops.py`).

    ``op`` is ``"upsample"`` or ``"downsample"``. Return a callable with the reference signature
    ``(features, kernels, kernel_size, groups, scale)`` that matches the reference within dtype rounding, or
    ``None`` to use the reference.
    """
    # fused Triton path (model/fused_ops.py): backend auto | fused | reference (`fused_ops.set_ops_backend`, else
    # $A2U_OPS_BACKEND); auto = fused on CUDA when triton imports, the reference everywhere else. The arguments are
    # checked already, so the unchecked entry points are used.
    from model import fused_ops

    if fused_ops.select_backend(features) == "fused":
        return fused_ops.fused_up_unchecked if op == "upsample" else fused_ops.fused_down_unchecked
    return None


def a2u_upsample(features: torch.Tensor, kernels: torch.Tensor, kernel_size: int, groups: int = 1,
                 scale: int = 2) -> torch.Tensor:
    """A2U upsampling (§2.1): N×C×h×w features, N×(G·k²)×(r·h)×(r·w) kernels → N×C×(r·h)×(r·w).

    out[n,c,Y,X] = Σ_{i,j<k} kernels[n, g(c)·k²+i·k+j, Y, X] · x[n, c, ⌊Y/r⌋+i−R, ⌊X/r⌋+j−R], R = (k−1)/2,
    zeros outside the map, no renormalisation. ``kernel_size`` must be odd.
    """
    check_upsample_args(features, kernels, kernel_size, groups, scale)
    impl = _select_fast_path("upsample", features) or reference_upsample
    return impl(features, kernels, kernel_size, groups, scale)


def a2u_downsample(features: torch.Tensor, kernels: torch.Tensor, kernel_size: int, groups: int = 1,
                   scale: int = 2) -> torch.Tensor:
    """A2U downsampling (§2.2): N×C×H×W features, N×(G·k²)×(H/r)×(W/r) kernels → N×C×(H/r)×(W/r).

    out[n,c,y,x] = Σ_{i,j<k} kernels[n, g(c)·k²+i·k+j, y, x] · x[n, c, r·y+i−P, r·x+j−P], P = ⌊(k−1)/2⌋
    (= (k−2)/2 for even k), zeros outside the map, no renormalisation. H and W must be divisible by ``scale``.
    The released network uses even k (= 2·s); odd k is supported with a centred window as in the CUDA kernel.
    """
    check_downsample_args(features, kernels, kernel_size, groups, scale)
    impl = _select_fast_path("downsample", features) or reference_downsample
    return impl(features, kernels, kernel_size, groups, scale)
