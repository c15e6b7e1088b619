"""Per-chunk output (forward): o = scale * ((exp(G) q) h + (q k^T * D) v_new), D_ij = exp(G_i - G_j) for i >= j.

One program per (V block, chunk, value head); K is walked in blocks that divide it (96 = 3 x 32).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .utils import CHUNK, autotune, chunk_bounds, is_interpret, pick_block


# 8 warps, 3 stages first: 0.108 ms against 0.121 for (4 warps, 2 stages) at the Olmo TP=2 slice
# (bench/gdn_config_sweep.py, H100, Triton 3.6, 2026-11-27).
@autotune(
    configs=[triton.Config({"BV": 64}, num_warps=w, num_stages=s) for w, s in ((8, 3), (4, 2))],
    key=["H", "HV", "K", "V", "BK"],
)
@triton.jit(do_not_specialize=["T"])
def chunk_fwd_o_kernel(
    q, k, v_new, h, gcum, o, cu_seqlens, chunk_indices, scale, T,
    H: tl.constexpr, HV: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, IS_VARLEN: tl.constexpr,
):  # fmt: skip
    i_v, i_t, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_hv = i_bh % HV
    i_h = i_hv // (HV // H)
    i_c, bos, eos, i_nt = chunk_bounds(i_t, i_bh, cu_seqlens, chunk_indices, T, HV, BT, IS_VARLEN)
    t0 = bos + i_c * BT
    o_t = tl.arange(0, BT)
    m_t = o_t < (eos - t0)
    o_v = i_v * BV + tl.arange(0, BV)
    m_tv = m_t[:, None] & (o_v < V)[None, :]
    p_q = q + (t0 * H + i_h) * K
    p_k = k + (t0 * H + i_h) * K
    p_h = h + (i_nt * HV + i_hv) * K * V

    b_o = tl.zeros([BT, BV], dtype=tl.float32)
    b_A = tl.zeros([BT, BT], dtype=tl.float32)
    for i_k in range(tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = o_k < K
        b_q = tl.load(p_q + o_t[:, None] * (H * K) + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0)
        b_kT = tl.load(p_k + o_t[None, :] * (H * K) + o_k[:, None], mask=m_t[None, :] & m_k[:, None], other=0)
        b_h = tl.load(p_h + o_k[:, None] * V + o_v[None, :], mask=m_k[:, None] & (o_v < V)[None, :], other=0)
        b_o += tl.dot(b_q, b_h.to(b_q.dtype))
        b_A += tl.dot(b_q, b_kT)
    b_G = tl.load(gcum + t0 * HV + i_hv + o_t * HV, mask=m_t, other=0.0)
    m_A = (o_t[:, None] >= o_t[None, :]) & m_t[:, None] & m_t[None, :]
    b_A = b_A * tl.exp(tl.where(m_A, b_G[:, None] - b_G[None, :], float("-inf")))
    o_tv = (t0 * HV + i_hv) * V + o_t[:, None] * (HV * V) + o_v[None, :]
    b_vn = tl.load(v_new + o_tv, mask=m_tv, other=0)
    b_o = b_o * tl.exp(b_G)[:, None] + tl.dot(b_A.to(b_vn.dtype), b_vn)
    tl.store(o + o_tv, (b_o * scale).to(o.dtype.element_ty), mask=m_tv)


def chunk_fwd_o(q, k, v_new, h, gcum, scale, meta):
    B, T, H, K = q.shape
    HV, V = v_new.shape[2], v_new.shape[3]
    o = torch.empty_like(v_new)
    if is_interpret():
        chunk_fwd_o_kernel.configs[0].kwargs.update({"BV": pick_block(V, 128)})

    def grid(m):
        return (triton.cdiv(V, m["BV"]), meta["NT"], B * HV)

    chunk_fwd_o_kernel[grid](
        q, k, v_new, h, gcum, o, meta["cu_seqlens"], meta["chunk_indices"], scale, T,
        H=H, HV=HV, K=K, V=V, BT=CHUNK, BK=pick_block(K, 64), IS_VARLEN=meta["cu_seqlens"] is not None,
    )  # fmt: skip
    return o
