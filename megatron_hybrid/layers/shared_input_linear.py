"""Two column-parallel linears of one input with one round of tensor-parallel communication between them.

The GDN layer projects its input twice: the wide [q k v z] projection and the narrow [b a] one (kept apart because the
fused width is not a multiple of 8 elements, which puts cuBLAS on slow unaligned kernels). As two Megatron
ColumnParallelLinears under sequence parallelism each all-gathers the same input in the forward, gathers it again in
the backward for its weight gradient and reduce-scatters its own input gradient: three collectives of the full
activation per layer call for a GEMM 30 columns wide at the 7B shape (TP=2), with no GEMM to hide behind.
This Function gathers once in the forward and once in the backward, sums the two input gradients before a single
reduce-scatter (an all-reduce without SP), and overlaps them with the GEMMs as Megatron's linears do: the gather
behind the dgrad GEMMs, the reduce-scatter behind the wgrad GEMMs. With async-TP linears the forward gather is the
pipelined symmetric-memory op, which also returns the gathered input for the narrow GEMM.

Only for Megatron's local ColumnParallelLinear (or its async-TP subclass) in plain form: TP > 1, no bias, no gathered
output, no expert or CPU-offloading paths. ``MEGATRON_HYBRID_GDN_SHARED_GATHER=0``: the two linears' own calls.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from megatron.core.tensor_parallel import ColumnParallelLinear

from megatron_hybrid.compat.fused_collectives import all_gather_dim0, collectives_for, reduce_scatter_dim0
from megatron_hybrid.compat.wgrad_fusion import weight_grad
from megatron_hybrid.layers.async_tp import AsyncTPColumnParallelLinear, overlappable

ENV = "MEGATRON_HYBRID_GDN_SHARED_GATHER"


class _SharedInputColumnParallel(torch.autograd.Function):
    """x [s/tp or s, b, in] -> (x_full W_a^T, x_full W_b^T), each [s, b, out/tp]."""

    @staticmethod
    def forward(ctx, x, w_a, w_b, group, sequence_parallel, pipelined, fused_a, fused_b):
        if sequence_parallel and pipelined:
            full, y_a = collectives_for(x).all_gather_matmul(x, w_a.t(), group, True)
        else:
            full = all_gather_dim0(x, group)[0] if sequence_parallel else x
            y_a = torch.matmul(full, w_a.t())
        y_b = torch.matmul(full, w_b.t())
        ctx.save_for_backward(x, w_a, w_b)  # the shard: gathered again in the backward, as Megatron's linears do
        ctx.group, ctx.sequence_parallel, ctx.fused = group, sequence_parallel, (fused_a, fused_b)
        return y_a, y_b

    @staticmethod
    def backward(ctx, dy_a, dy_b):
        x, w_a, w_b = ctx.saved_tensors
        group = ctx.group
        full, gather = all_gather_dim0(x, group, async_op=True) if ctx.sequence_parallel else (x, None)
        rows = (x.shape[0] * (group.size() if ctx.sequence_parallel else 1), *x.shape[1:-1])
        # an output that reached no loss has a zero gradient
        dy_a = x.new_zeros((*rows, w_a.shape[0])) if dy_a is None else dy_a
        dy_b = x.new_zeros((*rows, w_b.shape[0])) if dy_b is None else dy_b
        dx_full = torch.matmul(dy_a, w_a)  # the dgrad GEMMs run while the input is gathered again
        dx_full.view(-1, dx_full.shape[-1]).addmm_(dy_b.reshape(-1, dy_b.shape[-1]), w_b)
        if gather is not None:
            gather.wait()
            dx, reduce = reduce_scatter_dim0(dx_full, group, async_op=True)
        else:
            dx = dx_full
            reduce = dist.all_reduce(dx, group=group, async_op=True)
        # ... and the wgrad GEMMs while the input gradient is reduced
        dw_a = weight_grad(w_a, full, dy_a, ctx.fused[0])
        dw_b = weight_grad(w_b, full, dy_b, ctx.fused[1])
        reduce.wait()
        return dx, dw_a, dw_b, None, None, None, None, None


def _plain(linear) -> bool:
    return (
        type(linear) in (ColumnParallelLinear, AsyncTPColumnParallelLinear)
        and linear.bias is None
        and not linear.gather_output
        and not getattr(linear, "disable_grad_reduce", False)
        and not getattr(linear, "explicit_expert_comm", False)
        and not linear.is_expert
        and linear.config._cpu_offloading_context is None
        and not linear.config.defer_embedding_wgrad_compute
        and getattr(linear, "gtp_remat_size", 1) == 1
        and linear.tp_group is not None
        and linear.tp_group.size() > 1
    )


def shares_input(a, b) -> bool:
    """Whether ``shared_input_projections`` takes the one-gather path for these two linears."""
    return (
        os.environ.get(ENV, "1") != "0"
        and _plain(a)
        and _plain(b)
        and a.tp_group is b.tp_group
        and a.sequence_parallel == b.sequence_parallel
    )


def shared_input_projections(x: torch.Tensor, a, b) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a(x)[0], b(x)[0])`` for two column-parallel linears of the same input, communicating once where
    ``shares_input(a, b)``; the linears' own forwards otherwise."""
    if not shares_input(a, b):
        return a(x)[0], b(x)[0]
    pipelined = isinstance(a, AsyncTPColumnParallelLinear) and overlappable(a, x)
    return _SharedInputColumnParallel.apply(
        x, a.weight, b.weight, a.tp_group, a.sequence_parallel, pipelined,
        a.gradient_accumulation_fusion, b.gradient_accumulation_fusion,
    )  # fmt: skip
