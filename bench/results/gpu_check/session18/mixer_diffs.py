"""Session 18: the fused mixer against the composed ops (relative RMS per output and gradient) and two fused runs
(max |diff|), at the GPU test's two shapes; MEGATRON_HYBRID_AUTOTUNE as the environment sets it."""

import json
import sys

import torch

sys.path.insert(0, ".")
from megatron_hybrid.ops import gdn_mixer  # noqa: E402
from tests.ops.test_gdn_gpu import _mixer_inputs, rel_rms  # noqa: E402

out = {}
for B, T, dims in [(1, 2048, (15, 15, 96, 192)), (2, 257, (4, 8, 12, 24)), (1, 8192, (15, 15, 96, 192))]:
    H, HV, K, V = dims
    gen = torch.Generator(device="cuda").manual_seed(0)
    projected, conv_w, g, beta, norm_w = _mixer_inputs(B, T, dims, gen)
    dy = torch.randn(B, T, HV * V, device="cuda", generator=gen).to(torch.bfloat16)
    results = []
    for fused in (True, True, False):
        leaves = [x.detach().clone().requires_grad_() for x in (projected, conv_w, g, beta, norm_w)]
        o = gdn_mixer(*leaves, dims, scale=K**-0.5, norm_eps=1e-5, fused=fused)
        o.backward(dy)
        results.append([o.detach()] + [x.grad for x in leaves])
    names = ("out", "projected", "conv_w", "g", "beta", "norm_w")
    out[f"B{B} T{T} {dims}"] = {
        n: [float(f"{rel_rms(a, c):.3g}"), (a.float() - b.float()).abs().max().item()]
        for n, a, b, c in zip(names, *results)
    }
print(json.dumps(out))
