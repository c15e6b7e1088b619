"""On a GPU, in bf16: the fused vocabulary pass of the LM loss at the 7B slice widths against fp64, and the fused
RoPE at the 7B attention shapes against the torch ops."""

from __future__ import annotations

import pytest
import torch

from megatron_hybrid.ops.cross_entropy import vocab_parallel_lse
from megatron_hybrid.ops.rope import rope, rope_torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("V", [50176, 100352, 777])
@pytest.mark.parametrize("inplace", [True, False])
def test_fused_lse_bf16_against_fp64(V, inplace):
    gen = torch.Generator(device="cuda").manual_seed(V)
    N = 1024
    logits = (3 * torch.randn(2, N // 2, V, device="cuda", generator=gen)).bfloat16()
    targets = torch.randint(0, V, (2, N // 2), device="cuda", generator=gen)
    dlse = torch.randn(2, N // 2, device="cuda", generator=gen)
    dtarget = torch.randn(2, N // 2, device="cuda", generator=gen)
    ref = logits.double().requires_grad_()
    lse_r = torch.logsumexp(ref, -1)
    tl_r = ref.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    ((lse_r * dlse).sum() + (tl_r * dtarget).sum()).backward()
    x = logits.clone().requires_grad_()
    lse, target_logit = vocab_parallel_lse(x * 1, targets, inplace_backward=inplace)
    assert rel(lse, lse_r) < 1e-6 and torch.equal(target_logit, tl_r.float())
    ((lse * dlse).sum() + (target_logit * dtarget).sum()).backward()
    assert x.grad.dtype == torch.bfloat16 and rel(x.grad, ref.grad) < 5e-3


@pytest.mark.parametrize("heads", [16, 32])
def test_fused_rope_bf16(heads):
    """[s, b, h, 128] at s = 8192 (the 7B layer at TP = 2 and 1), x strided as the QKV split leaves it: the fused
    forward and backward against the torch ops on the same bf16 input (both compute in fp32)."""
    from megatron_hybrid.layers.attention import rope_tables

    s, b, d = 8192, 1, 128
    gen = torch.Generator(device="cuda").manual_seed(heads)
    inv_freq = 1.0 / (500000 ** (torch.arange(0, d, 2, device="cuda").float() / d))
    freqs = torch.outer(torch.arange(s, device="cuda").float(), inv_freq)
    cos, sin = rope_tables(torch.cat([freqs, freqs], -1)[:, None, None, :], torch.device("cuda"))
    wide = torch.randn(s, b, heads, 3, d, device="cuda", generator=gen).bfloat16()
    dy = torch.randn(s, b, heads, d, device="cuda", generator=gen).bfloat16()
    x1 = wide[:, :, :, 0].detach().requires_grad_()
    x2 = wide[:, :, :, 0].detach().requires_grad_()
    y1, y2 = rope(x1, cos, sin), rope_torch(x2, cos, sin)
    y1.backward(dy)
    y2.backward(dy)
    # one rounding to bf16 of the same fp32 value, give or take an FMA: at most a few differing elements
    assert rel(y1, y2) < 1e-3 and rel(x1.grad, x2.grad) < 1e-3
