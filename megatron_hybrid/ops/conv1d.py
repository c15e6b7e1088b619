"""Depthwise causal conv1d (no bias) with optional SiLU, Triton forward/backward, torch path on CPU.

    y[t, c] = act( sum_w weight[c, w] * x[t - (W - 1) + w, c] ),  x before the sequence start = 0 (or the state)

x ``[B, T, C]``, weight ``[C, W]``. With ``cu_seqlens`` (B = 1) no tap crosses a sequence boundary.
The conv state is the last ``W - 1`` inputs of a sequence, ``[N, C, W - 1]`` (oldest first). An initial state is
handled by inserting its rows in front of each sequence (differentiable torch glue around the same kernels):
training calls take the plain path with no copy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .norms import use_triton

ACTIVATIONS = (None, "silu", "swish")


@triton.jit
def _row_bounds(o_t, tok_bos, tok_eos, L, IS_VARLEN: tl.constexpr, m_t):
    if IS_VARLEN:
        b_bos = tl.load(tok_bos + o_t, mask=m_t, other=0)
        b_eos = tl.load(tok_eos + o_t, mask=m_t, other=0)
    else:
        b_bos = (o_t // L) * L
        b_eos = b_bos + L
    return b_bos, b_eos


@triton.jit
def conv1d_fwd_kernel(x, weight, y, tok_bos, tok_eos, R, L, C: tl.constexpr, W: tl.constexpr, BT: tl.constexpr,
                      BC: tl.constexpr, ACT: tl.constexpr, IS_VARLEN: tl.constexpr):  # fmt: skip
    i_t, i_c = tl.program_id(0), tl.program_id(1)
    o_t = i_t * BT + tl.arange(0, BT)
    o_c = i_c * BC + tl.arange(0, BC)
    m_t, m_c = o_t < R, o_c < C
    b_bos, b_eos = _row_bounds(o_t, tok_bos, tok_eos, L, IS_VARLEN, m_t)
    b_y = tl.zeros([BT, BC], dtype=tl.float32)
    for i_w in tl.static_range(W):
        o_s = o_t - (W - 1) + i_w
        m_s = m_t & (o_s >= b_bos)
        b_x = tl.load(x + o_s.to(tl.int64)[:, None] * C + o_c[None, :], mask=m_s[:, None] & m_c[None, :], other=0)
        b_w = tl.load(weight + o_c * W + i_w, mask=m_c, other=0).to(tl.float32)
        b_y += b_x.to(tl.float32) * b_w[None, :]
    if ACT:
        b_y = b_y * tl.sigmoid(b_y)
    tl.store(
        y + o_t.to(tl.int64)[:, None] * C + o_c[None, :], b_y.to(y.dtype.element_ty), mask=m_t[:, None] & m_c[None, :]
    )


@triton.jit
def conv1d_bwd_kernel(x, weight, dy, dx, dw, tok_bos, tok_eos, R, L, C: tl.constexpr, W: tl.constexpr,
                      BT: tl.constexpr, BC: tl.constexpr, ACT: tl.constexpr, IS_VARLEN: tl.constexpr):  # fmt: skip
    i_t, i_c = tl.program_id(0), tl.program_id(1)
    o_s = i_t * BT + tl.arange(0, BT)  # input rows whose gradient this program writes
    o_c = i_c * BC + tl.arange(0, BC)
    m_s, m_c = o_s < R, o_c < C
    b_bos, b_eos = _row_bounds(o_s, tok_bos, tok_eos, L, IS_VARLEN, m_s)
    b_xs = tl.load(x + o_s.to(tl.int64)[:, None] * C + o_c[None, :], mask=m_s[:, None] & m_c[None, :], other=0)
    b_xs = b_xs.to(tl.float32)
    b_dx = tl.zeros([BT, BC], dtype=tl.float32)
    for i_w in tl.static_range(W):
        o_t = o_s + (W - 1 - i_w)  # the output row that reads x[o_s] through tap i_w
        m_t = m_s & (o_t < b_eos)
        # recompute the pre-activation at o_t
        b_pre = tl.zeros([BT, BC], dtype=tl.float32)
        if ACT:
            for j_w in tl.static_range(W):
                o_r = o_t - (W - 1) + j_w
                m_r = m_t & (o_r >= b_bos)
                b_x = tl.load(
                    x + o_r.to(tl.int64)[:, None] * C + o_c[None, :], mask=m_r[:, None] & m_c[None, :], other=0
                )
                b_pre += b_x.to(tl.float32) * tl.load(weight + o_c * W + j_w, mask=m_c, other=0).to(tl.float32)[None, :]
        b_dy = tl.load(dy + o_t.to(tl.int64)[:, None] * C + o_c[None, :], mask=m_t[:, None] & m_c[None, :], other=0)
        b_dy = b_dy.to(tl.float32)
        if ACT:
            b_sg = tl.sigmoid(b_pre)
            b_dy = b_dy * b_sg * (1 + b_pre * (1 - b_sg))
        b_w = tl.load(weight + o_c * W + i_w, mask=m_c, other=0).to(tl.float32)
        b_dx += b_dy * b_w[None, :]
        tl.store(dw + (i_t * C + o_c) * W + i_w, tl.sum(b_dy * b_xs, 0), mask=m_c)
    tl.store(
        dx + o_s.to(tl.int64)[:, None] * C + o_c[None, :],
        b_dx.to(dx.dtype.element_ty),
        mask=m_s[:, None] & m_c[None, :],
    )


def _bounds(R, L, cu_seqlens, device):
    if cu_seqlens is None:
        return None, None
    lens = cu_seqlens[1:] - cu_seqlens[:-1]
    tok_bos = torch.repeat_interleave(cu_seqlens[:-1], lens, output_size=R).to(torch.int32)
    tok_eos = torch.repeat_interleave(cu_seqlens[1:], lens, output_size=R).to(torch.int32)
    return tok_bos, tok_eos


class CausalConv1dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, cu_seqlens, act):
        B, T, C = x.shape
        W = weight.shape[1]
        x2 = x.contiguous().view(B * T, C)
        R = B * T
        tok_bos, tok_eos = _bounds(R, T, cu_seqlens, x.device)
        y = torch.empty_like(x2)
        # [32, 128] tiles: 32 fp32 values per thread per live tile at 4 warps (larger tiles spill registers)
        BT, BC = 32, min(128, triton.next_power_of_2(C))
        conv1d_fwd_kernel[(triton.cdiv(R, BT), triton.cdiv(C, BC))](
            x2, weight.contiguous(), y, tok_bos, tok_eos, R, T, C=C, W=W, BT=BT, BC=BC, ACT=act,
            IS_VARLEN=cu_seqlens is not None,
        )  # fmt: skip
        ctx.save_for_backward(x2, weight, tok_bos, tok_eos)
        ctx.meta = (B, T, C, W, act, cu_seqlens is not None)
        return y.view(B, T, C)

    @staticmethod
    def backward(ctx, dy):
        x2, weight, tok_bos, tok_eos = ctx.saved_tensors
        B, T, C, W, act, varlen = ctx.meta
        R = B * T
        # the backward keeps ~5 tiles live (x, dx, the recomputed pre-activation, dy, a load): [32, 64] tiles.
        # [64, 128] tiles spilled and took 4.1 ms at T=8192, C=11520 in the layer profile of 2026-11-26.
        BT, BC = 32, min(64, triton.next_power_of_2(C))
        n_t = triton.cdiv(R, BT)
        dx = torch.empty_like(x2)
        dw = torch.empty(n_t, C, W, dtype=torch.float32, device=x2.device)
        conv1d_bwd_kernel[(n_t, triton.cdiv(C, BC))](
            x2, weight.contiguous(), dy.contiguous().view(R, C), dx, dw, tok_bos, tok_eos, R, T, C=C, W=W, BT=BT,
            BC=BC, ACT=act, IS_VARLEN=varlen,
        )  # fmt: skip
        return dx.view(B, T, C), dw.sum(0).to(weight.dtype), None, None


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
