"""Rotary position embedding (non-interleaved halves) in fp32, as ``transformers``' Olmo applies it to q and k.

    y = (x.float() * cos + rotate_half(x.float()) * sin).to(x.dtype),   rotate_half([x1, x2]) = [-x2, x1]

``x`` is ``[s, b, h, d]`` with any strides but a unit last one; ``cos`` and ``sin`` are ``[s, d]`` fp32. The torch
version runs ~7 elementwise kernels each way through fp32 temporaries of x's size (~50 bytes moved per element each
way); the Triton one reads x and writes y once (4 bytes per element in bf16) and, in the backward, applies the
transposed rotation, ``dx = dy * cos + [dy2 * sin2, -dy1 * sin1]``, in one pass as well.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .launch import fast_launch
from .norms import use_triton


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope_torch(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    s, d = cos.shape
    cos, sin = cos.view(s, 1, 1, d), sin.view(s, 1, 1, d)
    h = x.float()
    return (h * cos + rotate_half(h) * sin).to(x.dtype)


@fast_launch
@triton.jit
def rope_kernel(
    x, y, cos, sin, R, B, H, sx_s, sx_b, sx_h, sy_s, sy_b, sy_h,
    HALF: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr, TRANSPOSED: tl.constexpr,
):  # fmt: skip
    """Rows r = (i_s, i_b, i_h) of x [s, b, h, 2 * HALF]: y = x cos + rotate_half(x) sin (TRANSPOSED: the backward's
    rotate_half^T, [x2, -x1])."""
    o_r = (tl.program_id(0) * BM + tl.arange(0, BM)).to(tl.int64)
    o_d = tl.arange(0, BD)
    mask = (o_r < R)[:, None] & (o_d < HALF)[None, :]
    i_h = o_r % H
    i_b = (o_r // H) % B
    i_s = o_r // (H * B)
    px = (i_s * sx_s + i_b * sx_b + i_h * sx_h)[:, None] + o_d[None, :]
    py = (i_s * sy_s + i_b * sy_b + i_h * sy_h)[:, None] + o_d[None, :]
    pt = (i_s * 2 * HALF)[:, None] + o_d[None, :]
    x1 = tl.load(x + px, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(x + px + HALF, mask=mask, other=0.0).to(tl.float32)
    c1 = tl.load(cos + pt, mask=mask, other=0.0)
    c2 = tl.load(cos + pt + HALF, mask=mask, other=0.0)
    s1 = tl.load(sin + pt, mask=mask, other=0.0)
    s2 = tl.load(sin + pt + HALF, mask=mask, other=0.0)
    if TRANSPOSED:
        y1 = x1 * c1 + x2 * s2
        y2 = x2 * c2 - x1 * s1
    else:
        y1 = x1 * c1 - x2 * s1
        y2 = x2 * c2 + x1 * s2
    tl.store(y + py, y1.to(y.dtype.element_ty), mask=mask)
    tl.store(y + py + HALF, y2.to(y.dtype.element_ty), mask=mask)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, transposed: bool) -> torch.Tensor:
    s, b, h, d = x.shape
    y = torch.empty((s, b, h, d), dtype=x.dtype, device=x.device)
    R = s * b * h
    BD = triton.next_power_of_2(d // 2)
    BM = max(1, 2048 // BD)
    rope_kernel[(triton.cdiv(R, BM),)](
        x, y, cos, sin, R, b, h, *x.stride()[:3], *y.stride()[:3], HALF=d // 2, BM=BM, BD=BD, TRANSPOSED=transposed
    )
    return y


class RopeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, cos, sin):
        ctx.save_for_backward(cos, sin)
        return _rope(x, cos, sin, transposed=False)

    @staticmethod
    def backward(ctx, dy):
        cos, sin = ctx.saved_tensors
        dy = dy if dy.stride(-1) == 1 else dy.contiguous()
        return _rope(dy, cos, sin, transposed=True), None, None


ENV = "MEGATRON_HYBRID_FUSED_ROPE"  # "0": the torch ops on CUDA too (for A/B timing)


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE of ``x`` ``[s, b, h, d]`` with ``cos``/``sin`` ``[s, d]`` (fp32; the angles of each position)."""
    if x.dim() != 4 or x.shape[-1] % 2:
        raise ValueError(f"rope takes x as [s, b, h, d] with an even d, got {tuple(x.shape)}")
    if cos.shape != (x.shape[0], x.shape[-1]) or sin.shape != cos.shape:
        raise ValueError(f"cos and sin must be [s, d] = {(x.shape[0], x.shape[-1])}, got {tuple(cos.shape)}")
    if cos.dtype != torch.float32 or sin.dtype != torch.float32:
        raise ValueError(f"cos and sin must be fp32 (the angles' precision), got {cos.dtype} and {sin.dtype}")
    if use_triton(x) and os.environ.get(ENV, "1") != "0":
        x = x if x.stride(-1) == 1 else x.contiguous()
        return RopeFunction.apply(x, cos.contiguous(), sin.contiguous())
    return rope_torch(x, cos, sin)
