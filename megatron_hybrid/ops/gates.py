"""The GDN gate math: g = -exp(A_log) * softplus(a + dt_bias) (fp32, log decay) and beta = sigmoid(b) (x2 with
negative eigenvalues allowed). Triton forward/backward on CUDA (or TRITON_INTERPRET=1), torch otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .launch import fast_launch
from .norms import use_triton


def gdn_gates_torch(a, b, A_log, dt_bias, allow_neg_eigval: bool = True):
    g = -A_log.float().exp() * F.softplus(a.float() + dt_bias.float())
    beta = b.sigmoid()
    if allow_neg_eigval:
        beta = beta * 2.0
    return g, beta


@fast_launch
@triton.jit
def gdn_gates_fwd_kernel(a, b, A_log, dt_bias, g, beta, M, HV: tl.constexpr, BM: tl.constexpr, BH: tl.constexpr,
                         MULT: tl.constexpr):  # fmt: skip
    o_m = tl.program_id(0) * BM + tl.arange(0, BM)
    o_h = tl.arange(0, BH)
    m = (o_m < M)[:, None] & (o_h < HV)[None, :]
    p = o_m.to(tl.int64)[:, None] * HV + o_h[None, :]
    b_a = tl.load(a + p, mask=m, other=0).to(tl.float32)
    b_b = tl.load(b + p, mask=m, other=0).to(tl.float32)
    b_A = tl.load(A_log + o_h, mask=o_h < HV, other=0).to(tl.float32)
    b_dt = tl.load(dt_bias + o_h, mask=o_h < HV, other=0).to(tl.float32)
    b_z = b_a + b_dt[None, :]
    b_sp = tl.where(b_z > 20.0, b_z, tl.log(1 + tl.exp(tl.minimum(b_z, 20.0))))
    tl.store(g + p, -tl.exp(b_A)[None, :] * b_sp, mask=m)
    tl.store(beta + p, (tl.sigmoid(b_b) * MULT).to(beta.dtype.element_ty), mask=m)


@fast_launch
@triton.jit
def gdn_gates_bwd_kernel(a, b, A_log, dt_bias, dg, dbeta, da, db, dA, ddt, M, HV: tl.constexpr, BM: tl.constexpr,
                         BH: tl.constexpr, MULT: tl.constexpr):  # fmt: skip
    i_p = tl.program_id(0)
    o_m = i_p * BM + tl.arange(0, BM)
    o_h = tl.arange(0, BH)
    m = (o_m < M)[:, None] & (o_h < HV)[None, :]
    p = o_m.to(tl.int64)[:, None] * HV + o_h[None, :]
    b_a = tl.load(a + p, mask=m, other=0).to(tl.float32)
    b_b = tl.load(b + p, mask=m, other=0).to(tl.float32)
    b_dg = tl.load(dg + p, mask=m, other=0).to(tl.float32)
    b_dbeta = tl.load(dbeta + p, mask=m, other=0).to(tl.float32)
    b_A = tl.exp(tl.load(A_log + o_h, mask=o_h < HV, other=0).to(tl.float32))
    b_dt = tl.load(dt_bias + o_h, mask=o_h < HV, other=0).to(tl.float32)
    b_z = b_a + b_dt[None, :]
    b_sp = tl.where(b_z > 20.0, b_z, tl.log(1 + tl.exp(tl.minimum(b_z, 20.0))))
    b_dsp = tl.where(b_z > 20.0, 1.0, tl.sigmoid(b_z))
    b_da = tl.where(m, -b_dg * b_A[None, :] * b_dsp, 0.0)
    tl.store(da + p, b_da.to(da.dtype.element_ty), mask=m)
    b_sb = tl.sigmoid(b_b)
    tl.store(db + p, (b_dbeta * MULT * b_sb * (1 - b_sb)).to(db.dtype.element_ty), mask=m)
    tl.store(dA + i_p * HV + o_h, tl.sum(tl.where(m, -b_dg * b_A[None, :] * b_sp, 0.0), 0), mask=o_h < HV)
    tl.store(ddt + i_p * HV + o_h, tl.sum(b_da, 0), mask=o_h < HV)


def _blocks(HV: int) -> tuple[int, int]:
    BH = triton.next_power_of_2(HV)
    return BH, max(16, min(256, 2048 // BH))


class GDNGatesFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, A_log, dt_bias, allow_neg_eigval):
        HV = a.shape[-1]
        a2, b2 = a.contiguous().view(-1, HV), b.contiguous().view(-1, HV)
        M = a2.shape[0]
        g = torch.empty(M, HV, dtype=torch.float32, device=a.device)
        beta = torch.empty_like(b2)
        BH, BM = _blocks(HV)
        mult = 2.0 if allow_neg_eigval else 1.0
        gdn_gates_fwd_kernel[(triton.cdiv(M, BM),)](
            a2, b2, A_log.contiguous(), dt_bias.contiguous(), g, beta, M, HV=HV, BM=BM, BH=BH, MULT=mult
        )
        ctx.save_for_backward(a2, b2, A_log, dt_bias)
        ctx.mult = mult
        ctx.shape = a.shape
        return g.view(a.shape), beta.view(b.shape)

    @staticmethod
    def backward(ctx, dg, dbeta):
        a2, b2, A_log, dt_bias = ctx.saved_tensors
        M, HV = a2.shape
        BH, BM = _blocks(HV)
        n_prog = triton.cdiv(M, BM)
        dg = torch.zeros(M, HV, device=a2.device) if dg is None else dg.contiguous().view(M, HV)
        dbeta = torch.zeros_like(b2) if dbeta is None else dbeta.contiguous().view(M, HV)
        da, db = torch.empty_like(a2), torch.empty_like(b2)
        dA = torch.empty(n_prog, HV, dtype=torch.float32, device=a2.device)
        ddt = torch.empty(n_prog, HV, dtype=torch.float32, device=a2.device)
        gdn_gates_bwd_kernel[(n_prog,)](
            a2, b2, A_log.contiguous(), dt_bias.contiguous(), dg, dbeta, da, db, dA, ddt, M,
            HV=HV, BM=BM, BH=BH, MULT=ctx.mult,
        )  # fmt: skip
        return da.view(ctx.shape), db.view(ctx.shape), dA.sum(0).to(A_log.dtype), ddt.sum(0).to(dt_bias.dtype), None


def gdn_gates(a: torch.Tensor, b: torch.Tensor, A_log: torch.Tensor, dt_bias: torch.Tensor,
              allow_neg_eigval: bool = True) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """a, b ``[..., HV]``; A_log, dt_bias ``[HV]``. Returns (g fp32, beta in b's dtype)."""
    HV = a.shape[-1]
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if A_log.shape != (HV,) or dt_bias.shape != (HV,):
        raise ValueError(f"A_log and dt_bias must be [{HV}], got {tuple(A_log.shape)} and {tuple(dt_bias.shape)}")
    if use_triton(a):
        g, beta = GDNGatesFunction.apply(a, b, A_log, dt_bias, allow_neg_eigval)
        return g, beta
    return gdn_gates_torch(a, b, A_log, dt_bias, allow_neg_eigval)
