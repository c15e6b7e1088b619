"""Depthwise causal conv1d (no bias) with optional SiLU, Triton forward/backward, torch path on CPU.

    y[t, c] = act( sum_w weight[c, w] * x[t - (W - 1) + w, c] ),  x before the sequence start = 0 (or the state)

x ``[B, T, C]``, weight ``[C, W]``. With ``cu_seqlens`` (B = 1) no tap crosses a sequence boundary.
The conv state is the last ``W - 1`` inputs of a sequence, ``[N, C, W - 1]`` (oldest first). An initial state is
handled by inserting its rows in front of each sequence (differentiable torch glue around the same kernels):
training calls take the plain path with no copy.

x is read in place when its channels are contiguous, whatever its batch and row strides (the GDN layer passes
``projected[..., :C]``, row stride 17280 at C = 11520): the kernels take the batch and row strides, and the
backward keeps that view (no copy). y and dx are new contiguous ``[B, T, C]`` tensors.

Backward (dpre = dy * act'(pre), pre the pre-activation):

    dx[s] = sum_w dpre[s + W - 1 - w] * weight[w]        dw[w] = sum_s dpre[s + W - 1 - w] * x[s]

in one of three ways, chosen by ``BwdConfig`` (module default ``_BWD_CONFIG``; ``bench/conv1d.py`` times each):
- ``fused``: one kernel; for each tap it recomputes pre at the W output rows that read x[s] (W shifted loads of x,
  one dy load and one sigmoid per tap and element: W * W + 1 tile loads per element, x[s] loaded once).
- ``two_pass``: ``conv1d_bwd_dpre_kernel`` writes dpre once per element (W shifted loads of x, one of dy, one
  sigmoid), in fp32 or in dy's dtype; ``conv1d_bwd_kernel`` reads W shifted rows of dpre and x[s].
- ``ring``: both passes in one kernel (``conv1d_bwd_ring_kernel``): dpre goes through a small per-program scratch
  ring (two row tiles) that is written and read back by the same program, so it stays in L1/L2.
In all three, a program walks ``rows_per_program`` tiles of ``block_t`` rows and accumulates the dw partials in W
fp32 register tiles, reduced and stored once: a partial buffer [cdiv(R, block_t * rows_per_program), W, C] that torch
sums. Without activation dpre = dy: ``conv1d_bwd_kernel`` alone, no recompute.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .launch import fast_launch
from .norms import use_triton

ACTIVATIONS = (None, "silu", "swish")
BWD_VARIANTS = ("fused", "two_pass", "ring")
DPRE_DTYPES = ("fp32", "dy")  # two_pass, ring: dpre stored in fp32, or in dy's dtype (half the bytes)


@dataclasses.dataclass(frozen=True)
class BwdConfig:
    """How the backward runs; private: the module default is ``_BWD_CONFIG``, the benchmark passes its own.

    ``block_t`` x ``block_c`` is the tile of ``conv1d_bwd_kernel`` and ``conv1d_bwd_ring_kernel``. Live fp32 tiles:
    x, dx, the dpre tile and the W dw accumulators (7 at W = 4), plus the recomputed pre-activation, a shifted x and
    dy for ``fused`` (~10). A tile is 16 fp32 registers per thread at [32, 64] and 4 warps, 8 at [16, 64].
    ptxas (Triton 3.6, sm_90, bf16, W = 4, B = 1, 8 rows per program; registers per thread, fp32 / bf16 dpre):
    fused 172 at [32, 64] with 1 row tile per program but 255 + 128 B of spill stack with 4 or 8, 168 at [16, 64];
    two_pass pass 2 227 / 168 at [32, 64], 128 / 120 at [16, 64]; pass 1 90 / 80 at [32, 128]; ring 221 at
    [32, 64], 128 / 120 at [16, 64]; forward 78 at [32, 128]. No spills but the one named.
    """

    # measured on the H100 (bench/results/conv1d.md, T = 8192, C = 11520, bf16): 0.41 ms against 1.08 ms for the
    # old fused kernel; dpre in bf16 is 0.36 ms but adds a rounding (dx error 2.4e-3 instead of 1.7e-3)
    variant: str = "ring"
    dpre_dtype: str = "fp32"
    rows_per_program: int = 16
    block_t: int = 16
    block_c: int = 64

    def __post_init__(self):
        if self.variant not in BWD_VARIANTS:
            raise ValueError(f"variant must be one of {BWD_VARIANTS}, got {self.variant!r}")
        if self.dpre_dtype not in DPRE_DTYPES:
            raise ValueError(f"dpre_dtype must be one of {DPRE_DTYPES}, got {self.dpre_dtype!r}")
        if self.rows_per_program < 1:
            raise ValueError(f"rows_per_program must be >= 1, got {self.rows_per_program}")
        for name in ("block_t", "block_c"):
            value = getattr(self, name)
            if value < 1 or value & (value - 1):
                raise ValueError(f"{name} must be a power of two, got {value}")

    @property
    def name(self) -> str:
        dpre = f"/dpre={self.dpre_dtype}" if self.variant != "fused" else ""
        return f"{self.variant}{dpre}/rows={self.rows_per_program}/tile={self.block_t}x{self.block_c}"


# The default is the expected fastest, NOT YET MEASURED on a GPU (bench/conv1d.py times every variant). Static
# estimate at T = 8192, C = 11520 (94M elements; ~29.7e12 lane-instructions/s and ~3 TB/s on an H100) from the
# SASS of the row loop (Triton 3.6, sm_90), instructions per element: fused ~131 (instruction-bound: >= 0.42 ms);
# two_pass ~37 + ~20 (memory-bound: x, dy -> dpre -> dpre, x -> dx is 6 x 189 MB with bf16 dpre, 8 x with fp32:
# ~0.4-0.5 ms); ring ~56 (~0.18 ms of issue; x, dy, dx = 3 x 189 MB plus the ring's write-back, 2 R C /
# rows_per_program fp32 = 94 MB at 8 rows: ~0.25-0.3 ms).
_BWD_CONFIG = BwdConfig()


# ------------------------------------------------------------------------------------------------------ kernels
@triton.jit
def _rows(o, m, tok_bos, tok_eos, L, SEQS: tl.constexpr):
    """Sequence bounds [bos, eos) of the packed rows ``o`` (b * L + l) and their batch and position indices.

    SEQS (``_seqs``): 0 one sequence (B = 1, no cu_seqlens), 1 B sequences of length L, 2 varlen (B = 1).
    """
    if SEQS == 2:
        bos = tl.load(tok_bos + o, mask=m, other=0)
        eos = tl.load(tok_eos + o, mask=m, other=0)
        i_b = tl.zeros_like(o)
        i_l = o
    elif SEQS == 1:
        i_b = o // L
        bos = i_b * L
        eos = bos + L
        i_l = o - bos
    else:  # no integer division per row
        i_b = tl.zeros_like(o)
        bos = i_b
        eos = i_b + L
        i_l = o
    return bos, eos, i_b, i_l


@triton.jit
def _row_ptrs(p, i_b, i_l, s_b, s_t, o_c):
    """Pointers to rows (i_b, i_l), channels o_c, of a tensor with strides (s_b, s_t, 1)."""
    return p + (i_b.to(tl.int64) * s_b + i_l.to(tl.int64) * s_t)[:, None] + o_c[None, :]


@triton.jit
def _taps(weight, o_c, m_c, W: tl.constexpr):
    """The W weight columns of channels o_c in fp32, loaded once: a tuple of W [BC] vectors."""
    b_ws = ()
    for i_w in tl.static_range(W):
        b_ws = b_ws + (tl.load(weight + o_c * W + i_w, mask=m_c, other=0).to(tl.float32),)
    return b_ws


@triton.jit
def _tuple_add(t, i: tl.constexpr, v, N: tl.constexpr):
    """``t`` with ``v`` added to item i (tuples are immutable; this is compile-time plumbing, no data moves)."""
    out = ()
    for k in tl.static_range(N):
        if k == i:
            out = out + (t[k] + v,)
        else:
            out = out + (t[k],)
    return out


@triton.jit
def _pre(p_x, sx_t, o, m, bos, m_c, b_ws, b_x0, SHIFT: tl.constexpr, W: tl.constexpr, HAS_X0: tl.constexpr,
         BT: tl.constexpr, BC: tl.constexpr):  # fmt: skip
    """Pre-activation at rows o + SHIFT: sum_w weight[w] * x[o + SHIFT - (W - 1) + w], zero before ``bos``.

    ``p_x`` points at x's rows o, ``m`` masks the output rows. With HAS_X0, ``b_x0`` is x's tile at rows o (already
    loaded; loaded under a mask no narrower than ``m``, so rows outside it may differ: the caller zeroes them).
    """
    b_pre = tl.zeros([BT, BC], dtype=tl.float32)
    for i_w in tl.static_range(W):
        r = SHIFT - (W - 1) + i_w  # the x row, relative to o
        if HAS_X0 and r == 0:
            b_x = b_x0
        else:
            m_r = m & (o + r >= bos)
            b_x = tl.load(p_x + r * sx_t, mask=m_r[:, None] & m_c[None, :], other=0).to(tl.float32)
        b_pre += b_x * b_ws[i_w][None, :]
    return b_pre


@triton.jit
def _dsilu(b_pre, b_dy):
    b_sg = tl.sigmoid(b_pre)
    return b_dy * b_sg * (1 + b_pre * (1 - b_sg))


@fast_launch
@triton.jit
def conv1d_fwd_kernel(x, weight, y, tok_bos, tok_eos, R, L, sx_b, sx_t, C: tl.constexpr, W: tl.constexpr,
                      BT: tl.constexpr, BC: tl.constexpr, ACT: tl.constexpr, SEQS: tl.constexpr):  # fmt: skip
    i_t, i_c = tl.program_id(0), tl.program_id(1)
    o_t = i_t * BT + tl.arange(0, BT)
    o_c = i_c * BC + tl.arange(0, BC)
    m_t, m_c = o_t < R, o_c < C
    bos, eos, i_b, i_l = _rows(o_t, m_t, tok_bos, tok_eos, L, SEQS)
    b_ws = _taps(weight, o_c, m_c, W)
    p_x = _row_ptrs(x, i_b, i_l, sx_b, sx_t, o_c)
    b_y = _pre(p_x, sx_t, o_t, m_t, bos, m_c, b_ws, None, 0, W, False, BT, BC)
    if ACT:
        b_y = b_y * tl.sigmoid(b_y)
    tl.store(
        y + o_t.to(tl.int64)[:, None] * C + o_c[None, :], b_y.to(y.dtype.element_ty), mask=m_t[:, None] & m_c[None, :]
    )


@triton.jit
def _dpre_rows(x, weight_taps, dy, o, m_t, o_c, m_c, tok_bos, tok_eos, R, L, sx_b, sx_t, sd_b, sd_t,
               W: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, SEQS: tl.constexpr):  # fmt: skip
    """dpre = dy * silu'(pre) at rows o (zero where m_t or m_c is off): W shifted x loads, one dy load, one sigmoid."""
    bos, eos, i_b, i_l = _rows(o, m_t, tok_bos, tok_eos, L, SEQS)
    p_x = _row_ptrs(x, i_b, i_l, sx_b, sx_t, o_c)
    b_pre = _pre(p_x, sx_t, o, m_t, bos, m_c, weight_taps, None, 0, W, False, BT, BC)
    b_dy = tl.load(_row_ptrs(dy, i_b, i_l, sd_b, sd_t, o_c), mask=m_t[:, None] & m_c[None, :], other=0)
    return _dsilu(b_pre, b_dy.to(tl.float32))


@fast_launch
@triton.jit
def conv1d_bwd_dpre_kernel(x, weight, dy, dpre, tok_bos, tok_eos, R, L, sx_b, sx_t, sd_b, sd_t, C: tl.constexpr,
                           W: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, SEQS: tl.constexpr):  # fmt: skip
    """two_pass, pass 1: dpre = dy * silu'(pre), once per element, stored contiguous [R, C] in dpre's dtype."""
    i_t, i_c = tl.program_id(0), tl.program_id(1)
    o_t = i_t * BT + tl.arange(0, BT)
    o_c = i_c * BC + tl.arange(0, BC)
    m_t, m_c = o_t < R, o_c < C
    b_ws = _taps(weight, o_c, m_c, W)
    b_g = _dpre_rows(x, b_ws, dy, o_t, m_t, o_c, m_c, tok_bos, tok_eos, R, L, sx_b, sx_t, sd_b, sd_t, W, BT, BC,
                     SEQS)  # fmt: skip
    tl.store(
        dpre + o_t.to(tl.int64)[:, None] * C + o_c[None, :],
        b_g.to(dpre.dtype.element_ty),
        mask=m_t[:, None] & m_c[None, :],
    )


@fast_launch
@triton.jit
def conv1d_bwd_kernel(x, weight, g, dx, dw, tok_bos, tok_eos, R, L, sx_b, sx_t, sg_b, sg_t, sdx_b, sdx_t,
                      C: tl.constexpr, W: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, RPP: tl.constexpr,
                      RECOMPUTE: tl.constexpr, SEQS: tl.constexpr):  # fmt: skip
    """dx[s] = sum_w dpre[s + W-1-w] * weight[w] and dw partials sum_s dpre[s + W-1-w] * x[s].

    ``g`` is dpre (two_pass), dy without activation (dpre = dy), or dy with RECOMPUTE (fused: dpre recomputed per
    tap from W shifted x rows). A program walks RPP tiles of BT rows and accumulates dw in W [BT, BC] fp32 tiles;
    it stores one [W, BC] partial at the end into dw ``[n_programs, W, C]``.
    """
    i_p, i_c = tl.program_id(0), tl.program_id(1)
    o_c = i_c * BC + tl.arange(0, BC)
    m_c = o_c < C
    b_ws = _taps(weight, o_c, m_c, W)
    b_dw = (tl.zeros([BT, BC], dtype=tl.float32),) * W
    for i_r in range(RPP):
        o_s = (i_p * RPP + i_r) * BT + tl.arange(0, BT)  # input rows whose gradient this step writes
        m_s = o_s < R
        bos, eos, i_b, i_l = _rows(o_s, m_s, tok_bos, tok_eos, L, SEQS)
        p_x = _row_ptrs(x, i_b, i_l, sx_b, sx_t, o_c)
        p_g = _row_ptrs(g, i_b, i_l, sg_b, sg_t, o_c)
        b_x = tl.load(p_x, mask=m_s[:, None] & m_c[None, :], other=0).to(tl.float32)
        b_dx = tl.zeros([BT, BC], dtype=tl.float32)
        for i_w in tl.static_range(W):
            # output rows o_s + W-1-i_w read x[o_s] through tap i_w
            m_o = m_s & (o_s + (W - 1 - i_w) < eos)
            b_g = tl.load(p_g + (W - 1 - i_w) * sg_t, mask=m_o[:, None] & m_c[None, :], other=0).to(tl.float32)
            if RECOMPUTE:
                b_pre = _pre(p_x, sx_t, o_s, m_o, bos, m_c, b_ws, b_x, W - 1 - i_w, W, True, BT, BC)
                b_g = _dsilu(b_pre, b_g)  # zero where m_o is off (dy is)
            b_dx += b_g * b_ws[i_w][None, :]
            b_dw = _tuple_add(b_dw, i_w, b_g * b_x, W)
        # dx rows through their own strides: the fused GDN mixer writes them into its input projection's gradient
        m_dx = m_s[:, None] & m_c[None, :]
        tl.store(_row_ptrs(dx, i_b, i_l, sdx_b, sdx_t, o_c), b_dx.to(dx.dtype.element_ty), mask=m_dx)
    for i_w in tl.static_range(W):
        tl.store(dw + (i_p * W + i_w) * C + o_c, tl.sum(b_dw[i_w], 0), mask=m_c)


@fast_launch
@triton.jit
def conv1d_bwd_ring_kernel(x, weight, dy, dx, dw, ring, tok_bos, tok_eos, R, L, sx_b, sx_t, sd_b, sd_t, sdx_b,
                           sdx_t, C: tl.constexpr, W: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr,
                           RPP: tl.constexpr, SEQS: tl.constexpr):  # fmt: skip
    """The ring variant (with activation): two_pass in one kernel, dpre kept in a per-program scratch ring.

    A program walks RPP tiles of BT rows. Step i writes dpre of tile i + 1 (rows computed once, as pass 1 of
    two_pass; of the tile after the last only its first W - 1 rows) into slot (i + 1) % 2 of its ring
    ``[2 * BT, BC]``, then, after a barrier, computes dx and the dw accumulation of tile i from W shifted rows of the
    ring (tile i and the head of tile i + 1). The ring is written and read back by the same program: it stays in
    L1/L2, so DRAM sees x, dy and dx (plus the ring's write-back, 2 * R * C / RPP elements in all).
    """
    i_p, i_c = tl.program_id(0), tl.program_id(1)
    o_c = i_c * BC + tl.arange(0, BC)
    m_c = o_c < C
    o_k = tl.arange(0, BT)
    b_ws = _taps(weight, o_c, m_c, W)
    p_ring = ring + (i_p * tl.num_programs(1) + i_c).to(tl.int64) * (2 * BT * BC) + tl.arange(0, BC)[None, :]
    r0 = i_p * RPP * BT
    # slot 0: dpre of tile 0
    b_g = _dpre_rows(x, b_ws, dy, r0 + o_k, r0 + o_k < R, o_c, m_c, tok_bos, tok_eos, R, L, sx_b, sx_t, sd_b,
                     sd_t, W, BT, BC, SEQS)  # fmt: skip
    tl.store(p_ring + o_k[:, None] * BC, b_g.to(ring.dtype.element_ty))
    b_dw = (tl.zeros([BT, BC], dtype=tl.float32),) * W
    for i_r in range(RPP):
        # dpre of tile i_r + 1 into slot (i_r + 1) % 2; after the last tile only the W - 1 rows its dx reads
        o_n = r0 + (i_r + 1) * BT + o_k
        m_n = (o_n < R) & ((i_r + 1 < RPP) | (o_k < W - 1))
        b_g = _dpre_rows(x, b_ws, dy, o_n, m_n, o_c, m_c, tok_bos, tok_eos, R, L, sx_b, sx_t, sd_b, sd_t, W, BT, BC,
                         SEQS)  # fmt: skip
        tl.store(p_ring + (((i_r + 1) % 2) * BT + o_k)[:, None] * BC, b_g.to(ring.dtype.element_ty))
        tl.debug_barrier()  # the ring rows of tiles i_r and i_r + 1 are written (stores of other threads)
        o_s = r0 + i_r * BT + o_k
        m_s = o_s < R
        bos, eos, i_b, i_l = _rows(o_s, m_s, tok_bos, tok_eos, L, SEQS)
        b_x = tl.load(_row_ptrs(x, i_b, i_l, sx_b, sx_t, o_c), mask=m_s[:, None] & m_c[None, :], other=0)
        b_x = b_x.to(tl.float32)
        b_dx = tl.zeros([BT, BC], dtype=tl.float32)
        for i_w in tl.static_range(W):
            m_o = m_s & (o_s + (W - 1 - i_w) < eos)
            o_g = (i_r * BT + o_k + (W - 1 - i_w)) % (2 * BT)  # the ring row of output row o_s + W-1-i_w
            b_g = tl.load(p_ring + o_g[:, None] * BC, mask=m_o[:, None], other=0).to(tl.float32)
            b_dx += b_g * b_ws[i_w][None, :]
            b_dw = _tuple_add(b_dw, i_w, b_g * b_x, W)
        # dx rows through their own strides: the fused GDN mixer writes them into its input projection's gradient
        m_dx = m_s[:, None] & m_c[None, :]
        tl.store(_row_ptrs(dx, i_b, i_l, sdx_b, sdx_t, o_c), b_dx.to(dx.dtype.element_ty), mask=m_dx)
        tl.debug_barrier()  # slot i_r % 2 is read before step i_r + 1 overwrites it
    for i_w in tl.static_range(W):
        tl.store(dw + (i_p * W + i_w) * C + o_c, tl.sum(b_dw[i_w], 0), mask=m_c)


# --------------------------------------------------------------------------------------------------------- host
def _bounds(R, cu_seqlens):
    if cu_seqlens is None:
        return None, None
    lens = cu_seqlens[1:] - cu_seqlens[:-1]
    tok_bos = torch.repeat_interleave(cu_seqlens[:-1], lens, output_size=R).to(torch.int32)
    tok_eos = torch.repeat_interleave(cu_seqlens[1:], lens, output_size=R).to(torch.int32)
    return tok_bos, tok_eos


def _seqs(B: int, tok_bos) -> int:
    """The kernels' SEQS: 2 varlen, 1 a batch of equal sequences, 0 one sequence."""
    return 2 if tok_bos is not None else int(B > 1)


def _channels_contiguous(t: torch.Tensor) -> torch.Tensor:
    """``t`` [B, T, C] itself when its channel stride is 1 (any batch and row strides), else a contiguous copy."""
    return t if t.stride(2) == 1 or t.shape[2] == 1 else t.contiguous()


def _conv1d_fwd(x, weight, act: bool, tok_bos=None, tok_eos=None):
    """y [B, T, C] (contiguous) of x [B, T, C] with channel stride 1; (tok_bos, tok_eos) from ``_bounds``."""
    B, T, C = x.shape
    W = weight.shape[1]
    R = B * T
    y = torch.empty(B, T, C, dtype=x.dtype, device=x.device)
    if R == 0 or C == 0:
        return y
    # [16, 128] tiles, 2 warps (32 fp32 values per thread per live tile): 0.047 / 0.082 ms against 0.064 / 0.100 for
    # [32, 128] with 4 warps over the mixer's [q k] half at H = 15 / 30, T = 8192 (bench/gdn_config_sweep.py, H100,
    # 2026-11-27)
    BT, BC = 16, min(128, triton.next_power_of_2(C))
    conv1d_fwd_kernel[(triton.cdiv(R, BT), triton.cdiv(C, BC))](
        x, weight.contiguous(), y, tok_bos, tok_eos, R, T, x.stride(0), x.stride(1), C=C, W=W, BT=BT, BC=BC,
        ACT=act, SEQS=_seqs(B, tok_bos), num_warps=2,
    )  # fmt: skip
    return y


def _conv1d_bwd(x, weight, dy, act: bool, tok_bos=None, tok_eos=None, config: BwdConfig | None = None, dx=None):
    """(dx [B, T, C], dweight [C, W]) for x, dy [B, T, C] with channel stride 1. dx: written into the given tensor
    (any batch and row strides, channel stride 1), else a new contiguous one."""
    cfg = config or _BWD_CONFIG
    B, T, C = x.shape
    W = weight.shape[1]
    R = B * T
    weight = weight.contiguous()
    seqs = _seqs(B, tok_bos)
    if dx is None:
        dx = torch.empty(B, T, C, dtype=x.dtype, device=x.device)
    if R == 0 or C == 0:
        return dx, torch.zeros_like(weight)
    dpre_dtype = torch.float32 if cfg.dpre_dtype == "fp32" else dy.dtype
    BT, BC = cfg.block_t, min(cfg.block_c, triton.next_power_of_2(C))
    RPP = min(cfg.rows_per_program, triton.cdiv(R, BT))
    n_p, n_c = triton.cdiv(R, BT * RPP), triton.cdiv(C, BC)
    dw = torch.empty(n_p, W, C, dtype=torch.float32, device=x.device)  # per-program partials, summed below
    if act and cfg.variant == "ring":
        ring = torch.empty(n_p * n_c, 2 * BT, BC, dtype=dpre_dtype, device=x.device)
        # num_stages=1: no load may be software-pipelined across the ring's barriers
        conv1d_bwd_ring_kernel[(n_p, n_c)](
            x, weight, dy, dx, dw, ring, tok_bos, tok_eos, R, T, x.stride(0), x.stride(1), dy.stride(0), dy.stride(1),
            dx.stride(0), dx.stride(1), C=C, W=W, BT=BT, BC=BC, RPP=RPP, SEQS=seqs, num_stages=1,
        )  # fmt: skip
    else:
        g, sg_b, sg_t = dy, dy.stride(0), dy.stride(1)  # dpre = dy without activation
        if act and cfg.variant == "two_pass":
            dpre = torch.empty(R, C, dtype=dpre_dtype, device=x.device)
            # ~4 live tiles (pre, a shifted x, dy, the sigmoid): [32, 128] as the forward
            BT1, BC1 = 32, min(128, triton.next_power_of_2(C))
            conv1d_bwd_dpre_kernel[(triton.cdiv(R, BT1), triton.cdiv(C, BC1))](
                x, weight, dy, dpre, tok_bos, tok_eos, R, T, x.stride(0), x.stride(1), dy.stride(0), dy.stride(1),
                C=C, W=W, BT=BT1, BC=BC1, SEQS=seqs,
            )  # fmt: skip
            g, sg_b, sg_t = dpre, T * C, C
        conv1d_bwd_kernel[(n_p, n_c)](
            x, weight, g, dx, dw, tok_bos, tok_eos, R, T, x.stride(0), x.stride(1), sg_b, sg_t, dx.stride(0),
            dx.stride(1), C=C, W=W, BT=BT, BC=BC, RPP=RPP, RECOMPUTE=act and cfg.variant == "fused", SEQS=seqs,
        )  # fmt: skip
    return dx, dw.sum(0).t().to(weight.dtype).contiguous()


class CausalConv1dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, cu_seqlens, act):
        x = _channels_contiguous(x)  # a row-strided view is read (and saved) in place
        tok_bos, tok_eos = _bounds(x.shape[0] * x.shape[1], cu_seqlens)
        y = _conv1d_fwd(x, weight, act, tok_bos, tok_eos)
        ctx.save_for_backward(x, weight, tok_bos, tok_eos)
        ctx.act = act
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, tok_bos, tok_eos = ctx.saved_tensors
        dx, dw = _conv1d_bwd(x, weight, _channels_contiguous(dy), ctx.act, tok_bos, tok_eos)
        return dx, dw, None, None


def causal_conv1d_torch(x, weight, act: bool, cu_seqlens=None):
    """Reference: per sequence, left-pad with W-1 zeros and run F.conv1d."""
    B, T, C = x.shape
    W = weight.shape[1]
    bounds = [(0, T)] if cu_seqlens is None else list(zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist()))
    outs = []
    for bos, eos in bounds:
        if eos == bos:
            continue
        xs = x[:, bos:eos].transpose(1, 2).float()
        ys = F.conv1d(F.pad(xs, (W - 1, 0)), weight.float()[:, None, :], groups=C)
        if act:
            ys = F.silu(ys)
        outs.append(ys.transpose(1, 2).to(x.dtype))
    return torch.cat(outs, 1) if outs else x.clone()


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    activation: str | None = "silu",
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Depthwise causal conv over T. Returns (y ``[B, T, C]``, final state ``[N, C, W - 1]`` or None)."""
    if x.dim() != 3:
        raise ValueError(f"x must be [B, T, C], got {tuple(x.shape)}")
    B, T, C = x.shape
    if weight.dim() != 2 or weight.shape[0] != C:
        raise ValueError(f"weight must be [C, W] = [{C}, W], got {tuple(weight.shape)}")
    W = weight.shape[1]
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if weight.device != x.device:
        raise ValueError(f"weight is on {weight.device}, x on {x.device}")
    N = B
    if cu_seqlens is not None:
        if cu_seqlens.dtype != torch.int32 or cu_seqlens.dim() != 1:
            raise ValueError(f"cu_seqlens must be a 1-D int32 tensor, got {cu_seqlens.dtype}")
        if B != 1:
            raise ValueError(f"with cu_seqlens the batch size must be 1, got B={B}")
        if cu_seqlens[0].item() != 0 or cu_seqlens[-1].item() != T:
            raise ValueError(f"cu_seqlens must start at 0 and end at T={T}")
        N = cu_seqlens.numel() - 1
    if initial_state is not None and initial_state.shape != (N, C, W - 1):
        raise ValueError(f"initial_state must be [N, C, W-1] = {(N, C, W - 1)}, got {tuple(initial_state.shape)}")
    act = activation is not None
    run = (lambda xx, cu: CausalConv1dFunction.apply(xx, weight, cu, act)) if use_triton(x) else (
        lambda xx, cu: causal_conv1d_torch(xx, weight, act, cu)
    )  # fmt: skip
    if initial_state is None and not output_final_state:
        return run(x, cu_seqlens), None
    # insert the W-1 state rows in front of each sequence, run the plain conv over the longer packed batch
    state = initial_state if initial_state is not None else x.new_zeros(N, C, W - 1)
    state_rows = state.to(x.dtype).transpose(1, 2)  # [N, W-1, C]
    if cu_seqlens is None:
        x_ext = torch.cat([state_rows, x], 1)  # [B, W-1+T, C]
        y = run(x_ext, None)[:, W - 1 :]
        final = x_ext[:, -(W - 1) :].transpose(1, 2) if W > 1 else x.new_zeros(N, C, 0)
    else:
        offs = cu_seqlens.tolist()
        pieces, real, finals = [], [], []
        pos = 0
        for n in range(N):
            seq = x[0, offs[n] : offs[n + 1]]
            ext = torch.cat([state_rows[n], seq], 0)
            pieces.append(ext)
            real.append(torch.arange(pos + W - 1, pos + ext.shape[0], device=x.device))
            finals.append(ext[ext.shape[0] - (W - 1) :].transpose(0, 1))
            pos += ext.shape[0]
        x_ext = torch.cat(pieces, 0)[None]
        cu_ext = cu_seqlens + torch.arange(N + 1, dtype=torch.int32, device=x.device) * (W - 1)
        y_ext = run(x_ext, cu_ext)
        y = y_ext[:, torch.cat(real)]
        final = torch.stack(finals, 0)
    return y, (final.contiguous() if output_final_state else None)
