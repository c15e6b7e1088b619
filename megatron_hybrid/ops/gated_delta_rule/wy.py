"""The WY representation of a chunk: forward (cumsum, solve, w and u) and backward (through w, u, T and A).

Forward, two kernels of one program per (chunk, value head), BT = 64:
    solve:  G = cumsum(g) within the chunk;  A_ij = beta_i (k_i . k_j) exp(G_i - G_j) for i > j;  T = (I + A)^-1
    w, u:   w = T (beta exp(G) k),  u = T (beta v)
The unit-lower-triangular inverse: the four 16x16 diagonal blocks by forward substitution (15 steps, the four
chains as one [4, 16, 16] tensor), then the blocks below them by block substitution with 16x16 tf32x3 dots. T is kept
for the backward in fp32. Opt-in (MEGATRON_HYBRID_GDN_WY_FP16=1, ``wy_inverse_dtype``): fp16 for 16-bit inputs, half the
memory (30 MiB less per layer call at the Olmo shape, T=8192, H=30). Its entries lie in [-2, 2] (T is built from the
chunk's reflections I - beta k k^T, beta in [0, 2], unit k, and decays <= 1) and forward and backward multiply by the
same rounded T, but on the H100 it cost gradient accuracy without decay: dg relative error at g = 0 (the GPU tests'
four seeded draws) 9.2e-3, 1.25e-2, 8.6e-3, 5.8e-3 against 7.6e-3, 7.6e-3, 8.4e-3, 4.5e-3 with fp32 T (2026-11-27,
bench/results/gpu_check/session5/g0.txt), over the 1e-2 bound once; the CPU emulation of the GPU's roundings did not
show it. The solve itself reads A from an fp32 work buffer (the same buffer as T when T is fp32).

Backward (``chunk_wy_bwd``), given dw (input dtype, read as fp32) and du = dv2:
    dv = beta (T^T du);  dT = dw Xw^T + du Xu^T;  dA = -T^T dT T^T (strict lower);  then dk, dbeta, dG, and
    dg = reverse cumsum of dG within the chunk (with the dG shares from ``chunk_bwd_dqk``).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .utils import CHUNK, autotune, chunk_program, is_interpret, pick_block, token_stride


@triton.jit
def _dot32(a, b):
    """fp32 a @ b to about fp32 accuracy on tensor cores: tf32x3 (the hi*hi + hi*lo + lo*hi tf32 products). The
    solve's block products ran in "ieee" (FMA units) until 2026-11-27: wy_fwd 0.278 -> 0.250 ms at T=8192, H=30
    (bench/results/gpu_check/session13/callC, autotuned, alternating processes), T's sum moving by 2e-10 relative."""
    return tl.dot(a, b, input_precision="tf32x3")


@triton.jit
def _load_tile(p_base, i_a, i_b, o_i, Tc, S: tl.constexpr):
    m = ((i_a * 16 + o_i) < Tc)[:, None] & ((i_b * 16 + o_i) < Tc)[None, :]
    return tl.load(p_base + (i_a * 16 + o_i)[:, None] * S + (i_b * 16 + o_i)[None, :], mask=m, other=0.0)


@triton.jit
def _store_tile(p_base, b_X, i_a, i_b, o_i, Tc, S: tl.constexpr):
    # rows of real tokens only, all 64 columns of them (zero past the chunk's end): T is defined wherever it is stored
    m = ((i_a * 16 + o_i) < Tc)[:, None] & ((i_b * 16 + o_i) < 64)[None, :]
    p = p_base + (i_a * 16 + o_i)[:, None] * S + (i_b * 16 + o_i)[None, :]
    tl.store(p, b_X.to(p_base.dtype.element_ty), mask=m)


# The solve and the w/u products are two kernels (one job each; w/u from the stored T, as the backward's recompute
# always did). Measured 2026-11-27 (H100, autotuned, alternating processes; bench/results/gpu_check/session13): wy_fwd
# at T=8192, H=30 was 0.295 ms fused, 0.306 split with the same solve, 0.278 with the substitution as one [4, 16, 16]
# tensor and 0.250 with tf32x3 block products (w/u alone: 0.150). Nsight Compute still has the solve at 254 registers a
# thread, 4 programs per SM. Fused with the new solve: not measured.
@autotune(
    configs=[triton.Config({}, num_warps=w, num_stages=s) for w, s in ((2, 3), (1, 3), (2, 2), (4, 3), (4, 2))],
    key=["H", "HV", "K", "BK", "NORM_K"],
)
@triton.jit(do_not_specialize=["T"])
def chunk_wy_solve_kernel(
    k,
    g,
    beta,
    gcum,
    Awork,
    Ai,
    k_out,
    k_rstd,
    cu_seqlens,
    chunk_indices,
    T,
    eps,
    H: tl.constexpr,
    HV: tl.constexpr,
    K: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
    NORM_K: tl.constexpr,
    IS_VARLEN: tl.constexpr,
):
    i_hv, i_h, i_nt, t0, Tc, o_t, m_t = chunk_program(
        tl.program_id(0), tl.program_id(1), cu_seqlens, chunk_indices, T, H, HV, BT, IS_VARLEN
    )
    m_tt = m_t[:, None] & m_t[None, :]

    p_k = k + (t0 * H + i_h) * K
    o_A = (t0 * HV + i_hv) * BT + o_t[:, None] * (HV * BT) + o_t[None, :]
    b_beta = tl.load(beta + t0 * HV + i_hv + o_t * HV, mask=m_t, other=0.0).to(tl.float32)
    b_g = tl.load(g + t0 * HV + i_hv + o_t * HV, mask=m_t, other=0.0).to(tl.float32)
    b_G = tl.cumsum(b_g, 0)
    tl.store(gcum + t0 * HV + i_hv + o_t * HV, b_G, mask=m_t)
    b_A = tl.zeros([BT, BT], dtype=tl.float32)
    if NORM_K:  # k arrives raw: each row's L2 norm first (one pass over K), k = x * rstd rounded as stored
        b_ss = tl.zeros([BT], dtype=tl.float32)
        for i_k in range(tl.cdiv(K, BK)):
            o_k = i_k * BK + tl.arange(0, BK)
            m_k = m_t[:, None] & (o_k < K)[None, :]
            b_x = tl.load(p_k + o_t[:, None] * (H * K) + o_k[None, :], mask=m_k, other=0).to(tl.float32)
            b_ss += tl.sum(b_x * b_x, 1)
        b_rs = 1.0 / tl.sqrt(b_ss + eps)
        first = (i_hv % (HV // H)) == 0  # one writer per key head
        tl.store(k_rstd + (t0 + o_t) * H + i_h, b_rs, mask=m_t & first)
    for i_k in range(tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = m_t[:, None] & (o_k < K)[None, :]
        b_k = tl.load(p_k + o_t[:, None] * (H * K) + o_k[None, :], mask=m_k, other=0)
        if NORM_K:
            b_k = (b_k.to(tl.float32) * b_rs[:, None]).to(k_out.dtype.element_ty)
            tl.store(k_out + (t0 * H + i_h) * K + o_t[:, None] * (H * K) + o_k[None, :], b_k, mask=m_k & first)
        b_A += tl.dot(b_k, tl.trans(b_k))
    m_A = (o_t[:, None] > o_t[None, :]) & m_tt
    b_A = b_A * b_beta[:, None] * tl.exp(tl.where(m_A, b_G[:, None] - b_G[None, :], float("-inf")))
    tl.store(Awork + o_A, b_A, mask=m_t[:, None])
    tl.debug_barrier()
    # the four 16x16 diagonal blocks by forward substitution, as one [4, 16, 16] tensor (block, row, column) whose
    # four chains advance together: step r reads row r of each block's A (one [4, 16] load from L1, not extracted
    # from registers) and writes row r of each block's T
    o_i = tl.arange(0, 16)
    o_b = tl.arange(0, 4)
    S = HV * BT
    p_A0 = Awork + (t0 * HV + i_hv) * BT
    b_D = tl.zeros([4, 16, 16], dtype=tl.float32) + tl.where(o_i[:, None] == o_i[None, :], 1.0, 0.0)[None, :, :]
    for r in range(1, 16):
        o_r = 16 * o_b + r
        m_a = (o_r < Tc)[:, None] & (o_i < r)[None, :]
        b_a = tl.load(p_A0 + o_r[:, None] * S + (16 * o_b)[:, None] + o_i[None, :], mask=m_a, other=0.0)
        b_D = tl.where((o_i == r)[None, :, None], b_D - tl.sum(b_a[:, :, None] * b_D, 1)[:, None, :], b_D)
    b_T0 = tl.sum(tl.where((o_b == 0)[:, None, None], b_D, 0.0), 0)
    b_T1 = tl.sum(tl.where((o_b == 1)[:, None, None], b_D, 0.0), 0)
    b_T2 = tl.sum(tl.where((o_b == 2)[:, None, None], b_D, 0.0), 0)
    b_T3 = tl.sum(tl.where((o_b == 3)[:, None, None], b_D, 0.0), 0)
    # off-diagonal blocks: X_ij = -T_ii sum_{m=j}^{i-1} A_im X_mj
    b_A10 = _load_tile(p_A0, 1, 0, o_i, Tc, S)
    b_A20 = _load_tile(p_A0, 2, 0, o_i, Tc, S)
    b_A21 = _load_tile(p_A0, 2, 1, o_i, Tc, S)
    b_A30 = _load_tile(p_A0, 3, 0, o_i, Tc, S)
    b_A31 = _load_tile(p_A0, 3, 1, o_i, Tc, S)
    b_A32 = _load_tile(p_A0, 3, 2, o_i, Tc, S)
    b_T10 = -_dot32(b_T1, _dot32(b_A10, b_T0))
    b_T21 = -_dot32(b_T2, _dot32(b_A21, b_T1))
    b_T32 = -_dot32(b_T3, _dot32(b_A32, b_T2))
    b_T20 = -_dot32(b_T2, _dot32(b_A20, b_T0) + _dot32(b_A21, b_T10))
    b_T31 = -_dot32(b_T3, _dot32(b_A31, b_T1) + _dot32(b_A32, b_T21))
    b_T30 = -_dot32(b_T3, _dot32(b_A30, b_T0) + _dot32(b_A31, b_T10) + _dot32(b_A32, b_T20))
    tl.debug_barrier()  # every row of A read before T overwrites it (when Awork is Ai)
    p_T0 = Ai + (t0 * HV + i_hv) * BT
    _store_tile(p_T0, b_T0, 0, 0, o_i, Tc, S)
    _store_tile(p_T0, b_T1, 1, 1, o_i, Tc, S)
    _store_tile(p_T0, b_T2, 2, 2, o_i, Tc, S)
    _store_tile(p_T0, b_T3, 3, 3, o_i, Tc, S)
    _store_tile(p_T0, b_T10, 1, 0, o_i, Tc, S)
    _store_tile(p_T0, b_T20, 2, 0, o_i, Tc, S)
    _store_tile(p_T0, b_T21, 2, 1, o_i, Tc, S)
    _store_tile(p_T0, b_T30, 3, 0, o_i, Tc, S)
    _store_tile(p_T0, b_T31, 3, 1, o_i, Tc, S)
    _store_tile(p_T0, b_T32, 3, 2, o_i, Tc, S)
    # zeros above the diagonal blocks: the stored T is fully defined (the loads mask to the triangle anyway)
    b_zero = tl.zeros([16, 16], dtype=tl.float32)
    _store_tile(p_T0, b_zero, 0, 1, o_i, Tc, S)
    _store_tile(p_T0, b_zero, 0, 2, o_i, Tc, S)
    _store_tile(p_T0, b_zero, 0, 3, o_i, Tc, S)
    _store_tile(p_T0, b_zero, 1, 2, o_i, Tc, S)
    _store_tile(p_T0, b_zero, 1, 3, o_i, Tc, S)
    _store_tile(p_T0, b_zero, 2, 3, o_i, Tc, S)


# 2 warps and 3 stages first: 0.153 ms against 0.225 for 4 warps, 2 stages at the Olmo TP=2 slice (T=8192, H=15, K=96,
# V=192), bit-identical over runs, when this kernel still did the solve (bench/gdn_config_sweep.py, H100, Triton 3.6,
# 2026-11-27).
@autotune(
    configs=[triton.Config({}, num_warps=w, num_stages=s) for w, s in ((2, 3), (4, 3), (4, 2))],
    key=["H", "HV", "K", "V", "BK", "BV", "STORE_U"],
)
@triton.jit(do_not_specialize=["T"])
def chunk_wy_fwd_kernel(
    k,
    v,
    beta,
    gcum,
    Ai,
    w,
    u,
    cu_seqlens,
    chunk_indices,
    T,
    SV,
    H: tl.constexpr,
    HV: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    STORE_U: tl.constexpr,
    IS_VARLEN: tl.constexpr,
):
    i_hv, i_h, i_nt, t0, Tc, o_t, m_t = chunk_program(
        tl.program_id(0), tl.program_id(1), cu_seqlens, chunk_indices, T, H, HV, BT, IS_VARLEN
    )
    p_k = k + (t0 * H + i_h) * K
    # v's token stride SV (a slice of a wider tensor is read in place); specialised by Triton, not do_not_specialize'd:
    # its divisibility by 16 is what lets the v loads vectorise
    p_v = v + t0 * SV + i_hv * V
    p_w = w + (t0 * HV + i_hv) * K
    p_u = u + (t0 * HV + i_hv) * V
    o_A = (t0 * HV + i_hv) * BT + o_t[:, None] * (HV * BT) + o_t[None, :]
    b_beta = tl.load(beta + t0 * HV + i_hv + o_t * HV, mask=m_t, other=0.0).to(tl.float32)
    b_G = tl.load(gcum + t0 * HV + i_hv + o_t * HV, mask=m_t, other=0.0)
    # T as stored (rounded to the stored dtype): the backward's recompute of w multiplies by the same T; loaded as its
    # lower triangle (the upper is zero). Loaded by rows only (vectorised, the full square) it was slower: 0.250 ->
    # 0.254 ms at T=8192, H=30 (bench/results/gpu_check/session14/callD)
    m_low = m_t[:, None] & (o_t[:, None] >= o_t[None, :])
    b_T = tl.load(Ai + o_A, mask=m_low, other=0.0).to(tl.float32)

    b_gb = b_beta * tl.exp(b_G)
    for i_k in range(tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = m_t[:, None] & (o_k < K)[None, :]
        b_k = tl.load(p_k + o_t[:, None] * (H * K) + o_k[None, :], mask=m_k, other=0).to(tl.float32)
        b_w = tl.dot(b_T, b_k * b_gb[:, None])
        tl.store(p_w + o_t[:, None] * (HV * K) + o_k[None, :], b_w.to(w.dtype.element_ty), mask=m_k)
    if STORE_U:
        for i_v in range(tl.cdiv(V, BV)):
            o_v = i_v * BV + tl.arange(0, BV)
            m_v = m_t[:, None] & (o_v < V)[None, :]
            b_v = tl.load(p_v + o_t[:, None] * SV + o_v[None, :], mask=m_v, other=0).to(tl.float32)
            b_u = tl.dot(b_T, b_v * b_beta[:, None])
            tl.store(p_u + o_t[:, None] * (HV * V) + o_v[None, :], b_u.to(u.dtype.element_ty), mask=m_v)


def wy_inverse_dtype(dtype: torch.dtype) -> torch.dtype:
    """The stored WY inverse T: fp32; fp16 for 16-bit inputs with MEGATRON_HYBRID_GDN_WY_FP16=1 (read at each forward;
    see the module docstring)."""
    if dtype != torch.float32 and os.environ.get("MEGATRON_HYBRID_GDN_WY_FP16", "0") == "1":
        return torch.float16
    return torch.float32


def chunk_wy_fwd(k, v, g, beta, meta, gcum=None, Ai=None, need_u=True, k_norm=None):
    """Returns (gcum fp32 [B,T,HV], Ai [B,T,HV,BT] (``wy_inverse_dtype``), w [B,T,HV,K], u [B,T,HV,V] or None if not
    need_u).

    Two launches: the solve (``chunk_wy_solve_kernel``: cumsum, A, T), then w and u from the stored T
    (``chunk_wy_fwd_kernel``). With gcum and Ai given (the backward), the solve is skipped and only w (and u if
    need_u) are recomputed. With ``k_norm = (k_out, k_rstd, eps)`` k is raw: the solve L2-normalises its rows into
    k_out (shaped as k) and their 1 / norm into k_rstd ([B*T*H] fp32), and w comes from k_out.
    """
    B, T, H, K = k.shape
    HV, V = v.shape[2], v.shape[3]
    BK = pick_block(K, 64)
    if Ai is None:
        gcum = torch.empty(B, T, HV, dtype=torch.float32, device=k.device)
        Ai = torch.empty(B, T, HV, CHUNK, dtype=wy_inverse_dtype(k.dtype), device=k.device)
        # A in fp32 for the solve (the kernel reads its rows back); a transient when T is stored in 16 bits
        Awork = Ai if Ai.dtype == torch.float32 else torch.empty(B, T, HV, CHUNK, dtype=torch.float32, device=k.device)
        k_out, k_rstd, eps = (Ai, Ai, 0.0) if k_norm is None else k_norm
        chunk_wy_solve_kernel[(meta["NT"], B * HV)](
            k, g, beta, gcum, Awork, Ai, k_out, k_rstd, meta["cu_seqlens"], meta["chunk_indices"], T, eps, H=H, HV=HV,
            K=K, BT=CHUNK, BK=BK, NORM_K=k_norm is not None, IS_VARLEN=meta["cu_seqlens"] is not None,
        )  # fmt: skip
        del Awork
        if k_norm is not None:
            k = k_out
    else:
        assert k_norm is None, "k is normalised by the solve"
    w = torch.empty(B, T, HV, K, dtype=k.dtype, device=k.device)
    u = torch.empty(B, T, HV, V, dtype=v.dtype, device=v.device) if need_u else None
    BV = pick_block(V, 128 if is_interpret() else 64)
    chunk_wy_fwd_kernel[(meta["NT"], B * HV)](
        k, v, beta, gcum, Ai, w, w if u is None else u, meta["cu_seqlens"], meta["chunk_indices"], T,
        token_stride(v, "v"), H=H, HV=HV, K=K, V=V, BT=CHUNK, BK=BK, BV=BV, STORE_U=need_u,
        IS_VARLEN=meta["cu_seqlens"] is not None,
    )  # fmt: skip
    return gcum, Ai, w, u


def wy_bwd_safe_configs(configs, named_args, **kwargs):
    """8 warps only where K and V fill blocks of at least 32. On an H100 with Triton 3.6 the 8-warp build of this
    kernel hit an illegal address at 16-wide blocks, full (K=16, V=48: BK=BV=16) or masked (K=12, V=24), while the
    4-warp build ran right on every shape; at K=96/V=192, 64/32 and 192/96 8 warps ran right
    (bench/results/gpu_check/session10/call2, one config per process, 2026-11-27)."""
    K, V, BK, BV = (kwargs[name] for name in ("K", "V", "BK", "BV"))
    wide = min(BK, BV) >= 32 and K % BK == 0 and V % BV == 0
    return [c for c in configs if wide or c.num_warps <= 4]


# Software-pipelined (num_stages=2) since 2026-11-27 (session 15): 0.391 -> 0.378 ms at T=8192, 30 heads and 0.208 ->
# 0.200 at 15 (autotuned, alternating processes; bench/results/gpu_check/session15/callA), and bit-identical over runs
# at every bench/gdn_determinism.py shape. In session 4 the pipelined build of the kernel as it was then raced on
# Triton 3.6: dbeta and dg changed from run to run on identical inputs (max |diff| 3e-2 at T=8192, 30 heads), and it
# ran unpipelined until the code had changed (one (Bb + Bb^T) k product, dG partials loaded up front, T by rows).
# bench/gdn_determinism.py is the check to rerun after any change here.
@autotune(
    configs=[triton.Config({}, num_warps=w, num_stages=2) for w in (4, 8)],
    key=["H", "HV", "K", "V", "BK", "BV", "NK", "K_NORM", "Q_NORM"],
    prune_configs_by={"early_config_prune": wy_bwd_safe_configs},
)
@triton.jit(do_not_specialize=["T"])
def chunk_wy_bwd_kernel(
    k,
    v,
    beta,
    gcum,
    Ai,
    dw,
    dv2,
    dk_part,
    dgp,
    k_rstd,
    q,
    dq,
    q_rstd,
    dq_out,
    dk,
    dv,
    dbeta,
    dg,
    cu_seqlens,
    chunk_indices,
    T,
    TOT,
    SV,
    SDV,
    SDK,
    SDQ,
    H: tl.constexpr,
    HV: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    NK: tl.constexpr,
    K_NORM: tl.constexpr,
    Q_NORM: tl.constexpr,
    IS_VARLEN: tl.constexpr,
):
    i_hv, i_h, i_nt, t0, Tc, o_t, m_t = chunk_program(
        tl.program_id(0), tl.program_id(1), cu_seqlens, chunk_indices, T, H, HV, BT, IS_VARLEN
    )
    m_tt = m_t[:, None] & m_t[None, :]

    b_G = tl.load(gcum + t0 * HV + i_hv + o_t * HV, mask=m_t, other=0.0)
    b_beta = tl.load(beta + t0 * HV + i_hv + o_t * HV, mask=m_t, other=0.0).to(tl.float32)
    # T and T^T both loaded from memory: never tl.trans a register tensor into the first operand of tl.dot (Triton 3.6
    # on Hopper miscompiles it). Masked by T's rows only (as in the forward: the stored T is zero above the diagonal).
    p_T = Ai + (t0 * HV + i_hv) * BT
    b_TT = tl.load(p_T + o_t[None, :] * (HV * BT) + o_t[:, None], mask=m_t[None, :], other=0.0).to(tl.float32)
    b_eG = tl.where(m_t, tl.exp(b_G), 0.0)
    b_gb = b_beta * b_eG
    # dT = du (beta v)^T + dw (beta exp(G) k)^T, accumulated as du v^T and dw k^T with the input-dtype operands as
    # loaded (exact products: bf16 MMAs, not tf32 ones on fp32 copies) and the column scales applied after the loops
    b_dTu = tl.zeros([BT, BT], dtype=tl.float32)
    b_dTw = tl.zeros([BT, BT], dtype=tl.float32)
    b_kk = tl.zeros([BT, BT], dtype=tl.float32)
    b_db = tl.zeros([BT], dtype=tl.float32)
    # dqk's dG partials (one per K block): the first four loaded here and added at the end, so that nothing waits on
    # them (added on load they held 4% of this kernel's stall samples; ncu, bench/results/gpu_check/session14/callB)
    p_dgp = dgp + t0 * HV + i_hv + o_t * HV
    b_dG0 = tl.load(p_dgp, mask=m_t, other=0.0)
    b_dG1 = tl.load(p_dgp + TOT, mask=m_t & (NK > 1), other=0.0)
    b_dG2 = tl.load(p_dgp + 2 * TOT, mask=m_t & (NK > 2), other=0.0)
    b_dG3 = tl.load(p_dgp + 3 * TOT, mask=m_t & (NK > 3), other=0.0)
    b_dG = tl.zeros([BT], dtype=tl.float32)

    # u = T (beta v): dv = beta T^T du, dT += du (beta v)^T
    for i_v in range(tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_tv = m_t[:, None] & (o_v < V)[None, :]
        o_tv = (t0 * HV + i_hv) * V + o_t[:, None] * (HV * V) + o_v[None, :]
        # v and dv at their own token strides (SV, SDV): slices of the conv's output and of its input gradient
        b_v = tl.load(v + t0 * SV + i_hv * V + o_t[:, None] * SV + o_v[None, :], mask=m_tv, other=0)
        b_du = tl.load(dv2 + o_tv, mask=m_tv, other=0)
        b_dTu += tl.dot(b_du, tl.trans(b_v.to(b_du.dtype)))
        b_dXu = tl.dot(b_TT, b_du.to(tl.float32))
        o_dv = t0 * SDV + i_hv * V + o_t[:, None] * SDV + o_v[None, :]
        tl.store(dv + o_dv, (b_dXu * b_beta[:, None]).to(dv.dtype.element_ty), mask=m_tv)
        b_db += tl.sum(b_dXu * b_v.to(tl.float32), 1)
    # w = T (beta exp(G) k): dT += dw Xw^T; and k k^T for A
    for i_k in range(NK):
        o_k = i_k * BK + tl.arange(0, BK)
        m_tk = m_t[:, None] & (o_k < K)[None, :]
        b_k = tl.load(k + (t0 * H + i_h) * K + o_t[:, None] * (H * K) + o_k[None, :], mask=m_tk, other=0)
        b_dw = tl.load(dw + (t0 * HV + i_hv) * K + o_t[:, None] * (HV * K) + o_k[None, :], mask=m_tk, other=0)
        b_dTw += tl.dot(b_dw, tl.trans(b_k.to(b_dw.dtype)))
        b_kk += tl.dot(b_k, tl.trans(b_k))
    b_dT = b_dTu * b_beta[None, :] + b_dTw * b_gb[None, :]
    # T loaded only now: one [BT, BT] fp32 tile fewer live through the loops
    b_T = tl.load(p_T + o_t[:, None] * (HV * BT) + o_t[None, :], mask=m_t[:, None], other=0.0).to(tl.float32)
    # T = (I + A)^-1: dA = -T^T dT T^T on the strict lower triangle; A_ij = beta_i (k_i . k_j) exp(G_i - G_j)
    b_dA = -tl.dot(tl.dot(b_TT, b_dT), tl.trans(b_T))
    m_A = (o_t[:, None] > o_t[None, :]) & m_tt
    b_E = tl.exp(tl.where(m_A, b_G[:, None] - b_G[None, :], float("-inf")))
    b_B = b_dA * b_E
    b_db += tl.sum(b_B * b_kk, 1)
    b_dAA = b_B * b_kk * b_beta[:, None]
    b_dG += tl.sum(b_dAA, 1) - tl.sum(b_dAA, 0)
    # A's two k factors: dk_i += sum_j Bb_ij k_j + sum_j Bb_ji k_j, as one product with the symmetric Bb + Bb^T (two
    # products and a transposed k load until 2026-11-27: 0.437 -> 0.397 ms at T=8192, H=30, 0.227 -> 0.212 at H=15;
    # bench/results/gpu_check/session14/callA, autotuned, alternating processes)
    b_Bb = b_B * b_beta[:, None]
    b_S = b_Bb + tl.trans(b_Bb)
    b_kdk = tl.zeros([BT], dtype=tl.float32)  # sum over K of k * dk (the L2 norm's backward, with K_NORM)
    for i_k in range(NK):
        o_k = i_k * BK + tl.arange(0, BK)
        m_tk = m_t[:, None] & (o_k < K)[None, :]
        b_kf = tl.load(k + (t0 * H + i_h) * K + o_t[:, None] * (H * K) + o_k[None, :], mask=m_tk, other=0).to(
            tl.float32
        )
        o_tk = (t0 * HV + i_hv) * K + o_t[:, None] * (HV * K) + o_k[None, :]
        b_dw = tl.load(dw + o_tk, mask=m_tk, other=0).to(tl.float32)
        b_dk = tl.load(dk_part + o_tk, mask=m_tk, other=0).to(tl.float32)
        b_dXw = tl.dot(b_TT, b_dw)
        b_dk += b_dXw * b_gb[:, None] + tl.dot(b_S, b_kf)
        b_r = tl.sum(b_kf * b_dXw, 1)
        b_db += b_eG * b_r
        b_dG += b_gb * b_r
        if K_NORM:
            b_kdk += tl.sum(b_kf * b_dk, 1)
        tl.store(dk + t0 * SDK + i_hv * K + o_t[:, None] * SDK + o_k[None, :], b_dk.to(dk.dtype.element_ty), mask=m_tk)
    if K_NORM:
        # k was L2-normalised per row (k = x * rstd): dx = rstd (dk - k sum(k * dk)), over the dk just stored (read
        # back by the same program, from L2) instead of a separate pass reading k and dk from memory again
        tl.debug_barrier()  # every K block of dk stored before any is read back
        b_rs = tl.load(k_rstd + (t0 + o_t) * H + i_h, mask=m_t, other=0.0)
        for i_k in range(NK):
            o_k = i_k * BK + tl.arange(0, BK)
            m_tk = m_t[:, None] & (o_k < K)[None, :]
            b_kf = tl.load(k + (t0 * H + i_h) * K + o_t[:, None] * (H * K) + o_k[None, :], mask=m_tk, other=0).to(
                tl.float32
            )
            p_dk = dk + t0 * SDK + i_hv * K + o_t[:, None] * SDK + o_k[None, :]
            b_dk = tl.load(p_dk, mask=m_tk, other=0).to(tl.float32)
            b_dk = b_rs[:, None] * (b_dk - b_kf * b_kdk[:, None])
            tl.store(p_dk, b_dk.to(dk.dtype.element_ty), mask=m_tk)
    if Q_NORM:
        # q's L2-norm backward on the way, here rather than in a launch of its own: dx = rstd (dq - q sum(q * dq))
        # over dq as chunk_bwd_dqk wrote it (in place when dq_out is dq: each row block is read before it is written)
        b_rq = tl.load(q_rstd + (t0 + o_t) * H + i_h, mask=m_t, other=0.0)
        b_qdq = tl.zeros([BT], dtype=tl.float32)
        for i_k in range(NK):
            o_k = i_k * BK + tl.arange(0, BK)
            o_qk = (t0 * H + i_h) * K + o_t[:, None] * (H * K) + o_k[None, :]
            m_tk = m_t[:, None] & (o_k < K)[None, :]
            b_qf = tl.load(q + o_qk, mask=m_tk, other=0).to(tl.float32)
            b_qdq += tl.sum(b_qf * tl.load(dq + o_qk, mask=m_tk, other=0).to(tl.float32), 1)
        for i_k in range(NK):
            o_k = i_k * BK + tl.arange(0, BK)
            o_qk = (t0 * H + i_h) * K + o_t[:, None] * (H * K) + o_k[None, :]
            m_tk = m_t[:, None] & (o_k < K)[None, :]
            b_qf = tl.load(q + o_qk, mask=m_tk, other=0).to(tl.float32)
            b_dx = b_rq[:, None] * (tl.load(dq + o_qk, mask=m_tk, other=0).to(tl.float32) - b_qf * b_qdq[:, None])
            p_out = dq_out + t0 * SDQ + i_h * K + o_t[:, None] * SDQ + o_k[None, :]
            tl.store(p_out, b_dx.to(dq_out.dtype.element_ty), mask=m_tk)
    b_dG += (b_dG0 + b_dG1) + (b_dG2 + b_dG3)
    for i_s in range(4, NK):  # K blocks past four (BK = 16 with K = 80, 112, ...)
        b_dG += tl.load(p_dgp + i_s * TOT, mask=m_t, other=0.0)
    # g enters through the chunk-local cumsum G: dg_j = sum_{i >= j} dG_i
    b_dg = b_dG - tl.cumsum(b_dG, 0) + tl.sum(b_dG, 0)
    tl.store(dg + t0 * HV + i_hv + o_t * HV, b_dg, mask=m_t)
    tl.store(dbeta + t0 * HV + i_hv + o_t * HV, b_db.to(dbeta.dtype.element_ty), mask=m_t)


def chunk_wy_bwd(
    k, v, beta, gcum, Ai, dw, dv2, dk_part, dgp, meta, dv_out=None, k_rstd=None, dk_out=None, q_norm=None
):  # fmt: skip
    """Returns dk ([B, T, HV, K]), dv, dbeta (in beta's dtype), dg (fp32). dv is written into ``dv_out`` when given
    (shaped as v, any token stride; e.g. a slice of the conv input's gradient), else into a new contiguous tensor.

    With ``k_rstd`` ([B*T*H] fp32: k = x * rstd was L2-normalised per row; only with HV == H) dk is the gradient of
    x, the norm's backward applied in this kernel, written into ``dk_out`` when given (shaped as k, any token
    stride). With ``q_norm = (q, dq, q_rstd, dq_out)`` (with k_rstd) q's norm backward runs here too: dq_out (shaped
    as q, any token stride; dq itself is fine) gets the gradient of q's input from q (normalised) and its dq."""
    B, T, H, K = k.shape
    HV, V = v.shape[2], v.shape[3]
    BK = pick_block(K, 64)
    NK = triton.cdiv(K, BK)
    assert dgp.shape[0] == NK
    assert k_rstd is None or HV == H, "the L2 norm's backward is folded in only with one value head per key head"
    assert dk_out is None or k_rstd is not None
    assert q_norm is None or k_rstd is not None
    BV = pick_block(V, 128 if is_interpret() else 64)
    if dk_out is not None:
        dk = dk_out
    else:
        dk = torch.empty(B, T, HV, K, dtype=torch.float32 if HV != H else k.dtype, device=k.device)
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device) if dv_out is None else dv_out
    dbeta = torch.empty(B, T, HV, dtype=beta.dtype, device=k.device)  # rounded once at the store, no cast launch
    dg = torch.empty(B, T, HV, dtype=torch.float32, device=k.device)
    grid = (meta["NT"], B * HV)
    q, dq, q_rstd, dq_out = (dk, dk, dk, dk) if q_norm is None else q_norm
    chunk_wy_bwd_kernel[grid](
        k, v, beta, gcum, Ai, dw, dv2, dk_part, dgp, dk if k_rstd is None else k_rstd, q, dq, q_rstd, dq_out, dk, dv,
        dbeta, dg, meta["cu_seqlens"], meta["chunk_indices"], T, B * T * HV, token_stride(v, "v"),
        token_stride(dv, "dv"), token_stride(dk, "dk"), token_stride(dq_out, "dq"), H=H, HV=HV, K=K, V=V, BT=CHUNK,
        BK=BK, BV=BV, NK=NK, K_NORM=k_rstd is not None, Q_NORM=q_norm is not None,
        IS_VARLEN=meta["cu_seqlens"] is not None,
    )  # fmt: skip
    return dk, dv, dbeta, dg
