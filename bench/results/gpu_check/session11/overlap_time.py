"""The fused GDN mixer's fwd+bwd at the TP=2 slice (T=8192, H=15), side-stream recompute off / on, alternating."""

import os

import torch
import triton

from megatron_hybrid.ops import gdn_mixer

dims, T = (15, 15, 96, 192), 8192
gen = torch.Generator(device="cuda").manual_seed(0)
width = 2 * 15 * 96 + 2 * 15 * 192
leaves = [
    torch.randn(T, 1, width, device="cuda", generator=gen).to(torch.bfloat16).transpose(0, 1).detach().requires_grad_(),
    (0.5 * torch.randn(2 * 15 * 96 + 15 * 192, 4, device="cuda", generator=gen)).to(torch.bfloat16).requires_grad_(),
    (-torch.rand(1, T, 15, device="cuda", generator=gen)).requires_grad_(),
    torch.rand(1, T, 15, device="cuda", generator=gen).to(torch.bfloat16).requires_grad_(),
    (1 + 0.1 * torch.randn(192, device="cuda", generator=gen)).to(torch.bfloat16).requires_grad_(),
]
dy = torch.randn(1, T, 15 * 192, device="cuda", generator=gen).to(torch.bfloat16)


def step():
    gdn_mixer(*leaves, dims, scale=96**-0.5, norm_eps=1e-5).backward(dy)


for rnd in range(3):
    for knob in ("0", "1"):
        os.environ["MEGATRON_HYBRID_GDN_OVERLAP_RECOMPUTE"] = knob
        step()
        ms = triton.testing.do_bench(step, warmup=20, rep=150, grad_to_none=leaves, return_mode="median")
        print(f"round {rnd} overlap={knob}: {ms:.3f} ms", flush=True)
