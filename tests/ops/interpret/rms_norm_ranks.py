"""Per-rank body of the TP-split RMSNorm test (run in spawned gloo processes; not a test module)."""

from __future__ import annotations

import torch


def split_width_rms_norm(rank: int, world_size: int, M: int, D: int):
    """This rank's slice of the last dim through ops.rms_norm with the full width's statistics; returns y, dx, dw."""
    import torch.distributed as dist

    from megatron_hybrid.ops import rms_norm

    dist.init_process_group("gloo")
    try:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(M, D * world_size, generator=gen)
        w = torch.randn(D * world_size, generator=gen)
        dy = torch.randn(M, D * world_size, generator=gen)
        part = slice(rank * D, (rank + 1) * D)
        xs, ws = x[:, part].clone().requires_grad_(), w[part].clone().requires_grad_()
        y = rms_norm(xs, ws, 1e-6, full_width=D * world_size, group=dist.group.WORLD)
        y.backward(dy[:, part])
        return y.detach(), xs.grad, ws.grad
    finally:
        dist.destroy_process_group()
