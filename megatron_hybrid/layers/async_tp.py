"""Tensor-parallel linears that overlap their sequence-parallel communication with the GEMM (async TP).

With sequence parallelism, Megatron's local ColumnParallelLinear all-gathers its input before the GEMM and
RowParallelLinear reduce-scatters its output after it. In the forward both wait on NCCL with the GPU otherwise idle,
and so does the row linear's backward all-gather of the output gradient; only the column linear's backward overlaps
its collectives with the dgrad / wgrad GEMMs. The session-6 profile of the 4-GPU 7B step (TP=2, SP) measured 10%
of the step in communication that no compute kernel overlapped (``bench/results/profile/``).

These subclasses run those three exposed collectives as PyTorch's micro-pipelined symmetric-memory ops, which cut
the GEMM into one piece per rank and compute on the pieces already received while the next ones are copied
(peer-to-peer over NVLink; no NVLink multicast):

    column forward:  y  = all_gather(x) W^T          torch.ops.symm_mem.fused_all_gather_matmul
    row forward:     y  = reduce_scatter(x W^T)      torch.ops.symm_mem.fused_matmul_reduce_scatter
    row backward:    dx = all_gather(dy) W           fused_all_gather_matmul (the gathered dy also feeds the wgrad)

The column backward is Megatron's scheme (input all-gather behind the dgrad GEMM, dgrad reduce-scatter behind the
wgrad GEMM). The GDN layer's output projection, whose GEMM runs inside the fused mixer Function, does the same
through ``gdn_mixer(..., out_group=)`` when its out_proj is an ``AsyncTPRowParallelLinear``. Weight gradients
accumulate into ``main_grad`` when ``gradient_accumulation_fusion`` is on, as Megatron's linears do. Used only
where it applies: CUDA, sequence parallelism with TP > 1, no bias, no TE, no gathered output; elsewhere the layers
are Megatron's own. The spec backend ``local_async_tp`` selects them
(``layer_specs.linear_modules``); the trainer's ``async_tensor_parallel`` turns it on.
"""

from __future__ import annotations

import torch
from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear

from megatron_hybrid.compat import fused_collectives
from megatron_hybrid.compat.fused_collectives import (
    all_gather_dim0,
    collectives_for,
    reduce_scatter_dim0,
    symm_mem_ops_available,
)
from megatron_hybrid.compat.wgrad_fusion import weight_grad


class _AllGatherMatmul(torch.autograd.Function):
    """Column linear with SP: [s/tp, b, in] -> all-gather over s -> x W^T -> [s, b, out/tp]."""

    @staticmethod
    def forward(ctx, x, weight, group, wgrad_fused):
        ctx.save_for_backward(x, weight)
        ctx.group, ctx.wgrad_fused = group, wgrad_fused
        return collectives_for(x).all_gather_matmul(x, weight.t(), group, False)[1]

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        group = ctx.group
        full, gather = all_gather_dim0(x, group, async_op=True)
        dx_full = torch.matmul(dy, weight)  # the dgrad GEMM runs while the input is gathered again
        gather.wait()
        dx, scatter = reduce_scatter_dim0(dx_full, group, async_op=True)
        dw = weight_grad(weight, full, dy, ctx.wgrad_fused)  # ... and the wgrad GEMM while dx is reduce-scattered
        scatter.wait()
        return dx, dw, None, None


class _MatmulReduceScatter(torch.autograd.Function):
    """Row linear with SP: [s, b, in/tp] -> x W^T -> reduce-scatter over s -> [s/tp, b, out]."""

    @staticmethod
    def forward(ctx, x, weight, group, wgrad_fused):
        ctx.save_for_backward(x, weight)
        ctx.group, ctx.wgrad_fused = group, wgrad_fused
        return collectives_for(x).matmul_reduce_scatter(x, weight.t(), group)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dy_full, dx = collectives_for(dy).all_gather_matmul(dy, weight, ctx.group, True)
        return dx, weight_grad(weight, x, dy_full, ctx.wgrad_fused), None, None


def overlappable(linear, x) -> bool:
    """Whether ``linear``'s sequence-parallel collectives can run as the fused symmetric-memory ops for input ``x``."""
    return (
        (x.is_cuda and symm_mem_ops_available() or fused_collectives.force_reference)
        and linear.sequence_parallel
        and linear.tp_group is not None
        and linear.tp_group.size() > 1
        and linear.bias is None
        and not getattr(linear, "explicit_expert_comm", False)
        and linear.config._cpu_offloading_context is None
    )


class AsyncTPColumnParallelLinear(ColumnParallelLinear):
    """Megatron's ColumnParallelLinear; with SP its input all-gather is pipelined with the GEMM (module docstring)."""

    def forward(self, input_, weight=None, runtime_gather_output=None):
        gather = self.gather_output if runtime_gather_output is None else runtime_gather_output
        w = self.weight if weight is None else weight
        if not overlappable(self, input_) or gather:
            return super().forward(input_, weight=weight, runtime_gather_output=runtime_gather_output)
        out = _AllGatherMatmul.apply(input_, w, self.tp_group, self.gradient_accumulation_fusion)
        return out, None


class AsyncTPRowParallelLinear(RowParallelLinear):
    """Megatron's RowParallelLinear; with SP its output reduce-scatter (forward) and its gradient's all-gather
    (backward) are pipelined with the GEMMs (module docstring)."""

    def overlaps(self, input_) -> bool:
        """Whether this call takes the pipelined path (else it is Megatron's RowParallelLinear)."""
        return overlappable(self, input_) and self.input_is_parallel

    def forward(self, input_):
        if not self.overlaps(input_):
            return super().forward(input_)
        out = _MatmulReduceScatter.apply(input_, self.weight, self.tp_group, self.gradient_accumulation_fusion)
        return out, None
