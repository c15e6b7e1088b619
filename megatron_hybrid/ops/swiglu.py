"""SwiGLU of Megatron's fused fc1 output, one Triton kernel each way, torch ops on the CPU.

    out = silu(y[..., :D]) * y[..., D:]        (Megatron's fc1 order: the gate half first, then the up half)

Megatron's MLP without Transformer Engine or bias fusion runs chunk, silu, an add of ``glu_linear_offset`` (0) and a
mul, and keeps three ``[T, D]`` tensors for the backward next to the fc1 output (the silu output, the offset sum and,
for fc2, the product). This keeps only the fc1 output and recomputes in the backward. The roundings follow the
module it replaces (and transformers' Olmo MLP): silu rounded to the input dtype, then the product rounded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .launch import fast_launch
from .norms import use_triton


def swiglu_torch(y: torch.Tensor) -> torch.Tensor:
    gate, up = torch.chunk(y, 2, dim=-1)
    return F.silu(gate) * up


@triton.jit
def _tile_halves(y, M, D: tl.constexpr, BM: tl.constexpr, BF: tl.constexpr):
    """This program's [BM, BF] tile: rows, columns, mask, offsets into y [M, 2D], and the gate and up halves (fp32)."""
    o_m = tl.program_id(0) * BM + tl.arange(0, BM)
    o_f = tl.program_id(1) * BF + tl.arange(0, BF)
    m = (o_m < M)[:, None] & (o_f < D)[None, :]
    p = o_m.to(tl.int64)[:, None] * (2 * D) + o_f[None, :]
    b_a = tl.load(y + p, mask=m, other=0).to(tl.float32)
    b_b = tl.load(y + p + D, mask=m, other=0).to(tl.float32)
    return o_m, o_f, m, p, b_a, b_b


@fast_launch
@triton.jit
def swiglu_fwd_kernel(y, out, M, D: tl.constexpr, BM: tl.constexpr, BF: tl.constexpr):
    o_m, o_f, m, p, b_a, b_b = _tile_halves(y, M, D, BM, BF)
    b_s = (b_a * tl.sigmoid(b_a)).to(y.dtype.element_ty).to(tl.float32)
    tl.store(out + o_m.to(tl.int64)[:, None] * D + o_f[None, :], (b_s * b_b).to(out.dtype.element_ty), mask=m)


@fast_launch
@triton.jit
def swiglu_bwd_kernel(y, dout, dy, M, D: tl.constexpr, BM: tl.constexpr, BF: tl.constexpr):
    o_m, o_f, m, p, b_a, b_b = _tile_halves(y, M, D, BM, BF)
    b_g = tl.load(dout + o_m.to(tl.int64)[:, None] * D + o_f[None, :], mask=m, other=0).to(tl.float32)
    b_sg = tl.sigmoid(b_a)
    tl.store(dy + p, (b_g * b_b * b_sg * (1 + b_a * (1 - b_sg))).to(dy.dtype.element_ty), mask=m)
    tl.store(dy + p + D, (b_g * b_a * b_sg).to(dy.dtype.element_ty), mask=m)


def _tiles(D: int) -> tuple[int, int]:
    BF = min(1024, triton.next_power_of_2(D))
    return max(1, 2048 // BF), BF  # 2048 elements per program: 16 per thread per live tile at 4 warps


class SwiGLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y):
        shape = y.shape
        D2 = shape[-1]
        y2 = y.contiguous().view(-1, D2)
        M, D = y2.shape[0], D2 // 2
        out = torch.empty(M, D, dtype=y.dtype, device=y.device)
        BM, BF = _tiles(D)
        swiglu_fwd_kernel[(triton.cdiv(M, BM), triton.cdiv(D, BF))](y2, out, M, D=D, BM=BM, BF=BF)
        ctx.save_for_backward(y2)
        return out.view(*shape[:-1], D)

    @staticmethod
    def backward(ctx, dout):
        (y2,) = ctx.saved_tensors
        M, D = y2.shape[0], y2.shape[1] // 2
        dy = torch.empty_like(y2)
        BM, BF = _tiles(D)
        swiglu_bwd_kernel[(triton.cdiv(M, BM), triton.cdiv(D, BF))](
            y2, dout.contiguous().view(M, D), dy, M, D=D, BM=BM, BF=BF
        )
        return dy.view(*dout.shape[:-1], 2 * D)


def swiglu(y: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up`` with ``y = [gate, up]`` along the last dim (even size)."""
    if y.shape[-1] % 2:
        raise ValueError(f"swiglu needs an even last dim ([gate, up]), got {y.shape[-1]}")
    if use_triton(y):
        return SwiGLUFunction.apply(y)
    return swiglu_torch(y)
