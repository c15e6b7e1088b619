"""The weight-gradient accumulation into Megatron's fp32 main_grad (compat/wgrad_fusion.py): the GEMM against an
fp32 reference, the fused GDN mixer's output projection with it, and the trainer's refusal where it cannot run."""

from __future__ import annotations

import pytest
import torch

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_required_fusion_without_cuda_is_refused(monkeypatch):
    from megatron_hybrid.compat import wgrad_fusion
    from megatron_hybrid.training.engine import _wgrad_fusion

    monkeypatch.setattr(wgrad_fusion, "usable", lambda: False)
    with pytest.raises(ValueError, match="gradient_accumulation_fusion: true needs CUDA"):
        _wgrad_fusion(True)
    assert _wgrad_fusion(None) is False and _wgrad_fusion(False) is False


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("shape", [(8192, 3840, 1440), (1000, 96, 200)], ids=["olmo-out-proj-tp2", "odd"])
def test_wgrad_gemm_accumulates_in_fp32(shape):
    from megatron_hybrid.compat.wgrad_fusion import wgrad_gemm_accum_fp32

    n, out_f, in_f = shape
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(n, in_f, device="cuda", generator=gen).bfloat16()
    dy = torch.randn(n, out_f, device="cuda", generator=gen).bfloat16()
    main_grad = torch.randn(out_f, in_f, device="cuda", generator=gen)
    want = main_grad.double() + dy.double().t() @ x.double()
    for _ in range(2):  # two micro-batches
        wgrad_gemm_accum_fp32(x, dy, main_grad)
    want = want + dy.double().t() @ x.double()
    rel = ((main_grad.double() - want).norm() / want.norm()).item()
    assert rel < 1e-5, rel  # fp32 accumulation of exact bf16 products: only fp32 rounding


@pytest.mark.gpu
@needs_cuda
def test_gdn_mixer_out_projection_into_main_grad():
    """gdn_mixer(..., out_weight, wgrad_fused=True) adds the same weight gradient to main_grad that the unfused
    backward returns, and returns Megatron's placeholder (the DDP hook must not add it again)."""
    from megatron_hybrid.ops import gdn_mixer

    from .test_gdn_gpu import _mixer_inputs

    B, T, dims = 1, 1024, (4, 4, 96, 192)
    H, HV, K, V = dims
    gen = torch.Generator(device="cuda").manual_seed(0)
    projected, conv_w, g, beta, norm_w = _mixer_inputs(B, T, dims, gen)
    w = (0.02 * torch.randn(512, HV * V, device="cuda", generator=gen)).bfloat16()
    dy = torch.randn(B, T, 512, device="cuda", generator=gen).bfloat16()
    grads = []
    for fused_wgrad in (False, True):
        weight = w.detach().clone().requires_grad_()
        weight.main_grad = torch.zeros(weight.shape, device="cuda")
        weight.grad_added_to_main_grad = False
        leaves = [x.detach().clone().requires_grad_() for x in (projected, conv_w, g, beta, norm_w)]
        out = gdn_mixer(*leaves, dims, scale=K**-0.5, norm_eps=1e-5, out_weight=weight, wgrad_fused=fused_wgrad)
        out.backward(dy)
        if fused_wgrad:
            assert weight.grad_added_to_main_grad and weight.grad.shape == weight.shape
            grads.append(weight.main_grad.clone())
        else:
            assert not weight.main_grad.any()
            grads.append(weight.grad.float())
    rel = ((grads[1] - grads[0]).norm() / grads[0].norm()).item()
    assert rel < 5e-3, rel  # bf16 GEMM output (unfused) against fp32 accumulation (fused)
