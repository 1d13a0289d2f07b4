"""Triton kernels for the A2U reassembly operators (docs/model.md §2), forward and backward.

Why gather-only: the official CUDA backward scatters with atomicAdd (non-deterministic, contended on the kernel
gradient). Here every output element of every kernel — including both gradients — is written by exactly one program
that sums its inputs in a fixed order, so results are bitwise reproducible run to run.

Layout contract (checked by the callers in `model/fused_ops.py`): every tensor is addressed through its own
(batch, channel, row, column) strides, so NCHW and channels_last (NHWC) tensors are read in place with no layout
copies; batch offsets are int64, offsets inside one sample int32 (the caller checks < 2³¹ elements per sample).
Kernel maps are group-major (channel g·k² + i·k + j); channel c belongs to group c // (C/G). Loads are in the
tensors' own dtypes, arithmetic in `ACC` (fp32; fp64 for fp64 inputs), stores cast to the destination's dtype.

Only non-negative integers are ever divided (`//`, `%`): compiled Triton truncates, the interpreter floors, and the two
only agree on non-negative operands.

Importing this module decides compiled vs interpreted kernels (`TRITON_INTERPRET=1` must be set before the import to
run on CPU tensors).
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def up_fwd_kernel(x_ptr, m_ptr, out_ptr, CG, G, h, w, n_cblk,
                  sxn, sxc, sxh, sxw, smn, smc, smh, smw, son, soc, soh, sow,
                  K: tl.constexpr, NT: tl.constexpr, R: tl.constexpr, S: tl.constexpr,
                  BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr):
    """out[n,c,Y,X] = Σ_{i,j<NT} m[n, g·K²+i·K+j, Y, X] · x[n, c, Y//S+i−R, X//S+j−R] (zeros outside)."""
    pid_p = tl.program_id(0)
    pid_q = tl.program_id(1).to(tl.int64)
    cb = pid_q % n_cblk
    ng = pid_q // n_cblk
    g = ng % G
    n = ng // G
    W = w * S
    HW = h * S * W

    offs_c = (cb * BLOCK_C + tl.arange(0, BLOCK_C)).to(tl.int32)
    cmask = offs_c < CG
    chan = g.to(tl.int32) * CG + offs_c
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = offs_p < HW
    Y = offs_p // W
    X = offs_p % W
    py = Y // S
    px = X // S
    x_base = x_ptr + n * sxn + chan[:, None] * sxc
    m_base = m_ptr + n * smn + (g * (K * K)).to(tl.int32) * smc + Y * smh + X * smw

    acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=ACC)
    for i in range(NT):  # loops, not unrolled: unrolling the taps hoists every gather and spills registers
        yy = py + (i - R)
        vy = pmask & (yy >= 0) & (yy < h)
        for j in range(NT):
            xx = px + (j - R)
            valid = vy & (xx >= 0) & (xx < w)
            mv = tl.load(m_base + (i * K + j) * smc, mask=valid, other=0.0).to(ACC)
            xv = tl.load(x_base + (yy * sxh + xx * sxw)[None, :], mask=cmask[:, None] & valid[None, :],
                         other=0.0).to(ACC)
            acc += xv * mv[None, :]
    out_ptrs = out_ptr + n * son + chan[:, None] * soc + (Y * soh + X * sow)[None, :]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=cmask[:, None] & pmask[None, :])


@triton.jit
def up_grad_x_kernel(go_ptr, m_ptr, gx_ptr, CG, G, h, w, n_cblk,
                     sgn, sgc, sgh, sgw, smn, smc, smh, smw, sxn, sxc, sxh, sxw,
                     K: tl.constexpr, NT: tl.constexpr, R: tl.constexpr, S: tl.constexpr,
                     BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr):
    """gx[n,c,p,q] = Σ over taps (i,j) and children (a,b) of parent (p−i+R, q−j+R): m·go (gather, no atomics)."""
    pid_p = tl.program_id(0)
    pid_q = tl.program_id(1).to(tl.int64)
    cb = pid_q % n_cblk
    ng = pid_q // n_cblk
    g = ng % G
    n = ng // G

    offs_c = (cb * BLOCK_C + tl.arange(0, BLOCK_C)).to(tl.int32)
    cmask = offs_c < CG
    chan = g.to(tl.int32) * CG + offs_c
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = offs_p < h * w
    yy = offs_p // w
    xx = offs_p % w
    go_base = go_ptr + n * sgn + chan[:, None] * sgc
    m_base = m_ptr + n * smn + (g * (K * K)).to(tl.int32) * smc

    acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=ACC)
    for i in range(NT):  # a loop, not unrolled (register pressure)
        py = yy + (R - i)
        vy = pmask & (py >= 0) & (py < h)
        for j in range(NT):
            px = xx + (R - j)
            valid = vy & (px >= 0) & (px < w)
            for a in tl.static_range(S):
                for b in tl.static_range(S):
                    Y = py * S + a
                    X = px * S + b
                    mv = tl.load(m_base + (i * K + j) * smc + Y * smh + X * smw, mask=valid, other=0.0).to(ACC)
                    gv = tl.load(go_base + (Y * sgh + X * sgw)[None, :], mask=cmask[:, None] & valid[None, :],
                                 other=0.0).to(ACC)
                    acc += gv * mv[None, :]
    gx_ptrs = gx_ptr + n * sxn + chan[:, None] * sxc + (yy * sxh + xx * sxw)[None, :]
    tl.store(gx_ptrs, acc.to(gx_ptr.dtype.element_ty), mask=cmask[:, None] & pmask[None, :])


@triton.jit
def up_grad_m_kernel(x_ptr, go_ptr, gm_ptr, CG, G, h, w,
                     sxn, sxc, sxh, sxw, sgn, sgc, sgh, sgw, smn, smc, smh, smw,
                     K: tl.constexpr, NT: tl.constexpr, R: tl.constexpr, S: tl.constexpr,
                     K2P: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr):
    """gm[n, g·K²+t, Y, X] = Σ_{c in g} x̃[n,c, Y//S+i−R, X//S+j−R] · go[n,c,Y,X]; one program owns each element."""
    pid_p = tl.program_id(0)
    ng = tl.program_id(1).to(tl.int64)
    g = ng % G
    n = ng // G
    W = w * S
    HW = h * S * W

    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = offs_p < HW
    Y = offs_p // W
    X = offs_p % W
    py = Y // S
    px = X // S
    t = tl.arange(0, K2P)
    ti = t // K
    tj = t % K
    tmask = (t < K * K) & (ti < NT) & (tj < NT)          # even K: last row/column of taps never read
    yy = py[None, :] + ti[:, None] - R
    xx = px[None, :] + tj[:, None] - R
    valid = tmask[:, None] & pmask[None, :] & (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    src = yy * sxh + xx * sxw
    dst = Y * sgh + X * sgw

    c0 = g.to(tl.int32) * CG
    x_base = x_ptr + n * sxn
    go_base = go_ptr + n * sgn
    acc = tl.zeros((K2P, BLOCK_P), dtype=ACC)
    for c in range(CG):
        ch = c0 + c
        gv = tl.load(go_base + ch * sgc + dst, mask=pmask, other=0.0).to(ACC)
        xv = tl.load(x_base + ch * sxc + src, mask=valid, other=0.0).to(ACC)
        acc += xv * gv[None, :]
    gm_ptrs = (gm_ptr + n * smn + ((g * (K * K)).to(tl.int32) + t[:, None]) * smc
               + (Y * smh + X * smw)[None, :])
    tl.store(gm_ptrs, acc.to(gm_ptr.dtype.element_ty), mask=(t < K * K)[:, None] & pmask[None, :])


@triton.jit
def down_fwd_kernel(x_ptr, m_ptr, out_ptr, CG, G, H, W, n_cblk,
                    sxn, sxc, sxh, sxw, smn, smc, smh, smw, son, soc, soh, sow,
                    K: tl.constexpr, PAD: tl.constexpr, S: tl.constexpr,
                    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr):
    """out[n,c,y,x] = Σ_{i,j<K} m[n, g·K²+i·K+j, y, x] · x[n, c, S·y+i−PAD, S·x+j−PAD] (zeros outside)."""
    pid_p = tl.program_id(0)
    pid_q = tl.program_id(1).to(tl.int64)
    cb = pid_q % n_cblk
    ng = pid_q // n_cblk
    g = ng % G
    n = ng // G
    Wo = W // S
    HWo = (H // S) * Wo

    offs_c = (cb * BLOCK_C + tl.arange(0, BLOCK_C)).to(tl.int32)
    cmask = offs_c < CG
    chan = g.to(tl.int32) * CG + offs_c
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = offs_p < HWo
    oy = offs_p // Wo
    ox = offs_p % Wo
    x_base = x_ptr + n * sxn + chan[:, None] * sxc
    m_base = m_ptr + n * smn + (g * (K * K)).to(tl.int32) * smc + oy * smh + ox * smw

    acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=ACC)
    for i in range(K):  # a loop, not unrolled (register pressure)
        yy = oy * S + (i - PAD)
        vy = pmask & (yy >= 0) & (yy < H)
        for j in range(K):
            xx = ox * S + (j - PAD)
            valid = vy & (xx >= 0) & (xx < W)
            mv = tl.load(m_base + (i * K + j) * smc, mask=valid, other=0.0).to(ACC)
            xv = tl.load(x_base + (yy * sxh + xx * sxw)[None, :], mask=cmask[:, None] & valid[None, :],
                         other=0.0).to(ACC)
            acc += xv * mv[None, :]
    out_ptrs = out_ptr + n * son + chan[:, None] * soc + (oy * soh + ox * sow)[None, :]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=cmask[:, None] & pmask[None, :])


@triton.jit
def down_grad_x_kernel(go_ptr, m_ptr, gx_ptr, CG, G, H, W, n_cblk,
                       sgn, sgc, sgh, sgw, smn, smc, smh, smw, sxn, sxc, sxh, sxw,
                       K: tl.constexpr, PAD: tl.constexpr, S: tl.constexpr, KS: tl.constexpr,
                       BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr):
    """gx[n,c,p,q] = Σ over the ≤ ⌈K/S⌉² outputs (y,x) whose window holds (p,q): m[tap(p−S·y+PAD, q−S·x+PAD)] · go."""
    pid_p = tl.program_id(0)
    pid_q = tl.program_id(1).to(tl.int64)
    cb = pid_q % n_cblk
    ng = pid_q // n_cblk
    g = ng % G
    n = ng // G
    Ho = H // S
    Wo = W // S

    offs_c = (cb * BLOCK_C + tl.arange(0, BLOCK_C)).to(tl.int32)
    cmask = offs_c < CG
    chan = g.to(tl.int32) * CG + offs_c
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = offs_p < H * W
    py = offs_p // W
    px = offs_p % W
    ry = py + PAD                                       # ≥ 0
    rx = px + PAD
    base_y = ry // S
    base_x = rx // S
    go_base = go_ptr + n * sgn + chan[:, None] * sgc
    m_base = m_ptr + n * smn + (g * (K * K)).to(tl.int32) * smc

    acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=ACC)
    for dy in range(KS):  # a loop, not unrolled (register pressure)
        oy = base_y - dy
        ti = ry - oy * S
        vy = pmask & (oy >= 0) & (oy < Ho) & (ti < K)
        for dx in range(KS):
            ox = base_x - dx
            tj = rx - ox * S
            valid = vy & (ox >= 0) & (ox < Wo) & (tj < K)
            mv = tl.load(m_base + (ti * K + tj) * smc + oy * smh + ox * smw, mask=valid, other=0.0).to(ACC)
            gv = tl.load(go_base + (oy * sgh + ox * sgw)[None, :], mask=cmask[:, None] & valid[None, :],
                         other=0.0).to(ACC)
            acc += gv * mv[None, :]
    gx_ptrs = gx_ptr + n * sxn + chan[:, None] * sxc + (py * sxh + px * sxw)[None, :]
    tl.store(gx_ptrs, acc.to(gx_ptr.dtype.element_ty), mask=cmask[:, None] & pmask[None, :])


@triton.jit
def down_grad_m_kernel(x_ptr, go_ptr, gm_ptr, CG, G, H, W,
                       sxn, sxc, sxh, sxw, sgn, sgc, sgh, sgw, smn, smc, smh, smw,
                       K: tl.constexpr, PAD: tl.constexpr, S: tl.constexpr,
                       K2P: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr):
    """gm[n, g·K²+t, y, x] = Σ_{c in g} x̃[n,c, S·y+i−PAD, S·x+j−PAD] · go[n,c,y,x]; one program owns each element."""
    pid_p = tl.program_id(0)
    ng = tl.program_id(1).to(tl.int64)
    g = ng % G
    n = ng // G
    Wo = W // S
    HWo = (H // S) * Wo

    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = offs_p < HWo
    oy = offs_p // Wo
    ox = offs_p % Wo
    t = tl.arange(0, K2P)
    ti = t // K
    tj = t % K
    tmask = t < K * K
    yy = oy[None, :] * S + ti[:, None] - PAD
    xx = ox[None, :] * S + tj[:, None] - PAD
    valid = tmask[:, None] & pmask[None, :] & (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
    src = yy * sxh + xx * sxw
    dst = oy * sgh + ox * sgw

    c0 = g.to(tl.int32) * CG
    x_base = x_ptr + n * sxn
    go_base = go_ptr + n * sgn
    acc = tl.zeros((K2P, BLOCK_P), dtype=ACC)
    for c in range(CG):
        ch = c0 + c
        gv = tl.load(go_base + ch * sgc + dst, mask=pmask, other=0.0).to(ACC)
        xv = tl.load(x_base + ch * sxc + src, mask=valid, other=0.0).to(ACC)
        acc += xv * gv[None, :]
    gm_ptrs = (gm_ptr + n * smn + ((g * (K * K)).to(tl.int32) + t[:, None]) * smc
               + (oy * smh + ox * smw)[None, :])
    tl.store(gm_ptrs, acc.to(gm_ptr.dtype.element_ty), mask=tmask[:, None] & pmask[None, :])
