"""A GEMM fused with the sequence-parallel all-gather before it or the reduce-scatter after it (async TP's pieces).

``SymmMemCollectives`` are PyTorch's micro-pipelined symmetric-memory ops (CUDA): the GEMM is cut into one piece per
rank and each piece runs while the next rank's shard is copied peer to peer (no NVLink multicast).
``ReferenceCollectives`` do the same math as a plain collective plus one GEMM: what the fused ops must equal, and
the stand-in on gloo, where tests set ``force_reference`` to run the async paths on a CPU.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist

force_reference = False  # tests on gloo: take the async paths with ReferenceCollectives

_ENABLED_GROUPS: set[str] = set()


def symm_mem_ops_available() -> bool:
    return (
        torch.cuda.is_available()
        and hasattr(torch.ops, "symm_mem")
        and hasattr(torch.ops.symm_mem, "fused_all_gather_matmul")
    )


def _group_name(group) -> str:
    """The process group's name for the symm_mem ops, with symmetric memory set up for it once (older torch needs
    the call; newer ones warn that it is no longer needed)."""
    name = group.group_name
    if name not in _ENABLED_GROUPS:
        from torch.distributed import _symmetric_memory

        enable = getattr(_symmetric_memory, "enable_symm_mem_for_group", None)
        if enable is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                enable(name)
        _ENABLED_GROUPS.add(name)
    return name


def all_gather_dim0(x: torch.Tensor, group, async_op: bool = False):
    """(the ranks' ``x`` stacked along dim 0, the collective's work handle when ``async_op``)."""
    full = x.new_empty((x.shape[0] * group.size(), *x.shape[1:]))
    return full, dist.all_gather_into_tensor(full, x.contiguous(), group=group, async_op=async_op)


def reduce_scatter_dim0(x: torch.Tensor, group, async_op: bool = False):
    """(this rank's dim-0 slice of the ranks' ``x`` summed, the work handle when ``async_op``)."""
    out = x.new_empty((x.shape[0] // group.size(), *x.shape[1:]))
    return out, dist.reduce_scatter_tensor(out, x.contiguous(), group=group, async_op=async_op)


class ReferenceCollectives:
    """Plain collective + GEMM, along dim 0 (the sequence of an [s, b, .] tensor)."""

    @staticmethod
    def all_gather_matmul(x, w, group, return_gathered):
        """(all_gather(x) if return_gathered, all_gather(x) @ w)."""
        full = all_gather_dim0(x, group)[0]
        return (full if return_gathered else None), torch.matmul(full, w)

    @staticmethod
    def matmul_reduce_scatter(x, w, group):
        """reduce_scatter(x @ w) (sum)."""
        return reduce_scatter_dim0(torch.matmul(x, w), group)[0]


class SymmMemCollectives:
    """The same, as torch.ops.symm_mem's pipelined ops (CUDA)."""

    @staticmethod
    def all_gather_matmul(x, w, group, return_gathered):
        full, outs = torch.ops.symm_mem.fused_all_gather_matmul(
            x.contiguous(), [w], 0, _group_name(group), return_A=return_gathered
        )
        return full, outs[0]

    @staticmethod
    def matmul_reduce_scatter(x, w, group):
        return torch.ops.symm_mem.fused_matmul_reduce_scatter(x.contiguous(), w, "sum", 0, _group_name(group))


def collectives_for(x):
    return SymmMemCollectives if x.is_cuda else ReferenceCollectives
