"""logsumexp and the target's logit over vocabulary-sharded logits: what cross-entropy and Olmo's z-loss need.

``vocab_parallel_lse(logits, targets, group)`` -> ``(lse, target_logit)``, both fp32 with the shape of ``targets``.
The last dim of ``logits`` is this rank's contiguous slice of the vocabulary (Megatron's ``parallel_output``; rank r
holds ids ``[r * V_local, (r + 1) * V_local)`` of ``group``). The loss terms are ``ce = lse - target_logit`` and
``z = lse^2``; both are the same on every rank of ``group``, so the gradient of each rank's slice needs no
communication in the backward.

Triton (CUDA, or TRITON_INTERPRET=1): the forward reads the logits once per row (a running max and sum of exp in
fp32, and the target's logit) and combines the ranks' partials with one all-gather of ``[3, N]`` floats; the
backward writes ``dlse * softmax + dtarget * onehot`` in the logits' dtype in one pass, by default into the saved
logits themselves (``inplace_backward``). torch (CPU): the same math on an fp32 copy, which keeps fp32 temporaries
of the logits' size alive for the backward.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import triton
import triton.language as tl

from ..compat.fused_collectives import all_gather_dim0
from .launch import fast_launch
from .norms import use_triton

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@fast_launch
@triton.jit
def vocab_partials_kernel(logits, targets, part, N, V, stride_row, vocab_start, BV: tl.constexpr):
    """Row n: part[0, n] = max of the row, part[1, n] = sum exp(x - max), part[2, n] = x[target] (0 off-slice)."""
    row = tl.program_id(0).to(tl.int64)
    base = logits + row * stride_row
    m = float("-inf")
    s = 0.0
    for v0 in range(0, V, BV):
        o = v0 + tl.arange(0, BV)
        x = tl.load(base + o, mask=o < V, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, 0))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), 0)
        m = m_new
    local = tl.load(targets + row).to(tl.int64) - vocab_start
    on_slice = (local >= 0) & (local < V)
    target_logit = tl.load(base + local, mask=on_slice, other=0.0).to(tl.float32)
    tl.store(part + row, m)
    tl.store(part + N + row, s)
    tl.store(part + 2 * N + row, target_logit)


@fast_launch
@triton.jit
def vocab_grad_kernel(
    logits, grad, targets, lse, dlse, dtarget, V, stride_row, stride_grad, vocab_start, BV: tl.constexpr
):
    """grad[n, j] = dlse[n] * exp(x[n, j] - lse[n]) + dtarget[n] * (j == target[n]); may overwrite the logits."""
    row = tl.program_id(0).to(tl.int64)
    x_base = logits + row * stride_row
    g_base = grad + row * stride_grad
    b_lse = tl.load(lse + row)
    b_dlse = tl.load(dlse + row)
    b_dt = tl.load(dtarget + row)
    local = tl.load(targets + row).to(tl.int64) - vocab_start
    for v0 in range(0, V, BV):
        o = v0 + tl.arange(0, BV)
        x = tl.load(x_base + o, mask=o < V, other=0.0).to(tl.float32)
        g = b_dlse * tl.exp(x - b_lse) + tl.where(o == local, b_dt, 0.0)
        tl.store(g_base + o, g.to(grad.dtype.element_ty), mask=o < V)


def _block(V: int) -> tuple[int, int]:
    BV = min(4096, triton.next_power_of_2(V))
    return BV, 8 if BV >= 2048 else 4


def _combine(part: torch.Tensor, group) -> tuple[torch.Tensor, torch.Tensor]:
    """[3, N] partials of this rank -> (lse, target_logit) over the whole vocabulary."""
    if group is not None:
        gathered = all_gather_dim0(part, group)[0].view(group.size(), *part.shape)
    else:
        gathered = part.unsqueeze(0)
    maxes, sums, target_logits = gathered.unbind(1)
    top = maxes.amax(0)
    lse = top + torch.log((sums * torch.exp(maxes - top)).sum(0))
    return lse, target_logits.sum(0)


class VocabParallelLSE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, vocab_start, group, inplace_backward):
        V = logits.shape[-1]
        x2 = logits.reshape(-1, V)  # a view where the layout allows, as the in-place backward wants
        if x2.stride(1) != 1:
            x2 = x2.contiguous()
        t1 = targets.reshape(-1)
        N = x2.shape[0]
        part = torch.empty((3, N), dtype=torch.float32, device=logits.device)
        BV, warps = _block(V)
        if N:
            vocab_partials_kernel[(N,)](x2, t1, part, N, V, x2.stride(0), vocab_start, BV=BV, num_warps=warps)
        lse, target_logit = _combine(part, group)
        ctx.save_for_backward(x2, t1, lse)
        ctx.vocab_start, ctx.inplace, ctx.shape = vocab_start, inplace_backward, logits.shape
        return lse.view(targets.shape), target_logit.view(targets.shape)

    @staticmethod
    def backward(ctx, dlse, dtarget):
        x2, t1, lse = ctx.saved_tensors
        N, V = x2.shape
        dlse = torch.zeros_like(lse) if dlse is None else dlse.reshape(-1).float().contiguous()
        dtarget = torch.zeros_like(lse) if dtarget is None else dtarget.reshape(-1).float().contiguous()
        grad = x2 if ctx.inplace else torch.empty_like(x2)
        BV, warps = _block(V)
        if N:
            vocab_grad_kernel[(N,)](
                x2, grad, t1, lse, dlse, dtarget, V, x2.stride(0), grad.stride(0), ctx.vocab_start,
                BV=BV, num_warps=warps,
            )  # fmt: skip
        return grad.view(ctx.shape), None, None, None, None


def vocab_parallel_lse_torch(logits, targets, vocab_start: int, group) -> tuple[torch.Tensor, torch.Tensor]:
    """The same in torch ops (fp32); the all-reduces sum in the forward and pass the gradient through."""
    from megatron.core.tensor_parallel.mappings import reduce_from_tensor_model_parallel_region

    logits = logits.float()
    V = logits.shape[-1]
    max_logit = logits.detach().amax(dim=-1)  # a constant for autograd: it only keeps exp() in range
    if group is not None:
        dist.all_reduce(max_logit, op=dist.ReduceOp.MAX, group=group)
    sum_exp = torch.exp(logits - max_logit.unsqueeze(-1)).sum(dim=-1)
    local = targets - vocab_start
    on_slice = (local >= 0) & (local < V)
    target_logit = torch.gather(logits, -1, local.clamp(0, V - 1).unsqueeze(-1)).squeeze(-1) * on_slice
    if group is not None:
        sum_exp = reduce_from_tensor_model_parallel_region(sum_exp, group)
        target_logit = reduce_from_tensor_model_parallel_region(target_logit, group)
    return max_logit + torch.log(sum_exp), target_logit


def vocab_parallel_lse(
    logits: torch.Tensor, targets: torch.Tensor, group=None, inplace_backward: bool = False, fused: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logsumexp over the full vocabulary, the target's logit)`` for logits ``[..., V_local]`` whose last dim is
    this rank's slice of the vocabulary over ``group``, and global target ids ``[...]``.

    ``inplace_backward`` lets the fused backward write the gradient over the logits (nothing else may read them
    after the loss, and the graph is backpropagated once). ``fused``: the Triton kernels (default where they run:
    CUDA, or TRITON_INTERPRET=1).
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"targets {tuple(targets.shape)} must be the logits' {tuple(logits.shape)} without the last dim"
        )
    if logits.dtype not in _DTYPES:
        raise ValueError(f"logits must be fp32, fp16 or bf16, got {logits.dtype}")
    if targets.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"targets must be int32 or int64 token ids, got {targets.dtype}")
    if group is not None and group.size() == 1:
        group = None
    vocab_start = (group.rank() if group is not None else 0) * logits.shape[-1]
    fused = use_triton(logits) if fused is None else fused
    if fused and not use_triton(logits):
        raise ValueError("the fused cross-entropy needs the logits on CUDA (or TRITON_INTERPRET=1): use fused=False")
    if fused:
        return VocabParallelLSE.apply(logits, targets, vocab_start, group, inplace_backward)
    return vocab_parallel_lse_torch(logits, targets, vocab_start, group)
