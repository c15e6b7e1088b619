"""Token-by-token gated delta rule for decoding: forward only, state in and out.

One program per (V block, sequence, value head) keeps its K x BV state slice in fp32 registers and walks the tokens.
No autograd: use ``chunk_gated_delta_rule`` for training.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..launch import fast_launch
from .chunk import check_inputs
from .naive import naive_recurrent_gated_delta_rule
from .utils import is_interpret


@fast_launch
@triton.jit(do_not_specialize=["T"])
def fused_recurrent_fwd_kernel(q, k, v, g, beta, o, h0, ht, cu_seqlens, scale, T, H: tl.constexpr, HV: tl.constexpr,
                               K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                               USE_H0: tl.constexpr, STORE_HT: tl.constexpr, L2NORM: tl.constexpr,
                               IS_VARLEN: tl.constexpr):  # fmt: skip
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n, i_hv = i_nh // HV, i_nh % HV
    i_h = i_hv // (HV // H)
    if IS_VARLEN:
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        eos = tl.load(cu_seqlens + i_n + 1).to(tl.int64)
    else:
        bos = (i_n * T).to(tl.int64)
        eos = bos + T
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    m_h = m_k[:, None] & m_v[None, :]
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_H0:
        b_h += tl.load(h0 + (i_n * HV + i_hv).to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :], mask=m_h, other=0)
    for t in range(bos, eos):
        b_q = tl.load(q + (t * H + i_h) * K + o_k, mask=m_k, other=0).to(tl.float32)
        b_k = tl.load(k + (t * H + i_h) * K + o_k, mask=m_k, other=0).to(tl.float32)
        b_v = tl.load(v + (t * HV + i_hv) * V + o_v, mask=m_v, other=0).to(tl.float32)
        b_g = tl.load(g + t * HV + i_hv).to(tl.float32)
        b_b = tl.load(beta + t * HV + i_hv).to(tl.float32)
        if L2NORM:
            b_q = b_q / tl.sqrt(tl.sum(b_q * b_q) + 1e-6)
            b_k = b_k / tl.sqrt(tl.sum(b_k * b_k) + 1e-6)
        b_h *= tl.exp(b_g)
        b_u = b_b * (b_v - tl.sum(b_h * b_k[:, None], 0))
        b_h += b_k[:, None] * b_u[None, :]
        b_o = tl.sum(b_h * b_q[:, None], 0) * scale
        tl.store(o + (t * HV + i_hv) * V + o_v, b_o.to(o.dtype.element_ty), mask=m_v)
    if STORE_HT:
        tl.store(ht + (i_n * HV + i_hv).to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :], b_h, mask=m_h)


@torch.no_grad()
def fused_recurrent_gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    use_qk_l2norm: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Same arguments and results as ``chunk_gated_delta_rule`` (no gradients). Falls back to the naive recurrence
    on CPU without TRITON_INTERPRET."""
    check_inputs(q, k, v, g, beta, initial_state, cu_seqlens)
    if not (q.is_cuda or is_interpret()):
        return naive_recurrent_gated_delta_rule(
            q, k, v, g, beta, scale, initial_state, output_final_state, cu_seqlens, use_qk_l2norm
        )
    B, T, H, K = k.shape
    HV, V = v.shape[2], v.shape[3]
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    scale = K**-0.5 if scale is None else float(scale)
    q, k, v, beta = (x.contiguous() for x in (q, k, v, beta))
    g = g.float().contiguous()
    h0 = None if initial_state is None else initial_state.float().contiguous()
    o = torch.empty_like(v)
    ht = torch.empty(N, HV, K, V, dtype=torch.float32, device=q.device) if output_final_state else None
    BK = triton.next_power_of_2(K)
    BV = min(triton.next_power_of_2(V), 64 if is_interpret() else 32)
    fused_recurrent_fwd_kernel[(triton.cdiv(V, BV), N * HV)](
        q, k, v, g, beta, o, h0, ht, cu_seqlens, scale, T, H=H, HV=HV, K=K, V=V, BK=BK, BV=BV,
        USE_H0=h0 is not None, STORE_HT=output_final_state, L2NORM=use_qk_l2norm, IS_VARLEN=cu_seqlens is not None,
        num_warps=4,
    )  # fmt: skip
    return o, ht
