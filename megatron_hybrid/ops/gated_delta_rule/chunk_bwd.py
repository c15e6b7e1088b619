"""The per-chunk backward kernels (README.md derives every term).

``chunk_bwd_dv_local``, one program per (chunk, value head), before the reverse state pass: the intra-chunk part of
the gradient of v_new, ``scale (q k^T * D)^T do``. It does not depend on the state, so computing it here, fully
parallel, takes a q k^T product, its decay mask and a 64 x 64 x V product off the sequential pass's critical path
(``chunk_h.chunk_bwd_dh_kernel`` reads it back and adds the state part).

``chunk_bwd_dqk``, one program per (K block, chunk, value head), walks V once and accumulates
``do h^T``, ``v_new dh^T``, ``dv2 h^T`` (its K block) and ``do v_new^T``; from them it writes dq (final), the
output/state part of dk, dw = -dv2 h^T (both in the input dtype), and its K block's share of dG.
``chunk_wy_bwd`` (in wy.py) then takes dw and du = dv2 through the WY representation: dk, dv, dbeta, dg.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .utils import CHUNK, autotune, chunk_program, is_interpret, pick_block

# Two stages with a 168-register cap (3 programs per SM at 4 warps) led this list from an earlier sweep (0.220 /
# 0.439 ms at H = 15 / 30); by session 15's code it was the slowest: 0.315 / 0.644 ms, against 0.235 / 0.457 with
# 2 stages uncapped and 0.216 / 0.428 with 3 (one config at a time, H100, Triton 3.6, 2026-11-27, bench/results/
# gpu_check/session16/callB), so it was dropped. 2 stages stay first (MEGATRON_HYBRID_AUTOTUNE=0 takes the first):
# with fp32 inputs 3 stages need 232 KiB of shared memory, over the H100's 227 (the autotuner skips a config that
# does not fit; a single config cannot be skipped). num_stages = 1 with BV = 64 and 4 warps is left out: it hit an
# illegal memory access there (Triton 3.6 on Hopper).
DQK_CONFIGS = [triton.Config({"BV": 64}, num_warps=4, num_stages=s) for s in (2, 3)]


@autotune(configs=DQK_CONFIGS, key=["H", "HV", "K", "V", "BK"])
@triton.jit(do_not_specialize=["T"])
def chunk_bwd_dqk_kernel(
    q,
    k,
    gcum,
    h,
    dh,
    v_new,
    dv2,
    do,
    dq,
    dk,
    dw,
    dgp,
    cu_seqlens,
    chunk_indices,
    scale,
    T,
    TOT,
    H: tl.constexpr,
    HV: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    IS_VARLEN: tl.constexpr,
):
    i_k = tl.program_id(0)
    i_hv, i_h, i_nt, t0, Tc, o_t, m_t = chunk_program(
        tl.program_id(1), tl.program_id(2), cu_seqlens, chunk_indices, T, H, HV, BT, IS_VARLEN
    )
    o_k = i_k * BK + tl.arange(0, BK)
    m_k = o_k < K
    m_tk = m_t[:, None] & m_k[None, :]
    m_tt = m_t[:, None] & m_t[None, :]

    # the loads used after the V loop are issued before it, so that their latency hides behind the loop (issued after
    # it, the decay mask waited on G: 20% of this kernel's stall samples; ncu, bench/results/gpu_check/session14/callC)
    o_tk = (t0 * H + i_h) * K + o_t[:, None] * (H * K) + o_k[None, :]
    b_q = tl.load(q + o_tk, mask=m_tk, other=0)
    b_k = tl.load(k + o_tk, mask=m_tk, other=0)
    b_G = tl.load(gcum + t0 * HV + i_hv + o_t * HV, mask=m_t, other=0.0)
    b_Gl = tl.load(gcum + (t0 + Tc - 1) * HV + i_hv)
    b_qT = tl.load(
        q + (t0 * H + i_h) * K + o_t[None, :] * (H * K) + o_k[:, None], mask=(o_k < K)[:, None] & m_t[None, :], other=0
    )

    p_h = h + (i_nt * HV + i_hv) * K * V
    p_dh = dh + (i_nt * HV + i_hv) * K * V
    b_dqs = tl.zeros([BT, BK], dtype=tl.float32)  # do h^T
    b_dks = tl.zeros([BT, BK], dtype=tl.float32)  # v_new dh^T
    b_dw = tl.zeros([BT, BK], dtype=tl.float32)  # -dv2 h^T
    b_dov = tl.zeros([BT, BT], dtype=tl.float32)  # do v_new^T
    b_hdh = tl.zeros([BK, BK], dtype=tl.float32)  # h dh^T: its diagonal is the sum over V of h * dh
    for i_v in range(tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_v = o_v < V
        m_tv = m_t[:, None] & m_v[None, :]
        o_tv = (t0 * HV + i_hv) * V + o_t[:, None] * (HV * V) + o_v[None, :]
        m_hv = m_k[None, :] & m_v[:, None]
        # every tile here feeds only products, so Triton's software pipeline prefetches them all: with the h * dh sum
        # taken elementwise from the h^T tile, that load was waited on each step (29% of the stall samples, ncu as
        # above); h is read a second time, untransposed, from L2 for the product h dh^T
        b_hT = tl.load(p_h + o_k[None, :] * V + o_v[:, None], mask=m_hv, other=0)  # [BV, BK]
        b_h = tl.load(p_h + o_k[:, None] * V + o_v[None, :], mask=m_k[:, None] & m_v[None, :], other=0)  # [BK, BV]
        b_dhT = tl.load(p_dh + o_k[None, :] * V + o_v[:, None], mask=m_hv, other=0)
        b_do = tl.load(do + o_tv, mask=m_tv, other=0)
        b_vn = tl.load(v_new + o_tv, mask=m_tv, other=0)
        b_dv2 = tl.load(dv2 + o_tv, mask=m_tv, other=0)
        b_dqs += tl.dot(b_do, b_hT.to(b_do.dtype))
        b_dks += tl.dot(b_vn, b_dhT.to(b_vn.dtype))
        b_dw -= tl.dot(b_dv2, b_hT.to(b_dv2.dtype))
        b_dov += tl.dot(b_do, tl.trans(b_vn.to(b_do.dtype)))
        b_hdh += tl.dot(b_h, b_dhT.to(b_h.dtype))
    b_gh = tl.sum(tl.where(o_k[:, None] == o_k[None, :], b_hdh, 0.0), 1)

    b_eG = tl.where(m_t, tl.exp(b_G), 0.0)
    b_el = tl.where(m_t, tl.exp(b_Gl - b_G), 0.0)
    m_D = (o_t[:, None] >= o_t[None, :]) & m_tt
    b_D = tl.exp(tl.where(m_D, b_G[:, None] - b_G[None, :], float("-inf")))

    # o = scale (exp(G) q h + (q k^T * D) v_new)
    b_dqs = b_dqs * (b_eG * scale)[:, None]
    b_dP = b_dov * b_D * scale
    b_dPc = b_dP.to(b_k.dtype)
    b_dq = b_dqs + tl.dot(b_dPc, b_k)
    # dP^T q, computed as (q^T dP)^T with q^T loaded from memory: a transposed register tensor as the first dot
    # operand is miscompiled by Triton 3.6 on Hopper (invalid shared-memory reads; the bug behind fla issue 640)
    b_dk = tl.trans(tl.dot(b_qT, b_dPc))
    b_M = b_dP * tl.dot(b_q, tl.trans(b_k))
    b_qf = b_q.to(tl.float32)
    b_kf = b_k.to(tl.float32)
    b_dG = tl.sum(b_qf * b_dqs, 1) + tl.sum(b_M, 1) - tl.sum(b_M, 0)
    # h' = exp(G_l) h + (exp(G_l - G) k)^T v_new
    b_dks = b_dks * b_el[:, None]
    b_dk += b_dks
    b_s = tl.sum(b_kf * b_dks, 1)
    b_dG -= b_s
    b_dG += tl.where(o_t == Tc - 1, tl.exp(b_Gl) * tl.sum(b_gh, 0) + tl.sum(b_s, 0), 0.0)

    o_tkv = (t0 * HV + i_hv) * K + o_t[:, None] * (HV * K) + o_k[None, :]
    tl.store(dq + o_tkv, b_dq.to(dq.dtype.element_ty), mask=m_tk)
    tl.store(dk + o_tkv, b_dk.to(dk.dtype.element_ty), mask=m_tk)
    tl.store(dw + o_tkv, b_dw.to(dw.dtype.element_ty), mask=m_tk)
    tl.store(dgp + i_k * TOT + t0 * HV + i_hv + o_t * HV, b_dG, mask=m_t)


def chunk_bwd_dqk(q, k, gcum, h, dh, v_new, dv2, do, scale, meta):
    """Returns dq ([B, T, HV, K], final), dk_part (output/state part) and dw (both in q's dtype, or fp32 with
    MEGATRON_HYBRID_GDN_FP32_PARTIALS=1), dG partials [NK, B, T, HV] (fp32)."""
    B, T, H, K = q.shape
    HV, V = do.shape[2], do.shape[3]
    BK = pick_block(K, 64)
    NK = triton.cdiv(K, BK)
    dq = torch.empty(B, T, HV, K, dtype=torch.float32 if HV != H else q.dtype, device=q.device)
    # dk_part and dw are stored in the input dtype (16-bit inputs: half the traffic and 2 x 47 MB less at the Olmo
    # shape); MEGATRON_HYBRID_GDN_FP32_PARTIALS=1 keeps them in fp32. CPU emulation of the GPU roundings on the g = 0
    # edge case: no measurable change in any gradient (bench/KERNELS.md, 2026-11-26 session 2).
    pdt = torch.float32 if os.environ.get("MEGATRON_HYBRID_GDN_FP32_PARTIALS", "0") == "1" else q.dtype
    dk = torch.empty(B, T, HV, K, dtype=pdt, device=q.device)
    dw = torch.empty(B, T, HV, K, dtype=pdt, device=q.device)
    dgp = torch.empty(NK, B, T, HV, dtype=torch.float32, device=q.device)
    if is_interpret():
        chunk_bwd_dqk_kernel.configs[0].kwargs.update({"BV": pick_block(V, 128)})
    chunk_bwd_dqk_kernel[(NK, meta["NT"], B * HV)](
        q, k, gcum, h, dh, v_new, dv2, do, dq, dk, dw, dgp, meta["cu_seqlens"], meta["chunk_indices"], scale, T,
        B * T * HV, H=H, HV=HV, K=K, V=V, BT=CHUNK, BK=BK, IS_VARLEN=meta["cu_seqlens"] is not None,
    )  # fmt: skip
    return dq, dk, dw, dgp


@autotune(configs=[triton.Config({"BV": 64}, num_warps=w, num_stages=2) for w in (4, 8)], key=["H", "HV", "K", "V"])
@triton.jit(do_not_specialize=["T"])
def chunk_bwd_dv_local_kernel(
    q, k, gcum, do, dvl, cu_seqlens, chunk_indices, scale, T,
    H: tl.constexpr, HV: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, IS_VARLEN: tl.constexpr,
):  # fmt: skip
    i_hv, i_h, i_nt, t0, Tc, o_t, m_t = chunk_program(
        tl.program_id(0), tl.program_id(1), cu_seqlens, chunk_indices, T, H, HV, BT, IS_VARLEN
    )
    p_qk = (t0 * H + i_h) * K
    b_A = tl.zeros([BT, BT], dtype=tl.float32)  # k_j . q_i: rows j (keys), columns i (queries)
    for i_k in range(tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = o_k < K
        b_k = tl.load(k + p_qk + o_t[:, None] * (H * K) + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0)
        b_qT = tl.load(q + p_qk + o_t[None, :] * (H * K) + o_k[:, None], mask=m_t[None, :] & m_k[:, None], other=0)
        b_A += tl.dot(b_k, b_qT)
    b_G = tl.load(gcum + t0 * HV + i_hv + o_t * HV, mask=m_t, other=0.0)
    m_A = (o_t[:, None] <= o_t[None, :]) & m_t[:, None] & m_t[None, :]
    b_A = b_A * tl.exp(tl.where(m_A, b_G[None, :] - b_G[:, None], float("-inf"))) * scale
    b_Ac = b_A.to(do.dtype.element_ty)
    for i_v in range(tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_tv = m_t[:, None] & (o_v < V)[None, :]
        o_tv = (t0 * HV + i_hv) * V + o_t[:, None] * (HV * V) + o_v[None, :]
        b_do = tl.load(do + o_tv, mask=m_tv, other=0)
        tl.store(dvl + o_tv, tl.dot(b_Ac, b_do), mask=m_tv)


def chunk_bwd_dv_local(q, k, gcum, do, scale, meta):
    """The intra-chunk part of dv2, ``scale (q k^T * D)^T do``, as [B, T, HV, V] fp32: the state pass adds the
    state's part in fp32 and rounds the sum once, as when one kernel computed both. (Stored in bf16 instead, it
    would save ~0.06 ms at the Olmo shape, but the CPU model of the GPU's roundings put the g = 0 dg error up,
    7.9e-3 -> 8.2e-3, against a 1e-2 bound.)"""
    B, T, H, K = q.shape
    HV, V = do.shape[2], do.shape[3]
    dvl = torch.empty(B, T, HV, V, dtype=torch.float32, device=q.device)
    if is_interpret():
        chunk_bwd_dv_local_kernel.configs[0].kwargs.update({"BV": pick_block(V, 128)})
    chunk_bwd_dv_local_kernel[(meta["NT"], B * HV)](
        q, k, gcum, do, dvl, meta["cu_seqlens"], meta["chunk_indices"], scale, T,
        H=H, HV=HV, K=K, V=V, BT=CHUNK, BK=pick_block(K, 64), IS_VARLEN=meta["cu_seqlens"] is not None,
    )  # fmt: skip
    return dvl
