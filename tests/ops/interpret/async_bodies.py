"""Per-rank body of the async-TP mixer test (spawned gloo processes; the interpreter's env is inherited)."""

from __future__ import annotations

import torch


def mixer_out_projection_async_matches(rank, world_size):
    """The fused mixer with its output projection reduce-scattered inside (``out_group``, plain collectives here)
    against the same mixer followed by Megatron's sequence-parallel reduce-scatter: output and every gradient."""
    from megatron.core import parallel_state
    from megatron.core.tensor_parallel.mappings import reduce_scatter_to_sequence_parallel_region

    from megatron_hybrid.compat import fused_collectives
    from megatron_hybrid.compat.distributed import init_distributed
    from megatron_hybrid.ops import gdn_mixer

    from .test_gdn_mixer import make

    init_distributed(tensor_model_parallel_size=2, seed=3)
    fused_collectives.force_reference = True
    group = parallel_state.get_tensor_model_parallel_group()
    B, T, dims, d = 2, 64, (2, 2, 16, 32), 24
    H, HV, K, V = dims
    inputs = make(B, T, dims, seed=10 + rank)  # each TP rank holds other heads
    gen = torch.Generator().manual_seed(20 + rank)
    inputs.append(0.2 * torch.randn(d, HV * V, generator=gen))
    dout = torch.randn(T // 2, B, d, generator=gen)
    results = []
    for fused_rs in (True, False):
        leaves = [x.detach().clone().requires_grad_() for x in inputs]
        *mixer_in, w = leaves
        kw = dict(scale=K**-0.5, norm_eps=1e-5, out_weight=w)
        if fused_rs:
            out = gdn_mixer(*mixer_in, dims, out_group=group, **kw)
        else:
            out = reduce_scatter_to_sequence_parallel_region(
                gdn_mixer(*mixer_in, dims, **kw).transpose(0, 1).contiguous(), group=group
            )
        out.backward(dout)
        results.append([out.detach()] + [x.grad for x in leaves])
    rel = [((a - b).norm() / b.norm()).item() for a, b in zip(*results, strict=True)]
    return {"rel": rel, "shape": tuple(results[0][0].shape)}
