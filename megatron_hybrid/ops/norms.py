"""Per-head L2 norm and the gated RMSNorm of the GDN output, each with a Triton forward/backward and a torch path.

``l2norm(x)``: x / sqrt(sum(x^2) + eps) over the last dim (fp32 math, x's dtype out).
``gated_rms_norm(x, gate, weight)``: exactly transformers' Qwen3NextRMSNormGated:
    h = x.float(); h = h * rsqrt(mean(h^2) + eps); h = weight * h.to(x.dtype)
    out = (h * silu(gate.float())).to(x.dtype)
Dispatch: Triton when the tensors are on CUDA (or TRITON_INTERPRET=1), torch otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .gated_delta_rule.utils import is_interpret
from .launch import fast_launch


def triton_runs_on(device: torch.device) -> bool:
    """Whether the Triton kernels run for tensors on ``device``: CUDA, or any device under TRITON_INTERPRET=1."""
    return device.type == "cuda" or is_interpret()


def use_triton(x: torch.Tensor) -> bool:
    return triton_runs_on(x.device)


# ----------------------------------------------------------------------------------------------------------- l2norm
L2NORM_EPS = 1e-6  # the delta rule's q/k norm: x / sqrt(sum x^2 + eps), as fla's use_qk_l2norm_in_kernel


def l2norm_torch(x: torch.Tensor, eps: float = L2NORM_EPS) -> torch.Tensor:
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).sum(-1, keepdim=True) + eps)).to(x.dtype)


@triton.jit
def _row_offsets(o_m, o_d, GH: tl.constexpr, sg_n, sg_h):
    """Row m of a tensor viewed as [N, GH, D] with strides (sg_n, sg_h, 1): a strided view (the layer's z or q, column
    slices of a projection or of the conv output) is read or written in place."""
    o_m = o_m.to(tl.int64)
    return ((o_m // GH) * sg_n + (o_m % GH) * sg_h)[:, None] + o_d[None, :]


@fast_launch
@triton.jit
def l2norm_fwd_kernel(x, y, rstd, x2, y2, M, eps, sx_n, sx_h, D: tl.constexpr, GH: tl.constexpr, BM: tl.constexpr,
                      BD: tl.constexpr):  # fmt: skip
    """x: rows of a [M / GH, GH, D] view with strides (sx_n, sx_h, 1) (e.g. q, a column slice of the conv output);
    y: [M, D] contiguous. Programs with program_id(1) == 1 normalise x2 into y2 instead (same layout; rstd's second
    M entries): q and k in one launch."""
    if tl.program_id(1) == 1:
        x = x2
        y = y2
        rstd += M
    o_m = tl.program_id(0) * BM + tl.arange(0, BM)
    o_d = tl.arange(0, BD)
    m = (o_m < M)[:, None] & (o_d < D)[None, :]
    p = o_m.to(tl.int64)[:, None] * D + o_d[None, :]
    b_x = tl.load(x + _row_offsets(o_m, o_d, GH, sx_n, sx_h), mask=m, other=0).to(tl.float32)
    b_r = 1.0 / tl.sqrt(tl.sum(b_x * b_x, 1) + eps)
    tl.store(y + p, (b_x * b_r[:, None]).to(y.dtype.element_ty), mask=m)
    tl.store(rstd + o_m, b_r, mask=o_m < M)


@fast_launch
@triton.jit
def l2norm_bwd_kernel(y, rstd, dy, dx, y2, dy2, dx2, M, sdx_n, sdx_h, D: tl.constexpr, GH: tl.constexpr,
                      BM: tl.constexpr, BD: tl.constexpr):  # fmt: skip
    """From the output y (which the gated delta rule keeps anyway), not the input: nothing extra is saved. dx: rows of
    a [M / GH, GH, D] view with strides (sdx_n, sdx_h, 1), e.g. a column slice of the conv input's gradient. Programs
    with program_id(1) == 1 take (y2, dy2, dx2) and rstd's second M entries (the forward's pair)."""
    if tl.program_id(1) == 1:
        y = y2
        dy = dy2
        dx = dx2
        rstd += M
    o_m = tl.program_id(0) * BM + tl.arange(0, BM)
    o_d = tl.arange(0, BD)
    m = (o_m < M)[:, None] & (o_d < D)[None, :]
    p = o_m.to(tl.int64)[:, None] * D + o_d[None, :]
    b_y = tl.load(y + p, mask=m, other=0).to(tl.float32)
    b_dy = tl.load(dy + p, mask=m, other=0).to(tl.float32)
    b_r = tl.load(rstd + o_m, mask=o_m < M, other=0)
    b_dx = b_r[:, None] * (b_dy - b_y * tl.sum(b_dy * b_y, 1)[:, None])
    tl.store(dx + _row_offsets(o_m, o_d, GH, sdx_n, sdx_h), b_dx.to(dx.dtype.element_ty), mask=m)


def _rows(D: int) -> tuple[int, int]:
    BD = triton.next_power_of_2(D)
    return BD, max(1, min(64, 2048 // BD))  # <= 16 fp32 values per thread per live tile at 4 warps


def _row_view(x: torch.Tensor, name: str) -> torch.Tensor:
    x3 = x.view(x.shape[0], 1, x.shape[1]) if x.dim() == 2 else x
    assert x3.dim() == 3 and x3.stride(2) == 1, f"{name}: rows of a [N, GH, D] view with unit stride over D"
    return x3


def l2norm_fwd(*xs: torch.Tensor, eps: float) -> tuple[torch.Tensor, ...]:
    """(y [M, D] contiguous per input, rstd [len(xs), M]) for the rows of one or two inputs of one layout: [M, D]
    contiguous, or [N, GH, D] with a unit stride over D (e.g. [B*T, H, K]; q and k as column slices of the conv
    output, read in place). Two inputs (q and k) take one launch."""
    x3s = [_row_view(x, "l2norm_fwd") for x in xs]
    assert len(x3s) in (1, 2) and all(x.shape == x3s[0].shape and x.stride() == x3s[0].stride() for x in x3s)
    N, GH, D = x3s[0].shape
    M = N * GH
    ys = [torch.empty(M, D, dtype=x.dtype, device=x.device) for x in xs]
    rstd = torch.empty(len(xs), M, dtype=torch.float32, device=xs[0].device)
    BD, BM = _rows(D)
    x3, y = x3s[0], ys[0]
    l2norm_fwd_kernel[(triton.cdiv(M, BM), len(xs))](
        x3, y, rstd, x3s[-1], ys[-1], M, eps, x3.stride(0), x3.stride(1), D=D, GH=GH, BM=BM, BD=BD
    )
    return (*ys, rstd)


def l2norm_bwd(ys: tuple, rstd: torch.Tensor, dys: tuple, dx3s: tuple | None = None) -> tuple[torch.Tensor, ...]:
    """dx per forward output: from the outputs ys ([M, D] each), rstd ([len(ys), M]) and dys ([M, D] contiguous), into
    new [M, D] tensors, or written into ``dx3s`` ([M / GH, GH, D] views of one layout, unit stride over D; e.g.
    column slices of a wider gradient), which are returned. Two outputs (q and k) take one launch."""
    M, D = ys[0].shape
    dxs = tuple(torch.empty_like(y) for y in ys) if dx3s is None else dx3s
    d3s = [dx.view(M, 1, D) for dx in dxs] if dx3s is None else [_row_view(dx, "l2norm_bwd") for dx in dx3s]
    assert all(d.stride() == d3s[0].stride() and d.shape[0] * d.shape[1] == M for d in d3s)
    BD, BM = _rows(D)
    l2norm_bwd_kernel[(triton.cdiv(M, BM), len(ys))](
        ys[0], rstd, dys[0], dxs[0], ys[-1], dys[-1], dxs[-1], M, d3s[0].stride(0), d3s[0].stride(1),
        D=D, GH=d3s[0].shape[1], BM=BM, BD=BD,
    )  # fmt: skip
    return dxs


class L2NormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, eps):
        shape = x.shape
        y, rstd = l2norm_fwd(x.contiguous().view(-1, shape[-1]), eps=eps)
        # the output, not the input: the GDN op saves the normalised q, k anyway, so the input (a copy of a
        # strided q/k view, 47 MB each at the Olmo shape) is freed after the forward
        ctx.save_for_backward(y, rstd)
        return y.view(shape)

    @staticmethod
    def backward(ctx, dy):
        y2, rstd = ctx.saved_tensors
        return l2norm_bwd((y2,), rstd, (dy.contiguous().view(y2.shape),))[0].view(dy.shape), None


def l2norm(x: torch.Tensor, eps: float = L2NORM_EPS) -> torch.Tensor:
    """x / sqrt(sum(x^2) + eps) over the last dim."""
    if not x.is_floating_point():
        raise ValueError(f"l2norm needs a floating-point tensor, got {x.dtype}")
    if use_triton(x):
        return L2NormFunction.apply(x, eps)
    return l2norm_torch(x, eps)


# ------------------------------------------------------------------------------------------------- gated RMSNorm
def gated_rms_norm_torch(x, gate, weight, eps: float = 1e-5):
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    h = weight * h.to(x.dtype)
    return (h * F.silu(gate.float())).to(x.dtype)


@fast_launch
@triton.jit
def gated_rms_norm_fwd_kernel(x, gate, weight, y, rstd, M, eps, sg_n, sg_h, D: tl.constexpr, GH: tl.constexpr,
                              BM: tl.constexpr, BD: tl.constexpr, H_DTYPE: tl.constexpr):  # fmt: skip
    o_m = tl.program_id(0) * BM + tl.arange(0, BM)
    o_d = tl.arange(0, BD)
    m = (o_m < M)[:, None] & (o_d < D)[None, :]
    p = o_m.to(tl.int64)[:, None] * D + o_d[None, :]
    b_x = tl.load(x + p, mask=m, other=0).to(tl.float32)
    b_g = tl.load(gate + _row_offsets(o_m, o_d, GH, sg_n, sg_h), mask=m, other=0).to(tl.float32)
    b_w = tl.load(weight + o_d, mask=o_d < D, other=0)
    b_r = 1.0 / tl.sqrt(tl.sum(b_x * b_x, 1) / D + eps)
    # the same roundings as the torch module: normalised x in x's dtype, times weight in the promoted dtype
    b_n = (b_x * b_r[:, None]).to(x.dtype.element_ty)
    b_h = (b_w[None, :].to(H_DTYPE) * b_n.to(H_DTYPE)).to(tl.float32)
    b_y = b_h * b_g * tl.sigmoid(b_g)
    tl.store(y + p, b_y.to(y.dtype.element_ty), mask=m)
    tl.store(rstd + o_m, b_r, mask=o_m < M)


@fast_launch
@triton.jit
def gated_rms_norm_bwd_kernel(x, gate, weight, rstd, dy, dx, dgate, dw, y, M, sg_n, sg_h, sdg_n, sdg_h,
                              D: tl.constexpr, GH: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr,
                              STORE_Y: tl.constexpr, H_DTYPE: tl.constexpr):  # fmt: skip
    i_p = tl.program_id(0)
    o_m = i_p * BM + tl.arange(0, BM)
    o_d = tl.arange(0, BD)
    m = (o_m < M)[:, None] & (o_d < D)[None, :]
    p = o_m.to(tl.int64)[:, None] * D + o_d[None, :]
    b_x = tl.load(x + p, mask=m, other=0).to(tl.float32)
    b_g = tl.load(gate + _row_offsets(o_m, o_d, GH, sg_n, sg_h), mask=m, other=0).to(tl.float32)
    b_dy = tl.load(dy + p, mask=m, other=0).to(tl.float32)
    b_w = tl.load(weight + o_d, mask=o_d < D, other=0).to(tl.float32)
    b_r = tl.load(rstd + o_m, mask=o_m < M, other=0)
    b_n = b_x * b_r[:, None]
    b_sg = tl.sigmoid(b_g)
    b_s = b_g * b_sg
    b_h = b_n * b_w[None, :]
    b_dh = b_dy * b_s
    b_dg = b_dy * b_h * b_sg * (1 + b_g * (1 - b_sg))
    tl.store(dgate + _row_offsets(o_m, o_d, GH, sdg_n, sdg_h), b_dg.to(dgate.dtype.element_ty), mask=m)
    tl.store(dw + i_p * D + o_d, tl.sum(b_dh * b_n, 0), mask=o_d < D)
    b_dn = b_dh * b_w[None, :]
    b_dx = b_r[:, None] * (b_dn - b_n * (tl.sum(b_dn * b_n, 1) / D)[:, None])
    tl.store(dx + p, b_dx.to(dx.dtype.element_ty), mask=m)
    if STORE_Y:
        # the forward's output again, with the forward kernel's roundings (bit-identical): the weight gradient of
        # the output projection reads it, and keeping it from the forward would cost a y-sized activation
        b_nr = b_n.to(x.dtype.element_ty)
        b_hr = (tl.load(weight + o_d, mask=o_d < D, other=0)[None, :].to(H_DTYPE) * b_nr.to(H_DTYPE)).to(tl.float32)
        tl.store(y + p, (b_hr * b_g * b_sg).to(y.dtype.element_ty), mask=m)


_TL = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


def _gate_rows(gate: torch.Tensor) -> torch.Tensor:
    """The gate as [N, GH, D] with a unit stride over D: a view when the leading dims merge (the layer's z, a
    column slice of the input projection, does), else a contiguous copy."""
    D = gate.shape[-1]
    GH = gate.shape[-2] if gate.dim() >= 2 else 1
    if gate.stride(-1) == 1:
        try:
            return gate.view(-1, GH, D)
        except RuntimeError:  # leading dims that do not merge into one stride
            pass
    return gate.contiguous().view(-1, GH, D)


def gated_rms_norm_fwd(x2: torch.Tensor, g3: torch.Tensor, weight: torch.Tensor, eps: float):
    """(y [M, D], rstd [M]) for x2 [M, D] contiguous and the gate g3 [M / GH, GH, D] (``_gate_rows``)."""
    M, D = x2.shape
    y = torch.empty_like(x2)
    rstd = torch.empty(M, dtype=torch.float32, device=x2.device)
    BD, BM = _rows(D)
    h_dtype = _TL[torch.promote_types(weight.dtype, x2.dtype)]
    gated_rms_norm_fwd_kernel[(triton.cdiv(M, BM),)](
        x2, g3, weight.contiguous(), y, rstd, M, eps, g3.stride(0), g3.stride(1), D=D, GH=g3.shape[1], BM=BM,
        BD=BD, H_DTYPE=h_dtype,
    )  # fmt: skip
    return y, rstd


def gated_rms_norm_bwd(x2, g3, weight, rstd, dy2, dgate3=None, y_out=None):
    """(dx [M, D], dgate, dweight) for the forward's x2, g3, rstd and dy2 [M, D] (contiguous). dgate: written into
    ``dgate3`` (laid out as g3: [M / GH, GH, D], unit stride over D) when given, else a new contiguous [M, D].
    With ``y_out`` ([M, D] contiguous) the forward's output is recomputed into it, bit-identical to the forward's."""
    M, D = x2.shape
    GH = g3.shape[1]
    BD, BM = _rows(D)
    n_prog = triton.cdiv(M, BM)
    dx = torch.empty_like(x2)
    dgate = torch.empty(M, D, dtype=g3.dtype, device=g3.device) if dgate3 is None else dgate3
    sdg_n, sdg_h = (GH * D, D) if dgate3 is None else (dgate3.stride(0), dgate3.stride(1))
    dw = torch.empty(n_prog, D, dtype=torch.float32, device=x2.device)
    # 2 warps: 0.159 / 0.299 ms against 0.226 / 0.436 with 4 at the mixer's shape, H = 15 / 30 (T = 8192, D = 192,
    # y recomputed; bench/gdn_config_sweep.py, H100, 2026-11-27)
    gated_rms_norm_bwd_kernel[(n_prog,)](
        x2, g3, weight.contiguous(), rstd, dy2, dx, dgate, dw, dx if y_out is None else y_out, M, g3.stride(0),
        g3.stride(1), sdg_n, sdg_h, D=D, GH=GH, BM=BM, BD=BD, STORE_Y=y_out is not None,
        H_DTYPE=_TL[torch.promote_types(weight.dtype, x2.dtype)], num_warps=2,
    )  # fmt: skip
    return dx, dgate, dw.sum(0).to(weight.dtype)


class GatedRMSNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gate, weight, eps):
        shape = x.shape
        x2 = x.contiguous().view(-1, shape[-1])
        g3 = _gate_rows(gate)
        y, rstd = gated_rms_norm_fwd(x2, g3, weight, eps)
        # the gate as given: a view of the input projection is saved without a copy (its base is kept anyway)
        ctx.save_for_backward(x2, g3, weight, rstd)
        return y.view(shape)

    @staticmethod
    def backward(ctx, dy):
        x2, g3, weight, rstd = ctx.saved_tensors
        dx, dgate, dw = gated_rms_norm_bwd(x2, g3, weight, rstd, dy.contiguous().view(x2.shape))
        return dx.view(dy.shape), dgate.view(dy.shape), dw, None


def gated_rms_norm(x: torch.Tensor, gate: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """RMSNorm(x) * weight * silu(gate) over the last dim (Qwen3NextRMSNormGated / Olmo Hybrid's GDN output norm)."""
    if x.shape != gate.shape:
        raise ValueError(f"x and gate must have the same shape, got {tuple(x.shape)} and {tuple(gate.shape)}")
    if weight.shape != (x.shape[-1],):
        raise ValueError(f"weight must be [{x.shape[-1]}], got {tuple(weight.shape)}")
    if use_triton(x):
        if x.dtype not in _TL or weight.dtype not in _TL:
            raise ValueError(f"unsupported dtypes x={x.dtype}, weight={weight.dtype}")
        return GatedRMSNormFunction.apply(x, gate, weight, eps)
    return gated_rms_norm_torch(x, gate, weight, eps)


# --------------------------------------------------------------------------------------------------------- RMSNorm
# Olmo's RMSNorm (transformers' Olmo3RMSNorm), the model's block and QK norms:
#     h = x.float(); h = h * rsqrt(sum(h^2) / width + eps); out = (weight * h).to(x.dtype)
# As torch ops it is ~7 kernels forward and more backward, with fp32 copies of x saved for the backward (at 7B widths
# ~1.3 ms per norm per fwd+bwd at T = 8192). Here: one kernel each way. Under tensor parallelism the QK norm spans a
# width split over the TP ranks: the per-row sums (of squares forward, of dh * h backward) are all-reduced between a
# statistics kernel and the normalising one.
def rms_norm_torch(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return (weight * h).to(x.dtype)


@fast_launch
@triton.jit
def rms_sumsq_kernel(x, ss, M, D: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr):
    o_m = tl.program_id(0) * BM + tl.arange(0, BM)
    o_d = tl.arange(0, BD)
    m = (o_m < M)[:, None] & (o_d < D)[None, :]
    b_x = tl.load(x + o_m.to(tl.int64)[:, None] * D + o_d[None, :], mask=m, other=0).to(tl.float32)
    tl.store(ss + o_m, tl.sum(b_x * b_x, 1), mask=o_m < M)


@fast_launch
@triton.jit
def rms_norm_fwd_kernel(x, weight, y, ss, rstd, M, eps, inv_width, D: tl.constexpr, BM: tl.constexpr,
                        BD: tl.constexpr, HAS_SS: tl.constexpr):  # fmt: skip
    o_m = tl.program_id(0) * BM + tl.arange(0, BM)
    o_d = tl.arange(0, BD)
    m = (o_m < M)[:, None] & (o_d < D)[None, :]
    p = o_m.to(tl.int64)[:, None] * D + o_d[None, :]
    b_x = tl.load(x + p, mask=m, other=0).to(tl.float32)
    if HAS_SS:  # the full-width sum of squares, all-reduced over TP
        b_ss = tl.load(ss + o_m, mask=o_m < M, other=0)
    else:
        b_ss = tl.sum(b_x * b_x, 1)
    b_r = tl.math.rsqrt(b_ss * inv_width + eps)
    b_w = tl.load(weight + o_d, mask=o_d < D, other=0).to(tl.float32)
    tl.store(y + p, (b_w[None, :] * (b_x * b_r[:, None])).to(y.dtype.element_ty), mask=m)
    tl.store(rstd + o_m, b_r, mask=o_m < M)


@fast_launch
@triton.jit
def rms_norm_bwd_kernel(x, weight, rstd, dy, dx, dw, rowdot, M, inv_width, D: tl.constexpr, BM: tl.constexpr,
                        BD: tl.constexpr, ROW_BLOCKS: tl.constexpr, PHASE: tl.constexpr):  # fmt: skip
    """PHASE 0: dx and the dw partial, with the per-row sum(dh * h) taken here (the whole width is local).
    PHASE 1: only the local per-row sums, into rowdot (to be all-reduced). PHASE 2: dx and dw from rowdot."""
    i_p = tl.program_id(0)
    o_d = tl.arange(0, BD)
    m_d = o_d < D
    b_w = tl.load(weight + o_d, mask=m_d, other=0).to(tl.float32)
    b_dw = tl.zeros([BD], dtype=tl.float32)
    for i_b in range(ROW_BLOCKS):  # several row blocks per program: one dw partial per program, not per block
        o_m = (i_p * ROW_BLOCKS + i_b) * BM + tl.arange(0, BM)
        m_m = o_m < M
        m = m_m[:, None] & m_d[None, :]
        p = o_m.to(tl.int64)[:, None] * D + o_d[None, :]
        b_r = tl.load(rstd + o_m, mask=m_m, other=0)
        b_h = tl.load(x + p, mask=m, other=0).to(tl.float32) * b_r[:, None]
        b_dy = tl.load(dy + p, mask=m, other=0).to(tl.float32)
        b_dh = b_dy * b_w[None, :]
        if PHASE == 1:
            tl.store(rowdot + o_m, tl.sum(b_dh * b_h, 1), mask=m_m)
        else:
            if PHASE == 0:
                b_dot = tl.sum(b_dh * b_h, 1)
            else:
                b_dot = tl.load(rowdot + o_m, mask=m_m, other=0)
            b_dx = b_r[:, None] * (b_dh - b_h * (b_dot * inv_width)[:, None])
            tl.store(dx + p, b_dx.to(dx.dtype.element_ty), mask=m)
            b_dw += tl.sum(b_dy * b_h, 0)
    if PHASE != 1:
        tl.store(dw + i_p * D + o_d, b_dw, mask=m_d)


BWD_PROGRAMS = 512  # ~4 per SM on an H100


def _rms_rows(D: int) -> tuple[int, int]:
    BD = triton.next_power_of_2(D)
    return BD, max(1, min(16, 4096 // BD))  # <= 32 fp32 values per thread per live tile at 4 warps


def _all_reduce(t: torch.Tensor, group) -> torch.Tensor:
    if group is not None:
        torch.distributed.all_reduce(t, group=group)
    return t


class AllReduceSum(torch.autograd.Function):
    """All-reduce in forward and in backward: the gradient of a TP-wide sum reaches every part."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return _all_reduce(x.clone(), group)

    @staticmethod
    def backward(ctx, grad):
        return _all_reduce(grad.clone(), ctx.group), None


class RMSNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps, width, group):
        shape = x.shape
        D = shape[-1]
        x2 = x.contiguous().view(-1, D)
        M = x2.shape[0]
        BD, BM = _rms_rows(D)
        grid = (triton.cdiv(M, BM),)
        ss = None
        if group is not None:
            ss = torch.empty(M, dtype=torch.float32, device=x.device)
            rms_sumsq_kernel[grid](x2, ss, M, D=D, BM=BM, BD=BD)
            _all_reduce(ss, group)
        y = torch.empty_like(x2)
        rstd = torch.empty(M, dtype=torch.float32, device=x.device)
        rms_norm_fwd_kernel[grid](
            x2, weight, y, ss, rstd, M, eps, 1.0 / width, D=D, BM=BM, BD=BD, HAS_SS=ss is not None
        )
        ctx.save_for_backward(x2, weight, rstd)
        ctx.width, ctx.group = width, group
        return y.view(shape)

    @staticmethod
    def backward(ctx, dy):
        x2, weight, rstd = ctx.saved_tensors
        M, D = x2.shape
        BD, BM = _rms_rows(D)
        dy2 = dy.contiguous().view(M, D)
        # at most BWD_PROGRAMS programs, each over several row blocks: a small dw partial to sum
        row_blocks = max(1, triton.cdiv(triton.cdiv(M, BM), BWD_PROGRAMS))
        n_prog = triton.cdiv(M, BM * row_blocks)
        dx = torch.empty_like(x2)
        dw = torch.empty(n_prog, D, dtype=torch.float32, device=x2.device)
        rowdot = None
        args = (M, 1.0 / ctx.width)
        kw = {"D": D, "BM": BM, "BD": BD, "ROW_BLOCKS": row_blocks}
        if ctx.group is not None:
            rowdot = torch.empty(M, dtype=torch.float32, device=x2.device)
            rms_norm_bwd_kernel[(n_prog,)](x2, weight, rstd, dy2, dx, dw, rowdot, *args, PHASE=1, **kw)
            _all_reduce(rowdot, ctx.group)
        rms_norm_bwd_kernel[(n_prog,)](
            x2, weight, rstd, dy2, dx, dw, rowdot, *args, PHASE=0 if rowdot is None else 2, **kw
        )
        return dx.view(dy.shape), dw.sum(0).to(weight.dtype), None, None, None


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, full_width: int | None = None, group=None
) -> torch.Tensor:
    """Olmo's RMSNorm over the last dim: fp32 statistics, ``(weight * x * rsqrt(mean(x^2) + eps)).to(x.dtype)``.

    With ``group`` (a process group of size > 1) the last dim is this rank's slice of a ``full_width`` feature dim
    split over the group, and the mean square is taken over the full width (the TP-split QK norm).
    """
    if weight.shape != (x.shape[-1],):
        raise ValueError(f"weight must be [{x.shape[-1]}], got {tuple(weight.shape)}")
    if group is not None and group.size() == 1:
        group = None
    width = x.shape[-1] if full_width is None else int(full_width)
    if group is None and width != x.shape[-1]:
        raise ValueError(f"full_width={width} differs from the last dim {x.shape[-1]} but no group splits it")
    if use_triton(x):
        if x.dtype not in _TL or weight.dtype not in _TL:
            raise ValueError(f"unsupported dtypes x={x.dtype}, weight={weight.dtype}")
        return RMSNormFunction.apply(x, weight, eps, width, group)
    if group is None:
        return rms_norm_torch(x, weight, eps)
    h = x.float()
    sum_sq = AllReduceSum.apply(h.pow(2).sum(-1, keepdim=True), group)
    h = h * torch.rsqrt(sum_sq / width + eps)
    return (weight * h).to(x.dtype)
