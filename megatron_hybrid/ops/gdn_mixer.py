"""The GDN mixer between its two projections, as one op:

    projected [B, T, C + HV*V] = [q k v | z]  ->  causal conv1d + SiLU over q k v  ->  L2 norm of q, k per head
    ->  chunked gated delta rule  ->  RMSNorm(o) * weight * SiLU(z)  ->  [B, T, HV*V] (the output projection's input)
    [ ->  the output projection's local GEMM, y W^T  ->  [B, T, d]  (with ``out_weight``) ]

On the Triton path this is one autograd Function, for memory and for one less copy. The same ops composed by
autograd keep, until the backward, the normalised q and k and a contiguous copy of v (4 values per token and value
channel in all: 180 MiB per layer call at the Olmo shape, T=8192). This Function keeps only the projection (kept
anyway: it is the conv's input and the gate) and the delta rule's output, and recomputes conv, norm and v in the
backward (~0.3 ms at that shape). Its backward writes the conv's and the gate's gradients straight into one
gradient of the projection, where autograd's split backward would concatenate them (a copy of the projection's
width per call).

Given the output projection's weight (a tensor-parallel rank's [d, HV*V] slice; the caller reduces the partial sums
over TP, as a RowParallelLinear does after its GEMM), the Function also does that GEMM, so the gated norm's output y
is not kept for the weight gradient: the gated norm's backward kernel recomputes it, bit-identical, while it reads
the same inputs anyway (90 MiB less per layer call at the Olmo shape, T=8192, for one more y-sized write).
"""

from __future__ import annotations

import os
from functools import partial

import torch

from ..compat.fused_collectives import collectives_for
from ..compat.wgrad_fusion import weight_grad
from .conv1d import _bounds, _channels_contiguous, _conv1d_bwd, _conv1d_fwd, causal_conv1d
from .gated_delta_rule import gated_delta_rule
from .gated_delta_rule.chunk import (
    _meta,
    check_inputs,
    chunk_gated_delta_rule_bwd,
    chunk_gated_delta_rule_fwd,
    folds_qk_norm,
    qk_l2norm_bwd,
)
from .norms import (
    L2NORM_EPS,
    _gate_rows,
    gated_rms_norm,
    gated_rms_norm_bwd,
    gated_rms_norm_fwd,
    l2norm_fwd,
    use_triton,
)


def recompute_wy() -> bool:
    """The fused mixer keeps g instead of the WY inverse T (fp32, 64 values per token and value head: 60 MiB per
    layer call at T=8192, 30 heads) and the backward solves for it again (the forward's kernel: identical T). The
    default since 2026-11-27: on 4 H100s (7B, TP=2) it took the hybrid's peak from 65.4 to 64.7 GiB, under Olmo 3's
    64.9, for <= 1% of tokens/s (within run-to-run spread). MEGATRON_HYBRID_GDN_RECOMPUTE_WY=0 keeps T. Read at each
    forward."""
    return os.environ.get("MEGATRON_HYBRID_GDN_RECOMPUTE_WY", "1") != "0"


def _recurrent_inputs(qkv_in, conv_weight, bounds, dims):
    """(q, k normalised [B, T, H, K], their rstds [2, B*T*H], v [B, T, HV, V]; all contiguous) from the conv's input.

    The depthwise conv runs as two launches, [q k] and v (the same values as one): the L2 norms read q and k as
    column slices of the first output, which is freed once they are normalised, and v needs no copy."""
    H, HV, K, V = dims
    B, T, _ = qkv_in.shape
    QK = 2 * H * K
    qk = _conv1d_fwd(qkv_in[..., :QK], conv_weight[:QK], True, *bounds)  # [B, T, 2*H*K]
    v = _conv1d_fwd(qkv_in[..., QK:], conv_weight[QK:], True, *bounds)  # [B, T, HV*V]
    q, k, qk_rstd = l2norm_fwd(qk[..., : H * K].view(B * T, H, K), qk[..., H * K :].view(B * T, H, K), eps=L2NORM_EPS)
    return q.view(B, T, H, K), k.view(B, T, H, K), qk_rstd, v.view(B, T, HV, V)


class GDNMixerFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, projected, conv_weight, g, beta, norm_weight, out_weight, dims, scale, norm_eps, cu_seqlens, wgrad_fused,
        out_group,
    ):  # fmt: skip
        H, HV, K, V = dims
        B, T, _ = projected.shape
        C = 2 * H * K + HV * V
        bounds = _bounds(B * T, cu_seqlens)
        q, k, _, v = _recurrent_inputs(projected[..., :C], conv_weight, bounds, dims)
        meta = _meta(B, T, cu_seqlens)
        o, gcum, Ai, *_ = chunk_gated_delta_rule_fwd(q, k, v, g, beta, scale, None, False, meta)
        del q, k, v  # recomputed in the backward
        g_kept = None
        if recompute_wy():  # keep g instead of the WY inverse (and the cumsum): the backward solves again
            gcum, Ai, g_kept = None, None, g
        o2 = o.view(-1, V)
        y, rstd = gated_rms_norm_fwd(o2, _gate_rows(projected[..., C:].unflatten(-1, (HV, V))), norm_weight, norm_eps)
        ctx.save_for_backward(
            projected, conv_weight, beta, gcum, Ai, g_kept, norm_weight, out_weight, o2, rstd, *bounds
        )
        ctx.dims, ctx.scale, ctx.meta, ctx.g_dtype = dims, scale, meta, g.dtype
        ctx.wgrad_fused, ctx.out_group = wgrad_fused, out_group
        y = y.view(B, T, HV * V)
        if out_weight is None:
            return y
        if out_group is not None:  # async TP: the GEMM pipelined with the reduce-scatter over s: [s/tp, b, d]
            return collectives_for(y).matmul_reduce_scatter(y.transpose(0, 1), out_weight.t(), out_group)
        # the same GEMM as Megatron's local RowParallelLinear (matmul with the weight transposed)
        return torch.matmul(y, out_weight.t())

    @staticmethod
    def backward(ctx, dout):
        saved = ctx.saved_tensors
        projected, conv_weight, beta, gcum, Ai, g_kept, norm_weight, out_weight, o2, rstd, tok_bos, tok_eos = saved
        H, HV, K, V = ctx.dims
        B, T, _ = projected.shape
        C = 2 * H * K + HV * V
        g3 = _gate_rows(projected[..., C:].unflatten(-1, (HV, V)))
        dout_weight = y = None
        if out_weight is None:
            dy = dout
        elif ctx.out_group is not None:  # dout [s/tp, b, d]: all-gathered while the dgrad GEMM runs on its pieces
            dout_full, dy = collectives_for(dout).all_gather_matmul(dout, out_weight, ctx.out_group, True)
            dy = dy.transpose(0, 1)  # [b, s, .], the rows of o2
            dout2 = dout_full.transpose(0, 1).reshape(-1, dout.shape[-1])
            y = torch.empty_like(o2)
        else:  # Megatron's local linear backward: dgrad dout W, wgrad dout^T y (2-D)
            dout2 = dout.reshape(-1, dout.shape[-1])
            dy = torch.matmul(dout2, out_weight)
            y = torch.empty_like(o2)
        do, dgate, dnorm_weight = gated_rms_norm_bwd(o2, g3, norm_weight, rstd, dy.contiguous().view(o2.shape), y_out=y)
        del dy
        if y is not None:
            # into the DDP's main_grad in the GEMM when fused, as Megatron's linear does with the fusion
            dout_weight = weight_grad(out_weight, y.view(dout2.shape[0], -1), dout2, ctx.wgrad_fused)
            del y
        q, k, qk_rstd, v = _recurrent_inputs(projected[..., :C], conv_weight, (tok_bos, tok_eos), ctx.dims)
        # The projection's gradient (in the projection's own layout, [s, b] transposed: the input projection's backward
        # gets a contiguous [s, b, .] tensor) and the conv output's gradient (written in place by the wy backward (dv)
        # and the L2 norms' backward (dq, dk)) are allocated when the wy backward starts, after the delta rule's
        # per-chunk states are freed; the gate's gradient waits in its own buffer until then. Allocated up front, the
        # projection's gradient coexisted with those states: the mixer layer's peak extra memory (bench/layers.py's
        # measure, T=8192, d=3840, H100, 2026-11-27) was 1833 MiB, now 1563 (Megatron-Core's GDN: 1670), for one
        # z-sized copy (fwd+bwd 10.12 -> 10.17 / 10.30 ms, within run-to-run spread).
        dprojected = dqkv = None

        def dv_in_conv_grad():
            nonlocal dgate, dprojected, dqkv
            dprojected = torch.empty_strided(projected.shape, projected.stride(), dtype=projected.dtype,
                                             device=projected.device)  # fmt: skip
            dprojected[..., C:].unflatten(-1, (HV, V)).copy_(dgate.view(B, T, HV, V))
            dgate = None
            dqkv = torch.empty(B, T, C, dtype=projected.dtype, device=projected.device)
            return dqkv[..., 2 * H * K :].unflatten(-1, (HV, V))

        def qk_in_conv_grad(i):  # q's (0) or k's (1) columns of the conv output's gradient, [B, T, H, K]
            return dqkv[..., i * H * K : (i + 1) * H * K].unflatten(-1, (H, K))

        # the wy backward writes the inputs' gradients (through q's and k's L2 norms) straight into those columns
        fold = folds_qk_norm(q, v)
        dq, dk, _, dg, dbeta, _ = chunk_gated_delta_rule_bwd(
            q, k, v, beta, gcum, Ai, ctx.scale, None, do.view(B, T, HV, V), None, ctx.meta, dv_out=dv_in_conv_grad,
            g=g_kept, k_rstd=qk_rstd[1] if fold else None, dk_out=partial(qk_in_conv_grad, 1) if fold else None,
            q_rstd=qk_rstd[0] if fold else None, dq_out=partial(qk_in_conv_grad, 0) if fold else None,
        )  # fmt: skip
        if not fold:
            outs = tuple(qk_in_conv_grad(i).view(B * T, H, K) for i in (0, 1))
            qk_l2norm_bwd(q, k, qk_rstd, dq, dk, outs=outs)
        del dq, dk
        _, dconv_weight = _conv1d_bwd(
            _channels_contiguous(projected[..., :C]), conv_weight, dqkv, True, tok_bos, tok_eos, dx=dprojected[..., :C]
        )
        return (dprojected, dconv_weight, dg.to(ctx.g_dtype), dbeta, dnorm_weight, dout_weight) + (None,) * 6


def gdn_mixer(
    projected: torch.Tensor,
    conv_weight: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    norm_weight: torch.Tensor,
    dims: tuple[int, int, int, int],
    scale: float,
    norm_eps: float,
    cu_seqlens: torch.Tensor | None = None,
    fused: bool = True,
    out_weight: torch.Tensor | None = None,
    wgrad_fused: bool = False,
    out_group=None,
) -> torch.Tensor:
    """The GDN mixer from its input projection to its output projection's input.

    Args:
        projected: ``[B, T, 2*H*K + HV*V + HV*V]``, the input projection ``[q k v | z]`` (channel stride 1; any
            batch and row strides, e.g. an ``[s, b, .]`` tensor transposed).
        conv_weight: ``[2*H*K + HV*V, W]``, the depthwise causal conv's taps.
        g: ``[B, T, HV]`` log decay; beta: ``[B, T, HV]``.
        norm_weight: ``[V]``, the output RMSNorm's weight (shared by the heads).
        dims: ``(H, HV, K, V)``: key heads, value heads, key and value head dims.
        cu_seqlens: int32 ``[N + 1]`` offsets of packed sequences (B = 1).
        fused: the one-Function Triton path (default); False composes the separate ops (same math and kernels).
        out_weight: ``[d, HV*V]``, the output projection's (local) weight: then the result is ``y out_weight^T``,
            ``[B, T, d]``, and the fused path keeps no copy of y for the backward.
        wgrad_fused: with ``out_weight``, accumulate its gradient into ``out_weight.main_grad`` (Megatron's DDP
            buffer) inside the GEMM, as Megatron's linears do under ``gradient_accumulation_fusion``.
        out_group: with ``out_weight``, the tensor-parallel group of a sequence-parallel output projection: the result
            is reduce-scattered over the sequence, ``[T/tp, B, d]`` (the layer's ``[s, b]`` layout), with the GEMM
            pipelined with the collective (async TP; ``compat/fused_collectives.py``), and the backward all-gathers
            the output gradient the same way.

    Returns:
        ``[B, T, HV*V]`` (``[B, T, d]`` with ``out_weight``) in the projection's dtype.
    """
    H, HV, K, V = dims
    B, T, width = projected.shape
    C = 2 * H * K + HV * V
    if width != C + HV * V:
        raise ValueError(f"projected must be [B, T, 2*H*K + 2*HV*V] = [{B}, {T}, {C + HV * V}], got width {width}")
    if conv_weight.dim() != 2 or conv_weight.shape[0] != C:
        raise ValueError(f"conv_weight must be [{C}, W], got {tuple(conv_weight.shape)}")
    if out_weight is not None and (out_weight.dim() != 2 or out_weight.shape[1] != HV * V):
        raise ValueError(f"out_weight must be [d, HV*V] = [d, {HV * V}], got {tuple(out_weight.shape)}")
    if fused and use_triton(projected):
        q_like = projected.new_empty(1).expand(B, T, H, K)  # shape-only stand-ins for the delta rule's checks
        v_like = projected.new_empty(1).expand(B, T, HV, V)
        check_inputs(q_like, q_like, v_like, g, beta, None, cu_seqlens)
        return GDNMixerFunction.apply(
            _channels_contiguous(projected), conv_weight, g.float().contiguous(), beta.contiguous(), norm_weight,
            out_weight, dims, float(scale), norm_eps, cu_seqlens, wgrad_fused and out_weight is not None,
            out_group if out_weight is not None else None,
        )  # fmt: skip
    # the composition (the CPU path, and the reference the fused Function is tested against)
    qkv, z = projected.split([C, HV * V], dim=-1)
    qkv, _ = causal_conv1d(qkv, conv_weight, activation="silu", cu_seqlens=cu_seqlens)
    q, k, v = qkv.split([H * K, H * K, HV * V], dim=-1)
    q, k, v = q.unflatten(-1, (H, K)), k.unflatten(-1, (H, K)), v.unflatten(-1, (HV, V))
    # recompute the per-chunk states in the backward: kept, they would hold 235 MB per layer call at the Olmo shape
    o, _ = gated_delta_rule(q, k, v, g, beta, scale=scale, use_qk_l2norm=True, cu_seqlens=cu_seqlens, keep_states=False)
    y = gated_rms_norm(o, z.unflatten(-1, (HV, V)), norm_weight, eps=norm_eps).flatten(-2)
    if out_weight is None:
        return y
    out = torch.matmul(y, out_weight.t())
    if out_group is None:
        return out
    from megatron.core.tensor_parallel.mappings import reduce_scatter_to_sequence_parallel_region

    return reduce_scatter_to_sequence_parallel_region(out.transpose(0, 1).contiguous(), group=out_group)


__all__ = ["GDNMixerFunction", "gdn_mixer"]
