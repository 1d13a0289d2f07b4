"""Fused (Triton) A2U reassembly operators, registered with `torch.library` so autograd, torch.compile and autocast
work through them. Same contract and numbers as the reference `model.ops.a2u_upsample` / `a2u_downsample`
(docs/model.md §2); the plain PyTorch path stays the reference and the CPU path.

Backend choice (`select_backend`): `auto` (fused on CUDA when triton imports, reference otherwise) | `fused` (always;
on CPU only in Triton interpreter mode, `TRITON_INTERPRET=1` set before the first fused call — for tests) |
`reference`, chosen with `set_ops_backend` / the `ops_backend` context; without a choice the environment variable
`A2U_OPS_BACKEND` is the default, else auto.

Dtypes: features and kernels are read in their own dtypes and accumulated in fp32 (fp64 if either is fp64); the
output (and the feature gradient) has the features' dtype, the kernel gradient the kernels' dtype.
Layout: tensors are addressed through their strides, so NCHW and channels_last inputs are read in place and outputs
and gradients keep the input's memory format (a channels_last net pays no layout copies around the A2U ops).
Autocast decision: under an enabled autocast region the *features* are cast to the autocast dtype (they dominate the
memory traffic and feed convolutions that autocast runs in that dtype anyway) while the *kernels* keep their dtype
(the generator's softmax runs in fp32 under autocast; keeping the weights in fp32 costs little traffic and keeps each
kernel summing to 1 to fp32 precision). The cast happens in the public wrappers below, before the custom op, so the
op itself needs no autocast registration and the same rule holds eagerly and under torch.compile.

Backward is gather-only and deterministic (see `model/triton_kernels/reassembly.py`); double backward is not
supported.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Iterator

import torch
from torch import Tensor

from model.process_choice import ProcessChoice
from model.ops import check_downsample_args, check_upsample_args, downsample_offset

log = logging.getLogger(__name__)

BACKEND_ENV = "A2U_OPS_BACKEND"
_BACKENDS = ("auto", "fused", "reference")
_NUM_WARPS = 4


# ----------------------------------------------------------------------------------------------- backend selection
_TRITON_OK: bool | None = None  # a plain global, not functools.cache, so torch.compile traces the check cheaply


def triton_available() -> bool:
    """True when `triton` imports (it is optional: CPU-only installs may lack it)."""
    global _TRITON_OK
    if _TRITON_OK is None:
        try:
            import triton  # noqa: F401
            _TRITON_OK = True
        except Exception as exc:  # ImportError, or a broken install raising at import
            log.info("triton unavailable (%s): A2U ops use the reference PyTorch path", exc)
            _TRITON_OK = False
    return _TRITON_OK


def _interpret_mode() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


_BACKEND = ProcessChoice("ops backend", BACKEND_ENV, _BACKENDS, "auto")


def set_ops_backend(name: str | None) -> None:
    """Choose the reassembly backend for this process: `auto`, `fused` or `reference`; None returns to the default
    (`$A2U_OPS_BACKEND`, else auto). Training sets it from the config's `perf.ops_backend` in each worker."""
    _BACKEND.set(name)


def ops_backend(name: str | None) -> contextlib.AbstractContextManager[None]:
    """`set_ops_backend` for the duration of a `with` block (benchmarks and tests switch paths with it)."""
    return _BACKEND.override(name)


def current_backend() -> str:
    """The explicit choice if one was made, else `$A2U_OPS_BACKEND` (the user-facing default), else auto."""
    return _BACKEND.current()


def select_backend(features: Tensor) -> str:
    """Return "fused" or "reference" for this input under the current choice (see `current_backend`)."""
    choice = current_backend()
    if choice == "reference":
        return "reference"
    if choice == "fused":
        if not triton_available():
            raise RuntimeError("ops backend 'fused' but triton cannot be imported")
        if features.device.type != "cuda" and not _interpret_mode():
            raise RuntimeError(f"ops backend 'fused' on a {features.device.type} tensor needs TRITON_INTERPRET=1 "
                               "(Triton's CPU interpreter, for tests); use auto or reference for CPU work")
        return "fused"
    return "fused" if features.device.type == "cuda" and triton_available() else "reference"


@functools.cache
def _kernels() -> ModuleType:
    """Import the Triton kernels once (import time fixes compiled vs interpreted mode)."""
    from model.triton_kernels import reassembly

    return reassembly


def _on_device_of(t: Tensor) -> contextlib.AbstractContextManager:
    """Make `t`'s GPU the current one for a launch: Triton launches on the current device, so without this a tensor
    on cuda:1 would be addressed by a kernel running on cuda:0."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


def _check_launchable(t: Tensor) -> None:
    kernel_mod = _kernels()
    interpreted = type(kernel_mod.up_fwd_kernel).__name__ == "InterpretedFunction"
    if t.device.type == "cuda" and interpreted:
        raise RuntimeError("Triton kernels were imported in interpreter mode (TRITON_INTERPRET=1); cannot run on CUDA")
    if t.device.type != "cuda" and not interpreted:
        raise RuntimeError(f"fused A2U kernels on a {t.device.type} tensor need TRITON_INTERPRET=1 set before "
                           "model.triton_kernels is first imported")


# ----------------------------------------------------------------------------------------------- launch geometry
def _next_pow2(v: int) -> int:
    return 1 << max(0, (v - 1).bit_length())


KERNELS = ("up_fwd", "up_grad_x", "up_grad_m", "down_fwd", "down_grad_x", "down_grad_m")


@dataclass(frozen=True)
class LaunchTile:
    """Launch geometry of one reassembly kernel. `block_c` (channel tile; the *_grad_m kernels tile taps × pixels
    and have none) and `block_p` (pixels per program) of None follow the default rule of `_tile` / `_tile_m`."""
    block_c: int | None = None
    block_p: int | None = None
    num_warps: int = _NUM_WARPS


# Tiles every kernel is tested with (interpreter, against the reference) and that `benchmarks/bench_tiles.py`
# times on a GPU against the kernel's default. Channel × pixel kernels, then taps × pixels kernels.
CHANNEL_TILES = (LaunchTile(), LaunchTile(16, 128), LaunchTile(16, 128, 8), LaunchTile(16, 256, 8),
                 LaunchTile(32, 64), LaunchTile(32, 128, 8), LaunchTile(8, 128), LaunchTile(8, 256, 8),
                 LaunchTile(4, 256), LaunchTile(64, 32))
TAP_TILES = (LaunchTile(), LaunchTile(None, 32), LaunchTile(None, 64), LaunchTile(None, 128),
             LaunchTile(None, 256, 8), LaunchTile(None, 64, 2), LaunchTile(None, 128, 8))
# Each kernel's launch tile (the rules of `_tile` / `_tile_m` until a GPU sweep says otherwise; bench_tiles.py prints
# this table with its winners filled in)
DEFAULT_TILES: dict[str, LaunchTile] = {name: LaunchTile() for name in KERNELS}
_TILES: dict[str, LaunchTile] = {}  # per-kernel choices in force inside `launch_tiles`, over DEFAULT_TILES


@contextlib.contextmanager
def launch_tiles(tiles: dict[str, LaunchTile]) -> Iterator[None]:
    """Launch the named kernels (`KERNELS`) with these tiles inside the block (for tile sweeps and their tests)."""
    unknown = set(tiles) - set(KERNELS)
    if unknown:
        raise ValueError(f"unknown reassembly kernels {sorted(unknown)}; expected some of {KERNELS}")
    saved = dict(_TILES)
    _TILES.update(tiles)
    try:
        yield
    finally:
        _TILES.clear()
        _TILES.update(saved)


def _tile(cg: int, kernel: str) -> tuple[int, int, int, int]:
    """(BLOCK_C, BLOCK_P, channel blocks, warps) for the channel×pixel tiles of the forward / feature-gradient kernels.

    Default: 1,024-element tiles (at most 16 channels): compiled for sm_90 (ptxas -v, no GPU needed) they use
    72–113 registers and no spills; 64×64 tiles spilled (up to 6 KB of stack per thread in the feature-gradient
    kernel). Not tuned on a GPU yet (`benchmarks/bench_tiles.py` measures the alternatives).
    """
    choice = _TILES.get(kernel, DEFAULT_TILES[kernel])
    block_c = min(_next_pow2(cg), choice.block_c or 16)
    block_p = choice.block_p or max(64, min(256, 1024 // block_c))
    return block_c, block_p, -(-cg // block_c), choice.num_warps


def _tile_m(kernel_size: int, kernel: str) -> tuple[int, int, int]:
    """(K2P, BLOCK_P, warps) for the tap×pixel tiles of the kernel-gradient kernels."""
    choice = _TILES.get(kernel, DEFAULT_TILES[kernel])
    k2p = _next_pow2(kernel_size * kernel_size)
    return k2p, choice.block_p or max(16, min(128, 4096 // k2p)), choice.num_warps


def _up_taps(kernel_size: int) -> tuple[int, int]:
    """(taps per axis, radius): the window is 2R+1 wide with R = ⌊(k−1)/2⌋ (even k reads (k−1)² taps, §2.1)."""
    radius = (kernel_size - 1) // 2
    return 2 * radius + 1, radius


# ----------------------------------------------------------------------------------------------- launchers
def _acc(x: Tensor, m: Tensor):
    """Accumulator dtype: fp32, or fp64 when either input is fp64 (keeps float64 checks exact)."""
    import triton.language as tl

    return tl.float64 if torch.float64 in (x.dtype, m.dtype) else tl.float32


def _strides(t: Tensor) -> tuple[int, int, int, int]:
    """(batch, channel, row, column) strides; offsets inside one sample must fit int32 (the kernels' choice)."""
    reach = sum((size - 1) * abs(stride) for size, stride in zip(t.shape[1:], t.stride()[1:]))
    if reach >= 2 ** 31:
        raise ValueError(f"fused A2U ops: one sample of a {tuple(t.shape)} tensor spans {reach} elements "
                         "(≥ 2³¹); split the batch spatially or use the reference ops backend")
    return t.stride(0), t.stride(1), t.stride(2), t.stride(3)


def _new_like(t: Tensor, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> Tensor:
    """Empty output in `t`'s memory format (channels_last stays channels_last: no layout round trips)."""
    channels_last = t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(shape, dtype=dtype or t.dtype, device=t.device, memory_format=fmt)


def _up_forward(x: Tensor, m: Tensor, k: int, groups: int, scale: int) -> Tensor:
    _check_launchable(x)
    n, c, h, w = x.shape
    out = _new_like(x, (n, c, h * scale, w * scale))
    if out.numel() == 0:
        return out
    cg = c // groups
    block_c, block_p, n_cblk, warps = _tile(cg, "up_fwd")
    nt, radius = _up_taps(k)
    grid = (-(-(h * scale * w * scale) // block_p), n * groups * n_cblk)
    _kernels().up_fwd_kernel[grid](x, m, out, cg, groups, h, w, n_cblk, *_strides(x), *_strides(m), *_strides(out),
                                   K=k, NT=nt, R=radius, S=scale, BLOCK_C=block_c, BLOCK_P=block_p,
                                   ACC=_acc(x, m), num_warps=warps)
    return out


def _up_backward(go: Tensor, x: Tensor, m: Tensor, k: int, groups: int, scale: int,
                 need_x: bool, need_m: bool) -> tuple[Tensor, Tensor]:
    _check_launchable(x)
    n, c, h, w = x.shape
    cg = c // groups
    nt, radius = _up_taps(k)
    gx = _new_like(x, tuple(x.shape)) if need_x else x.new_empty(0)
    gm = _new_like(m, tuple(m.shape)) if need_m else m.new_empty(0)
    if go.numel() == 0:
        return gx.zero_(), gm.zero_()
    mod = _kernels()
    if need_x:
        block_c, block_p, n_cblk, warps = _tile(cg, "up_grad_x")
        grid = (-(-(h * w) // block_p), n * groups * n_cblk)
        mod.up_grad_x_kernel[grid](go, m, gx, cg, groups, h, w, n_cblk, *_strides(go), *_strides(m),
                                   *_strides(gx), K=k, NT=nt, R=radius, S=scale, BLOCK_C=block_c,
                                   BLOCK_P=block_p, ACC=_acc(x, m), num_warps=warps)
    if need_m:
        k2p, block_p, warps = _tile_m(k, "up_grad_m")
        grid = (-(-(h * scale * w * scale) // block_p), n * groups)
        mod.up_grad_m_kernel[grid](x, go, gm, cg, groups, h, w, *_strides(x), *_strides(go), *_strides(gm),
                                   K=k, NT=nt, R=radius, S=scale, K2P=k2p, BLOCK_P=block_p,
                                   ACC=_acc(x, m), num_warps=warps)
    return gx, gm


def _down_forward(x: Tensor, m: Tensor, k: int, groups: int, scale: int) -> Tensor:
    _check_launchable(x)
    n, c, hh, ww = x.shape
    out = _new_like(x, (n, c, hh // scale, ww // scale))
    if out.numel() == 0:
        return out
    cg = c // groups
    block_c, block_p, n_cblk, warps = _tile(cg, "down_fwd")
    grid = (-(-((hh // scale) * (ww // scale)) // block_p), n * groups * n_cblk)
    _kernels().down_fwd_kernel[grid](x, m, out, cg, groups, hh, ww, n_cblk, *_strides(x), *_strides(m),
                                     *_strides(out), K=k, PAD=downsample_offset(k), S=scale, BLOCK_C=block_c,
                                     BLOCK_P=block_p, ACC=_acc(x, m), num_warps=warps)
    return out


def _down_backward(go: Tensor, x: Tensor, m: Tensor, k: int, groups: int, scale: int,
                   need_x: bool, need_m: bool) -> tuple[Tensor, Tensor]:
    _check_launchable(x)
    n, c, hh, ww = x.shape
    cg = c // groups
    pad = downsample_offset(k)
    gx = _new_like(x, tuple(x.shape)) if need_x else x.new_empty(0)
    gm = _new_like(m, tuple(m.shape)) if need_m else m.new_empty(0)
    if go.numel() == 0:
        return gx.zero_(), gm.zero_()
    mod = _kernels()
    if need_x:
        block_c, block_p, n_cblk, warps = _tile(cg, "down_grad_x")
        grid = (-(-(hh * ww) // block_p), n * groups * n_cblk)
        mod.down_grad_x_kernel[grid](go, m, gx, cg, groups, hh, ww, n_cblk, *_strides(go), *_strides(m),
                                     *_strides(gx), K=k, PAD=pad, S=scale, KS=-(-k // scale), BLOCK_C=block_c,
                                     BLOCK_P=block_p, ACC=_acc(x, m), num_warps=warps)
    if need_m:
        k2p, block_p, warps = _tile_m(k, "down_grad_m")
        grid = (-(-((hh // scale) * (ww // scale)) // block_p), n * groups)
        mod.down_grad_m_kernel[grid](x, go, gm, cg, groups, hh, ww, *_strides(x), *_strides(go), *_strides(gm),
                                     K=k, PAD=pad, S=scale, K2P=k2p, BLOCK_P=block_p, ACC=_acc(x, m),
                                     num_warps=warps)
    return gx, gm


# ----------------------------------------------------------------------------------------------- torch.library ops
@torch.library.custom_op("a2u::upsample", mutates_args=())
def upsample_op(features: Tensor, kernels: Tensor, kernel_size: int, groups: int, scale: int) -> Tensor:
    """Fused A2U upsampling (docs/model.md §2.1)."""
    with _on_device_of(features):
        return _up_forward(features, kernels, kernel_size, groups, scale)


@upsample_op.register_fake
def _upsample_fake(features: Tensor, kernels: Tensor, kernel_size: int, groups: int, scale: int) -> Tensor:
    n, c, h, w = features.shape
    return _new_like(features, (n, c, h * scale, w * scale))


@torch.library.custom_op("a2u::upsample_backward", mutates_args=())
def upsample_backward_op(grad_out: Tensor, features: Tensor, kernels: Tensor, kernel_size: int, groups: int,
                         scale: int, need_features: bool, need_kernels: bool) -> tuple[Tensor, Tensor]:
    """Gradients of `a2u::upsample` (empty tensors for the ones not needed)."""
    with _on_device_of(features):
        return _up_backward(grad_out, features, kernels, kernel_size, groups, scale, need_features, need_kernels)


@upsample_backward_op.register_fake
def _upsample_backward_fake(grad_out: Tensor, features: Tensor, kernels: Tensor, kernel_size: int, groups: int,
                            scale: int, need_features: bool, need_kernels: bool) -> tuple[Tensor, Tensor]:
    gx = _new_like(features, tuple(features.shape)) if need_features else features.new_empty(0)
    gm = _new_like(kernels, tuple(kernels.shape)) if need_kernels else kernels.new_empty(0)
    return gx, gm


@torch.library.custom_op("a2u::downsample", mutates_args=())
def downsample_op(features: Tensor, kernels: Tensor, kernel_size: int, groups: int, scale: int) -> Tensor:
    """Fused A2U downsampling (docs/model.md §2.2)."""
    with _on_device_of(features):
        return _down_forward(features, kernels, kernel_size, groups, scale)


@downsample_op.register_fake
def _downsample_fake(features: Tensor, kernels: Tensor, kernel_size: int, groups: int, scale: int) -> Tensor:
    n, c, hh, ww = features.shape
    return _new_like(features, (n, c, hh // scale, ww // scale))


@torch.library.custom_op("a2u::downsample_backward", mutates_args=())
def downsample_backward_op(grad_out: Tensor, features: Tensor, kernels: Tensor, kernel_size: int, groups: int,
                           scale: int, need_features: bool, need_kernels: bool) -> tuple[Tensor, Tensor]:
    """Gradients of `a2u::downsample` (empty tensors for the ones not needed)."""
    with _on_device_of(features):
        return _down_backward(grad_out, features, kernels, kernel_size, groups, scale, need_features, need_kernels)


@downsample_backward_op.register_fake
def _downsample_backward_fake(grad_out: Tensor, features: Tensor, kernels: Tensor, kernel_size: int, groups: int,
                              scale: int, need_features: bool, need_kernels: bool) -> tuple[Tensor, Tensor]:
    gx = _new_like(features, tuple(features.shape)) if need_features else features.new_empty(0)
    gm = _new_like(kernels, tuple(kernels.shape)) if need_kernels else kernels.new_empty(0)
    return gx, gm


def _setup_context(ctx, inputs, output) -> None:
    features, kernels, kernel_size, groups, scale = inputs
    ctx.save_for_backward(features, kernels)
    ctx.params = (kernel_size, groups, scale)


def _upsample_grad(ctx, grad_out: Tensor):
    features, kernels = ctx.saved_tensors
    need_x, need_m = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    gx, gm = upsample_backward_op(grad_out, features, kernels, *ctx.params, need_x, need_m)
    return (gx if need_x else None), (gm if need_m else None), None, None, None


def _downsample_grad(ctx, grad_out: Tensor):
    features, kernels = ctx.saved_tensors
    need_x, need_m = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    gx, gm = downsample_backward_op(grad_out, features, kernels, *ctx.params, need_x, need_m)
    return (gx if need_x else None), (gm if need_m else None), None, None, None


upsample_op.register_autograd(_upsample_grad, setup_context=_setup_context)
downsample_op.register_autograd(_downsample_grad, setup_context=_setup_context)


# ----------------------------------------------------------------------------------------------- public wrappers
def _autocast_features(features: Tensor) -> Tensor:
    """Apply the autocast decision documented above: features to the autocast dtype, kernels untouched."""
    device_type = features.device.type
    if features.is_floating_point() and torch.is_autocast_enabled(device_type):
        return features.to(torch.get_autocast_dtype(device_type))
    return features


def fused_up_unchecked(features: Tensor, kernels: Tensor, kernel_size: int, groups: int = 1,
                       scale: int = 2) -> Tensor:
    """`fused_upsample` without the argument check (for `model.ops`, which has checked them already)."""
    return upsample_op(_autocast_features(features), kernels, int(kernel_size), int(groups), int(scale))


def fused_down_unchecked(features: Tensor, kernels: Tensor, kernel_size: int, groups: int = 1,
                         scale: int = 2) -> Tensor:
    """`fused_downsample` without the argument check (for `model.ops`, which has checked them already)."""
    return downsample_op(_autocast_features(features), kernels, int(kernel_size), int(groups), int(scale))


def fused_upsample(features: Tensor, kernels: Tensor, kernel_size: int, groups: int = 1, scale: int = 2) -> Tensor:
    """A2U upsampling with the Triton kernels; same contract and argument checks as `model.ops.a2u_upsample`."""
    check_upsample_args(features, kernels, kernel_size, groups, scale)
    return fused_up_unchecked(features, kernels, kernel_size, groups, scale)


def fused_downsample(features: Tensor, kernels: Tensor, kernel_size: int, groups: int = 1, scale: int = 2) -> Tensor:
    """A2U downsampling with the Triton kernels; same contract and argument checks as `model.ops.a2u_downsample`."""
    check_downsample_args(features, kernels, kernel_size, groups, scale)
    return fused_down_unchecked(features, kernels, kernel_size, groups, scale)
