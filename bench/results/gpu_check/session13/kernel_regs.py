"""Registers, spills and shared memory of every compiled GDN kernel (each config the autotuner tried), after one
autotuned fwd+bwd of the op at the Olmo shape and its TP=2 slice."""

import sys

import torch

sys.path.insert(0, "bench")
from gdn_kernels import SHAPES, make  # noqa: E402

from megatron_hybrid.ops import (
    chunk_gated_delta_rule,  # noqa: E402
    launch,  # noqa: E402
)

for name in ("olmo", "olmo_tp2"):
    B, T, H, K, V, lens = SHAPES[name]
    xs = [x.requires_grad_() for x in make(B, T, H, K, V, lens)[:5]]
    o, _ = chunk_gated_delta_rule(*xs, use_qk_l2norm=True)
    o.backward(torch.randn_like(o))
torch.cuda.synchronize()
rows = set()
for jit_fn in launch._INSTALLED:
    for kernel in jit_fn._fast_kernels.values():
        md = kernel.metadata
        rows.add((kernel.name, md.num_warps, md.num_stages, kernel.n_regs, kernel.n_spills, md.shared))
print("kernel warps stages regs spills shared_bytes")
for row in sorted(rows):
    print(*row)
