"""Per-chunk output (forward): o = scale * ((exp(G) q) h + (q k^T * D) v_new), D_ij = exp(G_i - G_j) for i >= j.

One program per (chunk, value head): q k^T once, then V in blocks; q is held as up to four K blocks (96 = 3 x 32).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .chunk_h import _load_hblock, _load_kblock
from .utils import CHUNK, autotune, chunk_program, is_interpret, pick_block, state_block_k


@triton.jit
def _normalise_q(p_q, p_out, p_rstd, o_t, m_t, write, eps, BK: tl.constexpr, K: tl.constexpr, H: tl.constexpr):
    """A chunk's q rows (up to four K blocks) L2-normalised, q = x / sqrt(sum x^2 + eps) rounded to q's dtype, as
    ``norms.l2norm_fwd`` computes it; written with their 1 / norm where ``write`` (one program per key head)."""
    b_x0 = _load_kblock(p_q, o_t, m_t, 0, BK, K, H * K, False).to(tl.float32)
    b_ss = tl.sum(b_x0 * b_x0, 1)
    b_x1 = tl.zeros_like(b_x0)
    b_x2 = tl.zeros_like(b_x0)
    b_x3 = tl.zeros_like(b_x0)
    if K > BK:
        b_x1 = _load_kblock(p_q, o_t, m_t, 1, BK, K, H * K, False).to(tl.float32)
        b_ss += tl.sum(b_x1 * b_x1, 1)
    if K > 2 * BK:
        b_x2 = _load_kblock(p_q, o_t, m_t, 2, BK, K, H * K, False).to(tl.float32)
        b_ss += tl.sum(b_x2 * b_x2, 1)
    if K > 3 * BK:
        b_x3 = _load_kblock(p_q, o_t, m_t, 3, BK, K, H * K, False).to(tl.float32)
        b_ss += tl.sum(b_x3 * b_x3, 1)
    b_rs = 1.0 / tl.sqrt(b_ss + eps)
    tl.store(p_rstd + o_t * H, b_rs, mask=m_t & write)
    ty = p_out.dtype.element_ty
    b_q0 = (b_x0 * b_rs[:, None]).to(ty)
    b_q1 = (b_x1 * b_rs[:, None]).to(ty)
    b_q2 = (b_x2 * b_rs[:, None]).to(ty)
    b_q3 = (b_x3 * b_rs[:, None]).to(ty)
    _store_kblock(p_out, b_q0, o_t, m_t & write, 0, BK, K, H * K)
    if K > BK:
        _store_kblock(p_out, b_q1, o_t, m_t & write, 1, BK, K, H * K)
    if K > 2 * BK:
        _store_kblock(p_out, b_q2, o_t, m_t & write, 2, BK, K, H * K)
    if K > 3 * BK:
        _store_kblock(p_out, b_q3, o_t, m_t & write, 3, BK, K, H * K)
    return b_q0, b_q1, b_q2, b_q3


@triton.jit
def _store_kblock(p, b, o_t, m_t, i_k, BK: tl.constexpr, K: tl.constexpr, stride):
    o_k = i_k * BK + tl.arange(0, BK)
    tl.store(p + o_t[:, None] * stride + o_k[None, :], b, mask=m_t[:, None] & (o_k < K)[None, :])


# One program per (chunk, value head), walking V inside: q k^T and its decay mask once per chunk instead of once per V
# block (3 at V = 192, each re-reading q and k), for 3x fewer programs. Until 2026-11-27 one program per (V block,
# chunk, value head): 0.208 ms at T=8192, H=30 (8 warps, 3 stages), 0.108 ms at H=15.
@autotune(
    configs=[triton.Config({"BV": 64}, num_warps=w, num_stages=s) for w, s in ((8, 3), (4, 3), (4, 2), (8, 2))],
    key=["H", "HV", "K", "V", "BK", "STORE_A", "NORM_Q"],  # tuned apart with and without the extra stores
)
@triton.jit(do_not_specialize=["T"])
def chunk_fwd_o_kernel(
    q, k, v_new, h, gcum, o, Aqk, q_out, q_rstd, cu_seqlens, chunk_indices, scale, T, eps,
    H: tl.constexpr, HV: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, STORE_A: tl.constexpr, NORM_Q: tl.constexpr, IS_VARLEN: tl.constexpr,
):  # fmt: skip
    i_hv, i_h, i_nt, t0, Tc, o_t, m_t = chunk_program(
        tl.program_id(0), tl.program_id(1), cu_seqlens, chunk_indices, T, H, HV, BT, IS_VARLEN
    )
    p_q = q + (t0 * H + i_h) * K
    p_k = k + (t0 * H + i_h) * K
    p_h = h + (i_nt * HV + i_hv) * K * V

    # q held whole through the V loop as up to four K blocks (loaded once; reloading it per V block left each inner
    # product waiting on it: 45% of this kernel's stall samples, ncu, bench/results/gpu_check/session14/callC).
    # fwd_o 0.202 -> 0.190 ms at T=8192, H=30, 0.105 -> 0.099 at H=15 (callE, autotuned, alternating processes)
    if NORM_Q:  # q arrives raw: its rows L2-normalised here (whole rows are held), stored for the backward
        b_q0, b_q1, b_q2, b_q3 = _normalise_q(p_q, q_out + (t0 * H + i_h) * K, q_rstd + t0 * H + i_h, o_t, m_t,
                                              (i_hv % (HV // H)) == 0, eps, BK, K, H)  # fmt: skip
        b_A = tl.dot(b_q0, _load_kblock(p_k, o_t, m_t, 0, BK, K, H * K, True))
        if K > BK:
            b_A += tl.dot(b_q1, _load_kblock(p_k, o_t, m_t, 1, BK, K, H * K, True))
        if K > 2 * BK:
            b_A += tl.dot(b_q2, _load_kblock(p_k, o_t, m_t, 2, BK, K, H * K, True))
        if K > 3 * BK:
            b_A += tl.dot(b_q3, _load_kblock(p_k, o_t, m_t, 3, BK, K, H * K, True))
    else:
        b_q0 = _load_kblock(p_q, o_t, m_t, 0, BK, K, H * K, False)
        b_A = tl.dot(b_q0, _load_kblock(p_k, o_t, m_t, 0, BK, K, H * K, True))
        if K > BK:
            b_q1 = _load_kblock(p_q, o_t, m_t, 1, BK, K, H * K, False)
            b_A += tl.dot(b_q1, _load_kblock(p_k, o_t, m_t, 1, BK, K, H * K, True))
        if K > 2 * BK:
            b_q2 = _load_kblock(p_q, o_t, m_t, 2, BK, K, H * K, False)
            b_A += tl.dot(b_q2, _load_kblock(p_k, o_t, m_t, 2, BK, K, H * K, True))
        if K > 3 * BK:
            b_q3 = _load_kblock(p_q, o_t, m_t, 3, BK, K, H * K, False)
            b_A += tl.dot(b_q3, _load_kblock(p_k, o_t, m_t, 3, BK, K, H * K, True))
    b_G = tl.load(gcum + t0 * HV + i_hv + o_t * HV, mask=m_t, other=0.0)
    m_A = (o_t[:, None] >= o_t[None, :]) & m_t[:, None] & m_t[None, :]
    b_Ac = (b_A * tl.exp(tl.where(m_A, b_G[:, None] - b_G[None, :], float("-inf")))).to(v_new.dtype.element_ty)
    if STORE_A:  # for the backward's reverse pass: dv2's intra-chunk part is scale (q k^T * D)^T do
        o_A = (t0 * HV + i_hv) * BT + o_t[:, None] * (HV * BT) + o_t[None, :]
        tl.store(Aqk + o_A, b_Ac.to(Aqk.dtype.element_ty), mask=m_t[:, None])
    b_eG = tl.exp(b_G)
    for i_v in range(tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_tv = m_t[:, None] & (o_v < V)[None, :]
        b_o = tl.dot(b_q0, _load_hblock(p_h, 0, o_v, BK, K, V).to(b_q0.dtype))
        if K > BK:
            b_o += tl.dot(b_q1, _load_hblock(p_h, 1, o_v, BK, K, V).to(b_q0.dtype))
        if K > 2 * BK:
            b_o += tl.dot(b_q2, _load_hblock(p_h, 2, o_v, BK, K, V).to(b_q0.dtype))
        if K > 3 * BK:
            b_o += tl.dot(b_q3, _load_hblock(p_h, 3, o_v, BK, K, V).to(b_q0.dtype))
        o_tv = (t0 * HV + i_hv) * V + o_t[:, None] * (HV * V) + o_v[None, :]
        b_vn = tl.load(v_new + o_tv, mask=m_tv, other=0)
        b_o = b_o * b_eG[:, None] + tl.dot(b_Ac, b_vn)
        tl.store(o + o_tv, (b_o * scale).to(o.dtype.element_ty), mask=m_tv)


def chunk_fwd_o(q, k, v_new, h, gcum, scale, meta, keep_qk=False, q_norm=None):
    """Returns (o, Aqk): Aqk ([B, T, HV, 64] in v_new's dtype, the chunks' (q k^T * D) rows as this kernel rounds them
    for its product with v_new) when ``keep_qk``, else None. With ``q_norm = (q_out, q_rstd, eps)`` q is raw: the
    kernel L2-normalises its rows into q_out (shaped as q) and their 1 / norm into q_rstd ([B*T*H] fp32)."""
    B, T, H, K = q.shape
    HV, V = v_new.shape[2], v_new.shape[3]
    o = torch.empty_like(v_new)
    Aqk = torch.empty(B, T, HV, CHUNK, dtype=v_new.dtype, device=v_new.device) if keep_qk else None
    if is_interpret():
        chunk_fwd_o_kernel.configs[0].kwargs.update({"BV": pick_block(V, 128)})

    q_out, q_rstd, eps = (o, o, 0.0) if q_norm is None else q_norm
    chunk_fwd_o_kernel[(meta["NT"], B * HV)](
        q, k, v_new, h, gcum, o, o if Aqk is None else Aqk, q_out, q_rstd, meta["cu_seqlens"], meta["chunk_indices"],
        scale, T, eps, H=H, HV=HV, K=K, V=V, BT=CHUNK, BK=state_block_k(K), STORE_A=keep_qk, NORM_Q=q_norm is not None,
        IS_VARLEN=meta["cu_seqlens"] is not None,
    )  # fmt: skip
    return o, Aqk
