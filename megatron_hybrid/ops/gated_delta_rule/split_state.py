"""Sequence-split (two-level) state passes: the forward h pass and the reverse dh pass, parallel over segments.

Opt-in (``MEGATRON_HYBRID_GDN_SPLIT_STATE``, read at each forward): with few heads the sequential kernels of
``chunk_h.py`` run N * HV * V/BV programs (90 at H = 15 on 132 SMs), each walking all chunks of its sequence. Here
each sequence's chunks are cut into S segments (never across a sequence boundary) and the state recurrence, which is
affine in the state, is solved in three passes (README.md, "Sequence-split state passes", has the algebra):

    pass 1 (parallel over segments): each segment from a zero state -> its local end state r_s, and, on K extra
            columns started at the identity with no input, its transition operator M_s (K x K);
    pass 2 (sequential over the S segments of a sequence, short): h_start(s + 1) = M_s h_start(s) + r_s;
    pass 3 (parallel over segments): the chunk recurrence again from the true segment start state, storing h and
            v_new (forward) or dh and dv2 (backward) exactly as the one-level kernels do.

The reverse pass is the same with the transposed operators: its pass 1 runs the reverse recurrence on the K extra
columns from the identity, which yields M_s^T directly, so the backward does not depend on the forward's split.
Pass 1 skips the segment whose result only feeds a value that pass 3 computes anyway (the last segment in the
forward: the final state; the first in the backward: dh0).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ..launch import fast_launch
from .chunk_bwd import chunk_bwd_dv_local
from .chunk_h import _bwd_read, _bwd_update, _fwd_read, _load_state, _seq, _store_state
from .utils import CHUNK, autotune, is_interpret, num_sms, pick_block, sdot, state_block_k, state_dot_flags

ENV_MODE = "MEGATRON_HYBRID_GDN_SPLIT_STATE"
ENV_SEGMENTS = "MEGATRON_HYBRID_GDN_SPLIT_SEGMENTS"
NOMINAL_BV = 32  # V block assumed when sizing the split (the first autotune config)
PROGRAMS_PER_SM = 2  # the automatic split aims at this many programs per SM
MIN_AUTO_SEGMENTS = 3  # with S = 2 the two passes of S/2 steps each cost as much as the one-level pass: not worth it


def split_modes() -> frozenset[str]:
    """Which state passes take the split path: ``MEGATRON_HYBRID_GDN_SPLIT_STATE`` = 0 / unset (none, the default),
    1 (both), or a comma list of ``fwd`` and ``bwd``."""
    val = os.environ.get(ENV_MODE, "0").strip().lower()
    if val in ("", "0", "off", "false"):
        return frozenset()
    if val in ("1", "on", "true", "all"):
        return frozenset({"fwd", "bwd"})
    modes = frozenset(x.strip() for x in val.split(",") if x.strip())
    if not modes <= {"fwd", "bwd"}:
        raise ValueError(f"{ENV_MODE} must be 0, 1, or a comma list of fwd, bwd; got {val!r}")
    return modes


_PLAN_CACHE: dict = {}


def plan_segments(meta: dict, HV: int, V: int, device: torch.device, num_segments: int | None = None):
    """Cut each sequence's chunks into segments. Returns a plan dict, or None when no sequence gets >= 2 segments
    (then the one-level kernels run).

    num_segments (or ``MEGATRON_HYBRID_GDN_SPLIT_SEGMENTS``) forces S segments per sequence (fewer if it has fewer
    chunks). Otherwise S is chosen so that all (segment, value head, V block) programs come to about
    ``PROGRAMS_PER_SM`` per SM: a target segment length of ceil(NT_total * HV * V/32 / (2 * SMs)) chunks, each
    sequence cut into ceil(its chunks / that) segments; the split is used only if some sequence gets >= 3.
    Segments of a sequence are as equal as possible (chunk boundaries floor(i * n / S)).
    """
    if num_segments is None and os.environ.get(ENV_SEGMENTS):
        num_segments = int(os.environ[ENV_SEGMENTS])
    N = meta["N"]
    if meta["cu_seqlens"] is None:
        chunks = [meta["NT"]] * N
    else:
        offs = meta["chunk_offsets"].tolist()  # one host sync, only on this opt-in path
        chunks = [b - a for a, b in zip(offs[:-1], offs[1:])]
    if num_segments is not None:
        counts = [max(1, min(int(num_segments), n)) for n in chunks]
        if max(counts) < 2:
            return None
    else:
        units = HV * triton.cdiv(V, NOMINAL_BV)
        seg_len = max(1, triton.cdiv(sum(chunks) * units, PROGRAMS_PER_SM * num_sms(device)))
        counts = [max(1, triton.cdiv(n, seg_len)) for n in chunks]
        if max(counts) < MIN_AUTO_SEGMENTS:
            return None
    key = (tuple(chunks), tuple(counts), str(device))
    plan = _PLAN_CACHE.get(key)
    if plan is None:
        rows, seq_off = [], [0]
        for i_n, (n, s_n) in enumerate(zip(chunks, counts)):
            for i in range(s_n):
                c0, c1 = (i * n) // s_n, ((i + 1) * n) // s_n
                flags = (1 if i == 0 else 0) | (2 if i == s_n - 1 else 0)
                rows.append((i_n, c0, c1 - c0, flags))
            seq_off.append(len(rows))
        plan = {
            "nseg": len(rows),
            "counts": counts,
            "seg_info": torch.tensor(rows, dtype=torch.int32, device=device),
            "seq_seg_off": torch.tensor(seq_off, dtype=torch.int32, device=device),
        }
        if len(_PLAN_CACHE) > 64:
            _PLAN_CACHE.clear()
        _PLAN_CACHE[key] = plan
    return plan


@triton.jit
def _segment(i_s, seg_info):
    """Segment i_s -> (sequence, first chunk within the sequence, number of chunks, flags: 1 first, 2 last)."""
    i_n = tl.load(seg_info + i_s * 4)
    c0 = tl.load(seg_info + i_s * 4 + 1)
    nc = tl.load(seg_info + i_s * 4 + 2)
    flags = tl.load(seg_info + i_s * 4 + 3)
    return i_n, c0, nc, flags


@triton.jit
def _columns(i_v, NV, BV: tl.constexpr, K: tl.constexpr, V: tl.constexpr):
    """Column block i_v of the augmented state [value columns (V) | operator columns (K)]:
    (offsets within their part, mask, is_m = 1 for an operator block)."""
    is_m = (i_v >= NV).to(tl.int32)
    o_v = (i_v - is_m * NV) * BV + tl.arange(0, BV)
    m_v = o_v < (V + is_m * (K - V))
    return o_v, m_v, is_m


@triton.jit
def _eye_block(i_k, o_v, m_v, is_m, BK: tl.constexpr):
    o_k = i_k * BK + tl.arange(0, BK)
    return tl.where((o_k[:, None] == o_v[None, :]) & m_v[None, :] & (is_m != 0), 1.0, 0.0)


@triton.jit
def _init_state(
    p, o_v, m_v, is_m, MODE: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, K: tl.constexpr, V: tl.constexpr
):
    """Four [BK, BV] fp32 blocks: MODE 0 zeros, 1 the identity on operator columns (zeros on value columns),
    2 rows of p [K, V] at columns o_v."""
    b0, b1, b2, b3 = _load_state(p, o_v, MODE == 2, BK, BV, K, V)
    if MODE == 1:
        b0 += _eye_block(0, o_v, m_v, is_m, BK)
        if K > BK:
            b1 += _eye_block(1, o_v, m_v, is_m, BK)
        if K > 2 * BK:
            b2 += _eye_block(2, o_v, m_v, is_m, BK)
        if K > 3 * BK:
            b3 += _eye_block(3, o_v, m_v, is_m, BK)
    return b0, b1, b2, b3


# chunk_h's list before its 2026-11-27 sweep (the split kernels were not swept); separate lists: the interpreter edits
# BV in place
_CFG = ((32, 4, 2), (64, 4, 2), (16, 4, 2))
CONFIGS_FWD = [triton.Config({"BV": bv}, num_warps=w, num_stages=s) for bv, w, s in _CFG]
CONFIGS_BWD = [triton.Config({"BV": bv}, num_warps=w, num_stages=s) for bv, w, s in _CFG]


@autotune(configs=CONFIGS_FWD, key=["H", "HV", "K", "V", "BK", "NSEG_BUCKET", "PASS", "READ_F32", "UPD_F32"])
@triton.jit(do_not_specialize=["T", "NSEG_BUCKET"])
def split_fwd_h_kernel(
    k, w, u, gcum, h, v_new, hs, mseg, hloc, ht, seg_info, cu_seqlens, chunk_offsets, T, NSEG_BUCKET,
    H: tl.constexpr, HV: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, PASS: tl.constexpr, STORE_HT: tl.constexpr, IS_VARLEN: tl.constexpr,
    READ_F32: tl.constexpr, UPD_F32: tl.constexpr,
):  # fmt: skip
    """PASS 1: grid (V/BV + K/BV, segments * HV); from zero (value columns) / identity (operator columns), no input
    on the operator columns; stores the segment's end: r_s into hloc, M_s into mseg. Skips last segments.
    PASS 3: grid (V/BV, segments * HV); from hs (the true segment start), stores h, v_new and the final state."""
    i_v, i_sh = tl.program_id(0), tl.program_id(1)
    i_s, i_hv = i_sh // HV, i_sh % HV
    i_h = i_hv // (HV // H)
    i_n, c0, nc, flags = _segment(i_s, seg_info)
    bos, eos, boh = _seq(i_n, cu_seqlens, chunk_offsets, T, BT, IS_VARLEN)
    L = eos - bos
    o_v, m_v, is_m = _columns(i_v, tl.cdiv(V, BV), BV, K, V)
    m_u = m_v & (is_m == 0)
    o_t = tl.arange(0, BT)
    i_sv = (i_s * HV + i_hv).to(tl.int64)
    if PASS == 1:
        nc = tl.where((flags & 2) != 0, 0, nc)  # the last segment's end is the final state: pass 3 computes it
        b_h0, b_h1, b_h2, b_h3 = _init_state(hs, o_v, m_v, is_m, 1, BK, BV, K, V)
    else:
        b_h0, b_h1, b_h2, b_h3 = _init_state(hs + i_sv * K * V, o_v, m_v, is_m, 2, BK, BV, K, V)

    for i_c in range(nc):
        i_t = c0 + i_c
        t0 = bos + i_t * BT
        m_t = o_t < (L - i_t * BT)
        m_tv = m_t[:, None] & m_u[None, :]
        o_tv = (t0 * HV + i_hv) * V + o_t[:, None] * (HV * V) + o_v[None, :]
        p_w = w + (t0 * HV + i_hv) * K
        p_k = k + (t0 * H + i_h) * K
        if PASS == 3:
            p_h = h + ((boh + i_t) * HV + i_hv) * K * V
            _store_state(p_h, b_h0, b_h1, b_h2, b_h3, o_v, i_c >= 0, BK, K, V)
        b_v = tl.load(u + o_tv, mask=m_tv, other=0).to(tl.float32)
        b_v, b_kT0 = _fwd_read(b_v, b_h0, p_w, p_k, o_t, m_t, 0, BK, K, HV * K, H * K, READ_F32, k.dtype.element_ty)
        if K > BK:
            b_v, b_kT1 = _fwd_read(b_v, b_h1, p_w, p_k, o_t, m_t, 1, BK, K, HV * K, H * K, READ_F32, k.dtype.element_ty)
        if K > 2 * BK:
            b_v, b_kT2 = _fwd_read(b_v, b_h2, p_w, p_k, o_t, m_t, 2, BK, K, HV * K, H * K, READ_F32, k.dtype.element_ty)
        if K > 3 * BK:
            b_v, b_kT3 = _fwd_read(b_v, b_h3, p_w, p_k, o_t, m_t, 3, BK, K, HV * K, H * K, READ_F32, k.dtype.element_ty)
        if PASS == 3:
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

    if PASS == 1:
        _store_state(mseg + i_sv * K * K, b_h0, b_h1, b_h2, b_h3, o_v, is_m != 0, BK, K, K)
        _store_state(hloc + i_sv * K * V, b_h0, b_h1, b_h2, b_h3, o_v, is_m == 0, BK, K, V)
    elif STORE_HT:
        p_ht = ht + (i_n * HV + i_hv).to(tl.int64) * K * V
        _store_state(p_ht, b_h0, b_h1, b_h2, b_h3, o_v, (flags & 2) != 0, BK, K, V)


@autotune(configs=CONFIGS_BWD, key=["H", "HV", "K", "V", "BK", "NSEG_BUCKET", "PASS", "READ_F32", "UPD_F32"])
@triton.jit(do_not_specialize=["T", "NSEG_BUCKET"])
def split_bwd_dh_kernel(
    q, k, w, gcum, do, dvl, dv2, dh, dhe, mseg, dloc, dh0, seg_info, cu_seqlens, chunk_offsets, scale, T, NSEG_BUCKET,
    H: tl.constexpr, HV: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, PASS: tl.constexpr, STORE_DH0: tl.constexpr, IS_VARLEN: tl.constexpr,
    READ_F32: tl.constexpr, UPD_F32: tl.constexpr,
):  # fmt: skip
    """PASS 1: grid (V/BV + K/BV, segments * HV); the reverse recurrence from zero (value columns) / identity
    (operator columns, with do = 0 there); stores the gradient at the segment start: rho_s into dloc and
    M_s^T into mseg. Skips first segments. PASS 3: grid (V/BV, segments * HV); from dhe (the true gradient at the
    segment end), stores dh, dv2 and dh0."""
    i_v, i_sh = tl.program_id(0), tl.program_id(1)
    i_s, i_hv = i_sh // HV, i_sh % HV
    i_h = i_hv // (HV // H)
    i_n, c0, nc, flags = _segment(i_s, seg_info)
    bos, eos, boh = _seq(i_n, cu_seqlens, chunk_offsets, T, BT, IS_VARLEN)
    L = eos - bos
    o_v, m_v, is_m = _columns(i_v, tl.cdiv(V, BV), BV, K, V)
    m_u = m_v & (is_m == 0)
    o_t = tl.arange(0, BT)
    i_sv = (i_s * HV + i_hv).to(tl.int64)
    if PASS == 1:
        nc = tl.where((flags & 1) != 0, 0, nc)  # the first segment's start gradient is dh0: pass 3 computes it
        b_h0, b_h1, b_h2, b_h3 = _init_state(dhe, o_v, m_v, is_m, 1, BK, BV, K, V)
    else:
        b_h0, b_h1, b_h2, b_h3 = _init_state(dhe + i_sv * K * V, o_v, m_v, is_m, 2, BK, BV, K, V)

    for i_c in range(nc):
        i_t = c0 + nc - 1 - i_c
        t0 = bos + i_t * BT
        m_t = o_t < (L - i_t * BT)
        m_tv = m_t[:, None] & m_u[None, :]
        o_tv = (t0 * HV + i_hv) * V + o_t[:, None] * (HV * V) + o_v[None, :]
        if PASS == 3:
            p_h = dh + ((boh + i_t) * HV + i_hv) * K * V
            _store_state(p_h, b_h0, b_h1, b_h2, b_h3, o_v, i_c >= 0, BK, K, V)
        b_G = tl.load(gcum + t0 * HV + i_hv + o_t * HV, mask=m_t, other=0.0)
        i_last = tl.minimum(L - i_t * BT, BT) - 1
        b_Gl = tl.load(gcum + (t0 + i_last) * HV + i_hv)
        b_kd = tl.where(m_t, tl.exp(b_Gl - b_G), 0.0)
        b_qd = tl.where(m_t, tl.exp(b_G) * scale, 0.0)
        p_k = k + (t0 * H + i_h) * K
        p_q = q + (t0 * H + i_h) * K
        p_w = w + (t0 * HV + i_hv) * K
        b_do = tl.load(do + o_tv, mask=m_tv, other=0)
        b_dos = (b_do * b_qd[:, None]).to(b_do.dtype)
        b_dv = tl.load(dvl + o_tv, mask=m_tv, other=0)  # the intra-chunk part, from chunk_bwd_dv_local
        b_dv = _bwd_read(b_dv, b_h0, p_k, b_kd, o_t, m_t, 0, BK, K, H * K, READ_F32, k.dtype.element_ty)
        if K > BK:
            b_dv = _bwd_read(b_dv, b_h1, p_k, b_kd, o_t, m_t, 1, BK, K, H * K, READ_F32, k.dtype.element_ty)
        if K > 2 * BK:
            b_dv = _bwd_read(b_dv, b_h2, p_k, b_kd, o_t, m_t, 2, BK, K, H * K, READ_F32, k.dtype.element_ty)
        if K > 3 * BK:
            b_dv = _bwd_read(b_dv, b_h3, p_k, b_kd, o_t, m_t, 3, BK, K, H * K, READ_F32, k.dtype.element_ty)
        if PASS == 3:
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

    if PASS == 1:
        _store_state(mseg + i_sv * K * K, b_h0, b_h1, b_h2, b_h3, o_v, is_m != 0, BK, K, K)
        _store_state(dloc + i_sv * K * V, b_h0, b_h1, b_h2, b_h3, o_v, is_m == 0, BK, K, V)
    elif STORE_DH0:
        p_h0 = dh0 + (i_n * HV + i_hv).to(tl.int64) * K * V
        _store_state(p_h0, b_h0, b_h1, b_h2, b_h3, o_v, (flags & 1) != 0, BK, K, V)


@fast_launch
@triton.jit(do_not_specialize=["NSEQ_BUCKET"])
def split_combine_kernel(
    mseg, loc, init, out, seq_seg_off, NSEQ_BUCKET,
    HV: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_INIT: tl.constexpr, REVERSE: tl.constexpr,
):  # fmt: skip
    """Pass 2, grid (V/BV, N * HV): walk a sequence's segments (backwards if REVERSE) with
    out[first] = init[n] (h0 or dht) or zero, out[next] = M_s out[s] + loc_s.

    The state goes through ``out`` in memory rather than registers: each row block of the product reads every row
    block of the previous state, and holding the state as four register blocks with all 16 [BK, BK] operator blocks
    live needed 270 KB of shared memory at K = 256 (sm_90 compile). A barrier orders each step's stores before the
    next step's loads (same program). IEEE fp32 dots: S small products per sequence, precision costs nothing."""
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n, i_hv = i_nh // HV, i_nh % HV
    s_lo = tl.load(seq_seg_off + i_n)
    s_hi = tl.load(seq_seg_off + i_n + 1)
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    o_b = tl.arange(0, BK)
    if REVERSE:
        i_s = s_hi - 1
    else:
        i_s = s_lo
    for i_k in range(tl.cdiv(K, BK)):
        o_k = i_k * BK + o_b
        m_kv = (o_k < K)[:, None] & m_v[None, :]
        if USE_INIT:
            b_x = tl.load(init + (i_n * HV + i_hv).to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :], mask=m_kv,
                          other=0.0)  # fmt: skip
        else:
            b_x = tl.zeros([BK, BV], dtype=tl.float32)
        tl.store(out + (i_s * HV + i_hv).to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :], b_x, mask=m_kv)
    for _ in range(s_hi - s_lo - 1):
        if REVERSE:
            i_next = i_s - 1
        else:
            i_next = i_s + 1
        tl.debug_barrier()
        p_x = out + (i_s * HV + i_hv).to(tl.int64) * K * V
        p_m = mseg + (i_s * HV + i_hv).to(tl.int64) * K * K
        p_l = loc + (i_s * HV + i_hv).to(tl.int64) * K * V
        p_o = out + (i_next * HV + i_hv).to(tl.int64) * K * V
        for i_k in range(tl.cdiv(K, BK)):
            o_k = i_k * BK + o_b
            m_kv = (o_k < K)[:, None] & m_v[None, :]
            b_x = tl.load(p_l + o_k[:, None] * V + o_v[None, :], mask=m_kv, other=0.0)
            for i_j in range(tl.cdiv(K, BK)):
                o_j = i_j * BK + o_b
                b_m = tl.load(p_m + o_k[:, None] * K + o_j[None, :], mask=(o_k < K)[:, None] & (o_j < K)[None, :],
                              other=0.0)  # fmt: skip
                b_h = tl.load(p_x + o_j[:, None] * V + o_v[None, :], mask=(o_j < K)[:, None] & m_v[None, :], other=0.0)
                b_x += tl.dot(b_m, b_h, input_precision="ieee")
            tl.store(p_o + o_k[:, None] * V + o_v[None, :], b_x, mask=m_kv)
        i_s = i_next


def _interp_bv(kernel, V: int):
    if is_interpret():
        kernel.configs[0].kwargs.update({"BV": pick_block(V, 128)})


def _bucket(n: int) -> int:
    return triton.next_power_of_2(max(1, n))


def _combine(mseg, loc, init, plan, N, HV, K, V, reverse, device):
    out = torch.empty(plan["nseg"], HV, K, V, dtype=torch.float32, device=device)
    BV = 32
    grid = (triton.cdiv(V, BV), N * HV)
    split_combine_kernel[grid](
        mseg, loc, init if init is not None else out, out, plan["seq_seg_off"], _bucket(N * HV),
        HV=HV, K=K, V=V, BK=16 if K <= 16 else 32, BV=BV, USE_INIT=init is not None, REVERSE=reverse,
        num_warps=4, num_stages=1,
    )  # fmt: skip
    return out


def chunk_fwd_h_split(k, w, u, gcum, initial_state, output_final_state, meta, plan):
    """As ``chunk_h.chunk_fwd_h``: (h [NT, HV, K, V] in k's dtype, v_new, final state fp32 or None)."""
    B, T, H, K = k.shape
    HV, V = u.shape[2], u.shape[3]
    N, nseg = meta["N"], plan["nseg"]
    BK = state_block_k(K)
    dev = k.device
    h = torch.empty(meta["NT_total"], HV, K, V, dtype=k.dtype, device=dev)
    v_new = torch.empty_like(u)
    ht = torch.empty(N, HV, K, V, dtype=torch.float32, device=dev) if output_final_state else None
    mseg = torch.empty(nseg, HV, K, K, dtype=torch.float32, device=dev)
    hloc = torch.empty(nseg, HV, K, V, dtype=torch.float32, device=dev)
    _interp_bv(split_fwd_h_kernel, V)
    args = (meta["cu_seqlens"], meta["chunk_offsets"], T, _bucket(nseg * HV))
    read_f32, upd_f32 = meta.setdefault("state_dots_fwd", state_dot_flags("fwd"))
    kw = {"H": H, "HV": HV, "K": K, "V": V, "BT": CHUNK, "BK": BK, "IS_VARLEN": meta["cu_seqlens"] is not None}
    kw.update(READ_F32=read_f32, UPD_F32=upd_f32)

    def grid1(m):
        return (triton.cdiv(V, m["BV"]) + triton.cdiv(K, m["BV"]), nseg * HV)

    split_fwd_h_kernel[grid1](
        k, w, u, gcum, h, v_new, hloc, mseg, hloc, ht, plan["seg_info"], *args, PASS=1, STORE_HT=False, **kw
    )
    hs = _combine(mseg, hloc, initial_state, plan, N, HV, K, V, False, dev)
    del mseg, hloc

    def grid3(m):
        return (triton.cdiv(V, m["BV"]), nseg * HV)

    split_fwd_h_kernel[grid3](
        k, w, u, gcum, h, v_new, hs, hs, hs, ht, plan["seg_info"], *args, PASS=3, STORE_HT=output_final_state, **kw
    )
    return h, v_new, ht


def chunk_bwd_dh_split(q, k, w, gcum, do, dht, initial_state, scale, meta, plan):
    """As ``chunk_h.chunk_bwd_dh``: (dv2 [B, T, HV, V], dh [NT, HV, K, V], dh0 or None)."""
    B, T, H, K = q.shape
    HV, V = do.shape[2], do.shape[3]
    N, nseg = meta["N"], plan["nseg"]
    BK = state_block_k(K)
    dev = q.device
    dvl = chunk_bwd_dv_local(q, k, gcum, do, scale, meta)
    dv2 = torch.empty_like(do)
    dh = torch.empty(meta["NT_total"], HV, K, V, dtype=q.dtype, device=dev)
    dh0 = torch.empty(N, HV, K, V, dtype=torch.float32, device=dev) if initial_state is not None else None
    mseg = torch.empty(nseg, HV, K, K, dtype=torch.float32, device=dev)
    dloc = torch.empty(nseg, HV, K, V, dtype=torch.float32, device=dev)
    _interp_bv(split_bwd_dh_kernel, V)
    args = (meta["cu_seqlens"], meta["chunk_offsets"], scale, T, _bucket(nseg * HV))
    read_f32, upd_f32 = meta.setdefault("state_dots_bwd", state_dot_flags("bwd"))
    kw = {"H": H, "HV": HV, "K": K, "V": V, "BT": CHUNK, "BK": BK, "IS_VARLEN": meta["cu_seqlens"] is not None}
    kw.update(READ_F32=read_f32, UPD_F32=upd_f32)

    def grid1(m):
        return (triton.cdiv(V, m["BV"]) + triton.cdiv(K, m["BV"]), nseg * HV)

    split_bwd_dh_kernel[grid1](
        q, k, w, gcum, do, dvl, dv2, dh, dloc, mseg, dloc, dh0, plan["seg_info"], *args, PASS=1, STORE_DH0=False, **kw
    )
    dhe = _combine(mseg, dloc, dht, plan, N, HV, K, V, True, dev)
    del mseg, dloc

    def grid3(m):
        return (triton.cdiv(V, m["BV"]), nseg * HV)

    split_bwd_dh_kernel[grid3](
        q, k, w, gcum, do, dvl, dv2, dh, dhe, dhe, dhe, dh0, plan["seg_info"], *args, PASS=3,
        STORE_DH0=dh0 is not None, **kw,
    )  # fmt: skip
    return dv2, dh, dh0
