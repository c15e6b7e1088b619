"""The sequential pass over chunks: the state h (forward) and its gradient (backward, adding the state's part of
dv2 to the intra-chunk part that ``chunk_bwd.chunk_bwd_dv_local`` computed in parallel before it).

One program per (V block, sequence, value head) walks the chunks in order. It holds its K x BV slice of the state in
fp32 registers as up to four K blocks of BK rows (96 = 3 x 32, 192 = 3 x 64: no padding to a power of two).

Forward, chunk c with h its start state:
    v_new = u - w h
    h    <- exp(G_last) h + k^T (exp(G_last - G) v_new)
Backward, chunk c from the last, dh the gradient of its end state:
    dv2 = dvl + (exp(G_last - G) k) dh      (dv2: gradient of v_new; dvl = scale (q k^T * D)^T do, read back in fp32)
    dh <- exp(G_last) dh + scale (exp(G) q)^T do - w^T dv2
dvl does not depend on dh: computed in the loop (as until 2026-11-27) it lengthened every sequential step by a
64 x K x 64 product, its decay mask and a 64 x 64 x BV product per V block. The products with the fp32 state
take fp32 (tf32) operands or operands rounded to the input dtype, per MEGATRON_HYBRID_GDN_STATE_DOTS (utils.py):
rounding the state to bf16 in w h cost accuracy with little or no decay (g = 0).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .chunk_bwd import chunk_bwd_dv_local
from .utils import CHUNK, autotune, is_interpret, pick_block, sdot, state_block_k, state_dot_flags


@triton.jit
def _load_kblock(p, o_t, m_t, i_k, BK: tl.constexpr, K: tl.constexpr, stride, TRANS: tl.constexpr):
    """Rows o_t x K-block i_k of a [T, *, K] tensor as [BT, BK]; TRANS gives [BK, BT]."""
    o_k = i_k * BK + tl.arange(0, BK)
    if TRANS:
        return tl.load(p + o_t[None, :] * stride + o_k[:, None], mask=m_t[None, :] & (o_k < K)[:, None], other=0)
    else:
        return tl.load(p + o_t[:, None] * stride + o_k[None, :], mask=m_t[:, None] & (o_k < K)[None, :], other=0)


@triton.jit
def _hblock_ptr(p, i_k, o_v, BK: tl.constexpr, V: tl.constexpr):
    o_k = i_k * BK + tl.arange(0, BK)
    return p + o_k[:, None] * V + o_v[None, :]


@triton.jit
def _hblock_mask(i_k, o_v, BK: tl.constexpr, K: tl.constexpr, V: tl.constexpr):
    o_k = i_k * BK + tl.arange(0, BK)
    return (o_k < K)[:, None] & (o_v < V)[None, :]


@triton.jit
def _load_hblock(p, i_k, o_v, BK: tl.constexpr, K: tl.constexpr, V: tl.constexpr):
    """K rows block i_k of a row-major [K, V] state at columns o_v, as [BK, BV] in its stored dtype."""
    return tl.load(_hblock_ptr(p, i_k, o_v, BK, V), mask=_hblock_mask(i_k, o_v, BK, K, V), other=0)


@triton.jit
def _load_state(p, o_v, LOAD: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, K: tl.constexpr, V: tl.constexpr):
    """Four [BK, BV] fp32 blocks: the K rows of a row-major [K, V] state at columns o_v when LOAD, else zeros."""
    b0 = tl.zeros([BK, BV], dtype=tl.float32)
    b1 = tl.zeros([BK, BV], dtype=tl.float32)
    b2 = tl.zeros([BK, BV], dtype=tl.float32)
    b3 = tl.zeros([BK, BV], dtype=tl.float32)
    if LOAD:
        b0 += _load_hblock(p, 0, o_v, BK, K, V)
        if K > BK:
            b1 += _load_hblock(p, 1, o_v, BK, K, V)
        if K > 2 * BK:
            b2 += _load_hblock(p, 2, o_v, BK, K, V)
        if K > 3 * BK:
            b3 += _load_hblock(p, 3, o_v, BK, K, V)
    return b0, b1, b2, b3


@triton.jit
def _store_state(p, b0, b1, b2, b3, o_v, ok, BK: tl.constexpr, K: tl.constexpr, RS: tl.constexpr):
    """The K rows held in b0..b3 into a row-major [K, RS] matrix at columns o_v < RS, where the scalar ok holds."""
    ty = p.dtype.element_ty
    tl.store(_hblock_ptr(p, 0, o_v, BK, RS), b0.to(ty), mask=_hblock_mask(0, o_v, BK, K, RS) & ok)
    if K > BK:
        tl.store(_hblock_ptr(p, 1, o_v, BK, RS), b1.to(ty), mask=_hblock_mask(1, o_v, BK, K, RS) & ok)
    if K > 2 * BK:
        tl.store(_hblock_ptr(p, 2, o_v, BK, RS), b2.to(ty), mask=_hblock_mask(2, o_v, BK, K, RS) & ok)
    if K > 3 * BK:
        tl.store(_hblock_ptr(p, 3, o_v, BK, RS), b3.to(ty), mask=_hblock_mask(3, o_v, BK, K, RS) & ok)


@triton.jit
def _seq(i_n, cu_seqlens, chunk_offsets, T, BT: tl.constexpr, IS_VARLEN: tl.constexpr):
    if IS_VARLEN:
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        eos = tl.load(cu_seqlens + i_n + 1).to(tl.int64)
        boh = tl.load(chunk_offsets + i_n).to(tl.int64)
    else:
        bos = (i_n * T).to(tl.int64)
        eos = bos + T
        boh = (i_n * tl.cdiv(T, BT)).to(tl.int64)
    return bos, eos, boh


# One K block of a step; the kernels (and split_state.py's) unroll these over up to four blocks.
@triton.jit
def _fwd_read(b_v, b_h, p_w, p_k, o_t, m_t, i_k, BK: tl.constexpr, K: tl.constexpr, SW, SK, READ_F32: tl.constexpr,
              DT: tl.constexpr):  # fmt: skip
    """Forward: v_new -= w_blk h_blk; also returns k_blk^T for the state update."""
    b_w = _load_kblock(p_w, o_t, m_t, i_k, BK, K, SW, False)
    b_v -= sdot(b_w, b_h, READ_F32, DT)
    return b_v, _load_kblock(p_k, o_t, m_t, i_k, BK, K, SK, True)


# The backward's token scales (exp(G_last - G) on k's rows, exp(G) on q's) go on the product's rows and on do, not on
# the loaded k and q: a load that feeds a dot unchanged is one Triton's software pipeline prefetches, while k scaled
# in registers first was waited on in every step (ncu: 22% of bwd_dh's stall samples on that product,
# bench/results/gpu_check/session14/callC). The 16-bit products then also take k as loaded, not (k * scale) rounded.
@triton.jit
def _bwd_read(b_dv, b_h, p_k, b_kd, o_t, m_t, i_k, BK: tl.constexpr, K: tl.constexpr, SK, READ_F32: tl.constexpr,
              DT: tl.constexpr):  # fmt: skip
    """Backward: dv2 += (exp(G_last - G) k_blk) dh_blk, as exp(G_last - G) * (k_blk dh_blk)."""
    b_k = _load_kblock(p_k, o_t, m_t, i_k, BK, K, SK, False)
    return b_dv + sdot(b_k, b_h, READ_F32, DT) * b_kd[:, None]


@triton.jit
def _bwd_update(b_h, b_dl, p_q, b_dos, b_dv, p_w, o_t, m_t, i_k, BK: tl.constexpr, K: tl.constexpr, SK, SW,
                UPD_F32: tl.constexpr, DT: tl.constexpr):  # fmt: skip
    """Backward: dh_blk <- exp(G_last) dh_blk + q_blk^T (exp(G) do) - w_blk^T dv2; b_dos = scale exp(G) do, rounded
    to do's dtype once per step."""
    b_qT = _load_kblock(p_q, o_t, m_t, i_k, BK, K, SK, True)
    b_wT = _load_kblock(p_w, o_t, m_t, i_k, BK, K, SW, True)
    return b_h * b_dl + tl.dot(b_qT.to(b_dos.dtype), b_dos) - sdot(b_wT, b_dv, UPD_F32, DT)


# (BV, warps, stages). The loads of the next chunk are what the software pipeline overlaps with the current step:
# one stage (no pipelining) takes 0.67-1.0 ms for fwd_h at the Olmo TP=2 slice, two or three 0.19-0.35. BV = 16 with
# 2 warps first (180 programs at H = 15); bench/gdn_config_sweep.py, H100, Triton 3.6, 2026-11-27, bit-identical over
# runs, ms at H = 15 / 30 (T = 8192, K = 96, V = 192):
#   fwd_h   (16, 2, 3) 0.185 / 0.353, (32, 2, 3) 0.218 / 0.275; the former first (32, 4, 2) 0.240 / 0.332
#   bwd_dh  (16, 2, 2) 0.460 / 0.623, (16, 2, 3) 0.453 / 0.911; the former first (32, 4, 2) 0.512 / 0.714
#           (bwd_dh with dv_local's ~0.08 / 0.16)
# The first entries favour H = 15, the 7B model's slice at TP = 2; autotuning picks per shape.
FWD_CONFIGS = [
    triton.Config({"BV": bv}, num_warps=w, num_stages=s)
    for bv, w, s in ((16, 2, 3), (32, 2, 3), (16, 2, 2), (32, 4, 3), (32, 4, 2))
]
BWD_CONFIGS = [
    triton.Config({"BV": bv}, num_warps=w, num_stages=s)
    for bv, w, s in ((16, 2, 2), (16, 2, 3), (32, 2, 3), (32, 4, 3), (64, 4, 2))
]


@autotune(configs=FWD_CONFIGS, key=["H", "HV", "K", "V", "BK", "NSEQ_BUCKET", "STORE_H", "READ_F32", "UPD_F32"])
@triton.jit(do_not_specialize=["T", "NSEQ_BUCKET"])
def chunk_fwd_h_kernel(
    k, w, u, gcum, h, v_new, h0, ht, cu_seqlens, chunk_offsets, T, NSEQ_BUCKET,
    H: tl.constexpr, HV: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, USE_H0: tl.constexpr, STORE_HT: tl.constexpr, STORE_H: tl.constexpr,
    IS_VARLEN: tl.constexpr, READ_F32: tl.constexpr, UPD_F32: tl.constexpr,
):  # fmt: skip
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n, i_hv = i_nh // HV, i_nh % HV
    i_h = i_hv // (HV // H)
    bos, eos, boh = _seq(i_n, cu_seqlens, chunk_offsets, T, BT, IS_VARLEN)
    L = eos - bos
    NT = tl.cdiv(L, BT)
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    o_t = tl.arange(0, BT)

    p_h0 = h0
    if USE_H0:
        p_h0 = h0 + (i_n * HV + i_hv).to(tl.int64) * K * V
    b_h0, b_h1, b_h2, b_h3 = _load_state(p_h0, o_v, USE_H0, BK, BV, K, V)

    for i_t in range(NT):
        t0 = bos + i_t * BT
        m_t = o_t < (L - i_t * BT)
        m_tv = m_t[:, None] & m_v[None, :]
        o_tv = (t0 * HV + i_hv) * V + o_t[:, None] * (HV * V) + o_v[None, :]
        p_w = w + (t0 * HV + i_hv) * K
        p_k = k + (t0 * H + i_h) * K
        if STORE_H:
            p_h = h + ((boh + i_t) * HV + i_hv) * K * V
            _store_state(p_h, b_h0, b_h1, b_h2, b_h3, o_v, True, BK, K, V)
        b_v = tl.load(u + o_tv, mask=m_tv, other=0).to(tl.float32)
        b_v, b_kT0 = _fwd_read(b_v, b_h0, p_w, p_k, o_t, m_t, 0, BK, K, HV * K, H * K, READ_F32, k.dtype.element_ty)
        if K > BK:
            b_v, b_kT1 = _fwd_read(b_v, b_h1, p_w, p_k, o_t, m_t, 1, BK, K, HV * K, H * K, READ_F32, k.dtype.element_ty)
        if K > 2 * BK:
            b_v, b_kT2 = _fwd_read(b_v, b_h2, p_w, p_k, o_t, m_t, 2, BK, K, HV * K, H * K, READ_F32, k.dtype.element_ty)
        if K > 3 * BK:
            b_v, b_kT3 = _fwd_read(b_v, b_h3, p_w, p_k, o_t, m_t, 3, BK, K, HV * K, H * K, READ_F32, k.dtype.element_ty)
        if STORE_H:
            tl.store(v_new + o_tv, b_v.to(v_new.dtype.element_ty), mask=m_tv)
        b_G = tl.load(gcum + t0 * HV + i_hv + o_t * HV, mask=m_t, other=0.0)
        i_last = tl.minimum(L - i_t * BT, BT) - 1
        b_Gl = tl.load(gcum + (t0 + i_last) * HV + i_hv)
        b_vd = tl.where(m_t[:, None], b_v * tl.exp(b_Gl - b_G)[:, None], 0.0)
        b_dl = tl.exp(b_Gl)
        b_h0 = b_h0 * b_dl + sdot(b_kT0, b_vd, UPD_F32, k.dtype.element_ty)
        if K > BK:
            b_h1 = b_h1 * b_dl + sdot(b_kT1, b_vd, UPD_F32, k.dtype.element_ty)
        if K > 2 * BK:
            b_h2 = b_h2 * b_dl + sdot(b_kT2, b_vd, UPD_F32, k.dtype.element_ty)
        if K > 3 * BK:
            b_h3 = b_h3 * b_dl + sdot(b_kT3, b_vd, UPD_F32, k.dtype.element_ty)

    if STORE_HT:
        p_ht = ht + (i_n * HV + i_hv).to(tl.int64) * K * V
        _store_state(p_ht, b_h0, b_h1, b_h2, b_h3, o_v, True, BK, K, V)


@triton.jit
def _bwd_step_loads(gcum, dvl, i_t, bos, L, i_hv, o_t, o_v, m_v, HV: tl.constexpr, V: tl.constexpr, BT: tl.constexpr,
                    LOAD_DVL: tl.constexpr):  # fmt: skip
    """G, G_last and (LOAD_DVL) dvl (the intra-chunk part of dv2, from chunk_bwd_dv_local) of chunk i_t; all masked
    off when i_t < 0 (the prefetch after the first chunk)."""
    ok = i_t >= 0
    i_c = tl.maximum(i_t, 0)
    t0 = bos + i_c * BT
    m_t = (o_t < (L - i_c * BT)) & ok
    b_G = tl.load(gcum + t0 * HV + i_hv + o_t * HV, mask=m_t, other=0.0)
    i_last = tl.minimum(L - i_c * BT, BT) - 1
    b_Gl = tl.load(gcum + (t0 + i_last) * HV + i_hv, mask=ok, other=0.0)
    if LOAD_DVL:
        o_tv = (t0 * HV + i_hv) * V + o_t[:, None] * (HV * V) + o_v[None, :]
        b_dv = tl.load(dvl + o_tv, mask=m_t[:, None] & m_v[None, :], other=0)
    else:
        b_dv = tl.zeros([BT, o_v.shape[0]], dtype=tl.float32)
    return b_G, b_Gl, b_dv


@autotune(configs=BWD_CONFIGS, key=["H", "HV", "K", "V", "BK", "NSEQ_BUCKET", "READ_F32", "UPD_F32", "LOCAL_A"])
@triton.jit(do_not_specialize=["T", "NSEQ_BUCKET"])
def chunk_bwd_dh_kernel(
    q, k, w, gcum, do, dvl, Aqk, dv2, dh, dht, dh0, cu_seqlens, chunk_offsets, scale, T, NSEQ_BUCKET,
    H: tl.constexpr, HV: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, USE_DHT: tl.constexpr, STORE_DH0: tl.constexpr, IS_VARLEN: tl.constexpr,
    READ_F32: tl.constexpr, UPD_F32: tl.constexpr, LOCAL_A: tl.constexpr,
):  # fmt: skip
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n, i_hv = i_nh // HV, i_nh % HV
    i_h = i_hv // (HV // H)
    bos, eos, boh = _seq(i_n, cu_seqlens, chunk_offsets, T, BT, IS_VARLEN)
    L = eos - bos
    NT = tl.cdiv(L, BT)
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    o_t = tl.arange(0, BT)

    p_ht = dht
    if USE_DHT:
        p_ht = dht + (i_n * HV + i_hv).to(tl.int64) * K * V
    b_h0, b_h1, b_h2, b_h3 = _load_state(p_ht, o_v, USE_DHT, BK, BV, K, V)

    # G and dvl of the next chunk are loaded one step ahead: they feed no dot operand, so Triton's software pipeline
    # leaves them alone, and loaded in their own step they held 39% of this kernel's stall samples (ncu, H100,
    # bench/results/gpu_check/session14/callB)
    b_Gn, b_Gln, b_dvn = _bwd_step_loads(gcum, dvl, NT - 1, bos, L, i_hv, o_t, o_v, m_v, HV, V, BT, not LOCAL_A)
    for i_s in range(NT):
        i_t = NT - 1 - i_s
        t0 = bos + i_t * BT
        m_t = o_t < (L - i_t * BT)
        m_tv = m_t[:, None] & m_v[None, :]
        o_tv = (t0 * HV + i_hv) * V + o_t[:, None] * (HV * V) + o_v[None, :]
        if LOCAL_A:  # (q k^T * D)^T of this chunk as the forward's output kernel kept it: dvl is its product with do
            # Masked on tokens only: the kept rows hold zeros past the chunk's end, and a mask along the contiguous
            # dim (the row's 64 columns) made the load scalar, which Triton's pipeline does not prefetch (sm_90 PTX)
            p_A = Aqk + (t0 * HV + i_hv) * BT + o_t[None, :] * (HV * BT) + o_t[:, None]
            b_AT = tl.load(p_A, mask=m_t[None, :], other=0)
        p_h = dh + ((boh + i_t) * HV + i_hv) * K * V
        _store_state(p_h, b_h0, b_h1, b_h2, b_h3, o_v, True, BK, K, V)
        b_G, b_Gl, b_dv = b_Gn, b_Gln, b_dvn
        b_Gn, b_Gln, b_dvn = _bwd_step_loads(gcum, dvl, i_t - 1, bos, L, i_hv, o_t, o_v, m_v, HV, V, BT, not LOCAL_A)
        b_kd = tl.where(m_t, tl.exp(b_Gl - b_G), 0.0)
        b_qd = tl.where(m_t, tl.exp(b_G) * scale, 0.0)
        p_k = k + (t0 * H + i_h) * K
        p_q = q + (t0 * H + i_h) * K
        p_w = w + (t0 * HV + i_hv) * K
        b_do = tl.load(do + o_tv, mask=m_tv, other=0)
        if LOCAL_A:
            b_dv = tl.dot(b_AT.to(b_do.dtype), b_do) * scale
        b_dos = (b_do * b_qd[:, None]).to(b_do.dtype)
        b_dv = _bwd_read(b_dv, b_h0, p_k, b_kd, o_t, m_t, 0, BK, K, H * K, READ_F32, k.dtype.element_ty)
        if K > BK:
            b_dv = _bwd_read(b_dv, b_h1, p_k, b_kd, o_t, m_t, 1, BK, K, H * K, READ_F32, k.dtype.element_ty)
        if K > 2 * BK:
            b_dv = _bwd_read(b_dv, b_h2, p_k, b_kd, o_t, m_t, 2, BK, K, H * K, READ_F32, k.dtype.element_ty)
        if K > 3 * BK:
            b_dv = _bwd_read(b_dv, b_h3, p_k, b_kd, o_t, m_t, 3, BK, K, H * K, READ_F32, k.dtype.element_ty)
        tl.store(dv2 + o_tv, b_dv.to(dv2.dtype.element_ty), mask=m_tv)
        b_dl = tl.exp(b_Gl)
        b_h0 = _bwd_update(
            b_h0, b_dl, p_q, b_dos, b_dv, p_w, o_t, m_t, 0, BK, K, H * K, HV * K, UPD_F32, k.dtype.element_ty
        )
        if K > BK:
            b_h1 = _bwd_update(
                b_h1, b_dl, p_q, b_dos, b_dv, p_w, o_t, m_t, 1, BK, K, H * K, HV * K, UPD_F32, k.dtype.element_ty
            )
        if K > 2 * BK:
            b_h2 = _bwd_update(
                b_h2, b_dl, p_q, b_dos, b_dv, p_w, o_t, m_t, 2, BK, K, H * K, HV * K, UPD_F32, k.dtype.element_ty
            )
        if K > 3 * BK:
            b_h3 = _bwd_update(
                b_h3, b_dl, p_q, b_dos, b_dv, p_w, o_t, m_t, 3, BK, K, H * K, HV * K, UPD_F32, k.dtype.element_ty
            )

    if STORE_DH0:
        p_h0 = dh0 + (i_n * HV + i_hv).to(tl.int64) * K * V
        _store_state(p_h0, b_h0, b_h1, b_h2, b_h3, o_v, True, BK, K, V)


def _interp_bv(kernel, V: int):
    if is_interpret():
        kernel.configs[0].kwargs.update({"BV": pick_block(V, 128)})


def _nseq_bucket(n_programs: int) -> int:
    return triton.next_power_of_2(max(1, n_programs))


def chunk_fwd_h(k, w, u, gcum, initial_state, output_final_state, meta):
    """Returns (h [NT, HV, K, V] (state at each chunk start, in k's dtype), v_new, final state fp32 or None)."""
    B, T, H, K = k.shape
    HV, V = u.shape[2], u.shape[3]
    N = meta["N"]
    BK = state_block_k(K)
    h = torch.empty(meta["NT_total"], HV, K, V, dtype=k.dtype, device=k.device)
    v_new = torch.empty_like(u)
    ht = torch.empty(N, HV, K, V, dtype=torch.float32, device=k.device) if output_final_state else None
    _interp_bv(chunk_fwd_h_kernel, V)
    read_f32, upd_f32 = meta.setdefault("state_dots_fwd", state_dot_flags("fwd"))

    def grid(m):
        return (triton.cdiv(V, m["BV"]), N * HV)

    chunk_fwd_h_kernel[grid](
        k, w, u, gcum, h, v_new, initial_state, ht, meta["cu_seqlens"], meta["chunk_offsets"], T,
        _nseq_bucket(N * HV), H=H, HV=HV, K=K, V=V, BT=CHUNK, BK=BK,
        USE_H0=initial_state is not None, STORE_HT=output_final_state, STORE_H=True,
        IS_VARLEN=meta["cu_seqlens"] is not None, READ_F32=read_f32, UPD_F32=upd_f32,
    )  # fmt: skip
    return h, v_new, ht


def chunk_bwd_dh(q, k, w, gcum, do, dht, initial_state, scale, meta, Aqk=None):
    """Returns (dv2 [B, T, HV, V], dh [NT, HV, K, V], dh0 or None). With ``Aqk`` (the chunks' q k^T * D as
    ``chunk_fwd_o`` kept it) the reverse pass forms dv2's intra-chunk part itself, one [64, 64] x [64, BV] product per
    step that does not depend on dh; without it ``chunk_bwd_dv_local`` computes that part first (q and k read again,
    the part written and read back in fp32: 376 MB at T=8192, H=30, V=192)."""
    B, T, H, K = q.shape
    HV, V = do.shape[2], do.shape[3]
    N = meta["N"]
    BK = state_block_k(K)
    dvl = chunk_bwd_dv_local(q, k, gcum, do, scale, meta) if Aqk is None else None
    dv2 = torch.empty_like(do)
    dh = torch.empty(meta["NT_total"], HV, K, V, dtype=q.dtype, device=q.device)
    dh0 = torch.empty(N, HV, K, V, dtype=torch.float32, device=q.device) if initial_state is not None else None
    _interp_bv(chunk_bwd_dh_kernel, V)
    read_f32, upd_f32 = meta.setdefault("state_dots_bwd", state_dot_flags("bwd"))

    def grid(m):
        return (triton.cdiv(V, m["BV"]), N * HV)

    chunk_bwd_dh_kernel[grid](
        q, k, w, gcum, do, do if dvl is None else dvl, do if Aqk is None else Aqk, dv2, dh, dht, dh0,
        meta["cu_seqlens"], meta["chunk_offsets"], scale, T, _nseq_bucket(N * HV), H=H, HV=HV, K=K, V=V, BT=CHUNK,
        BK=BK, USE_DHT=dht is not None, STORE_DH0=dh0 is not None, IS_VARLEN=meta["cu_seqlens"] is not None,
        READ_F32=read_f32, UPD_F32=upd_f32, LOCAL_A=Aqk is not None,
    )  # fmt: skip
    return dv2, dh, dh0
