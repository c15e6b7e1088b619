"""The fused vocabulary pass of the LM loss on a GPU, bf16 logits at the 7B slice widths, against fp64."""

from __future__ import annotations

import pytest
import torch

from megatron_hybrid.ops.cross_entropy import vocab_parallel_lse

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
