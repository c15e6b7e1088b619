"""The fused GDN mixer Function (conv, L2 norm, delta rule, gated norm; q, k, v recomputed in the backward) against
the same ops composed by autograd, on the CPU under TRITON_INTERPRET=1, fp32."""

from __future__ import annotations

import os

import pytest
import torch

assert os.environ.get("TRITON_INTERPRET") == "1", "run through tests/ops/test_triton_interpreter.py"

from megatron_hybrid.ops import gdn_mixer  # noqa: E402
from megatron_hybrid.ops.gdn_mixer import GDNMixerFunction  # noqa: E402


def rel(a, b):
    a, b = a.double(), b.double()
    assert torch.isfinite(a).all()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def make(B, T, dims, seed=0, sb_layout=True):
    """Leaf inputs; the projection as the layer has it: an [s, b, .] tensor transposed to [b, s, .]."""
    H, HV, K, V = dims
    gen = torch.Generator().manual_seed(seed)
    width = 2 * H * K + 2 * HV * V
    if sb_layout:
        projected = torch.randn(T, B, width, generator=gen).transpose(0, 1)
    else:
        projected = torch.randn(B, T, width, generator=gen)
    conv_w = 0.5 * torch.randn(2 * H * K + HV * V, 4, generator=gen)
    g = -torch.rand(B, T, HV, generator=gen)  # log decay in (-1, 0]
    beta = torch.rand(B, T, HV, generator=gen)
    norm_w = 1 + 0.1 * torch.randn(V, generator=gen)
    return [projected, conv_w, g, beta, norm_w]


def run(inputs, dims, fused, cu_seqlens=None, grad_out=None):
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = gdn_mixer(*leaves, dims, scale=dims[2] ** -0.5, norm_eps=1e-5, cu_seqlens=cu_seqlens, fused=fused)
    out.backward(grad_out)
    return out.detach(), [x.grad for x in leaves]


@pytest.mark.parametrize(
    "B,T,dims,sb_layout",
    [(1, 37, (2, 2, 16, 32), True), (2, 70, (2, 4, 16, 32), True), (2, 33, (1, 1, 12, 24), False)],
    ids=["B1", "B2-gqa", "B2-bt-layout-masked-dims"],
)
def test_fused_mixer_equals_composed_ops(B, T, dims, sb_layout):
    inputs = make(B, T, dims, sb_layout=sb_layout)
    grad_out = torch.randn(B, T, dims[1] * dims[3], generator=torch.Generator().manual_seed(1))
    out_f, grads_f = run(inputs, dims, True, grad_out=grad_out)
    out_c, grads_c = run(inputs, dims, False, grad_out=grad_out)
    assert rel(out_f, out_c) < 1e-6
    for name, a, b in zip(("projected", "conv_w", "g", "beta", "norm_w"), grads_f, grads_c):
        assert rel(a, b) < 1e-5, name
    # the projection's gradient comes back in the projection's own layout (so [s, b, .] is contiguous again)
    assert grads_f[0].stride() == inputs[0].stride()


def test_fused_mixer_varlen_equals_composed_ops():
    dims = (2, 2, 16, 32)
    cu = torch.tensor([0, 5, 40, 41, 66], dtype=torch.int32)
    inputs = make(1, 66, dims, seed=3)
    grad_out = torch.randn(1, 66, dims[1] * dims[3], generator=torch.Generator().manual_seed(4))
    out_f, grads_f = run(inputs, dims, True, cu, grad_out)
    out_c, grads_c = run(inputs, dims, False, cu, grad_out)
    assert rel(out_f, out_c) < 1e-6
    for a, b in zip(grads_f, grads_c):
        assert rel(a, b) < 1e-5


@pytest.mark.parametrize("keep_wy", [False, True], ids=["wy-recomputed", "wy-kept"])
@pytest.mark.parametrize("with_out_proj", [False, True], ids=["mixer", "mixer+out-proj"])
def test_fused_mixer_keeps_no_recurrent_inputs(with_out_proj, keep_wy, monkeypatch):
    """What the Function saves for the backward: the projection (an input), the conv, norm (and output projection)
    weights, beta, the delta rule's output and its small per-token tensors; not q, k or v, nor y."""
    monkeypatch.setenv("MEGATRON_HYBRID_GDN_RECOMPUTE_WY", "0" if keep_wy else "1")
    B, T, dims = 1, 64, (2, 2, 16, 32)
    H, HV, K, V = dims
    projected, conv_w, g, beta, norm_w = (x.requires_grad_(True) for x in make(B, T, dims))
    out_w = torch.randn(24, HV * V, requires_grad=True) if with_out_proj else None
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        GDNMixerFunction.apply(projected, conv_w, g, beta, norm_w, out_w, dims, K**-0.5, 1e-5, None, False, None)
    inputs = {x.untyped_storage().data_ptr() for x in (projected, conv_w, beta, norm_w, out_w) if x is not None}
    new = [t for t in saved if t is not None and t.untyped_storage().data_ptr() not in inputs]
    per_token_values = sum(t.numel() for t in new) / (B * T)
    # o (HV*V), the norm's rstd (HV) and either the WY inverse (HV*64, fp32) with the cumulative decay (HV), or g
    # (HV) to solve again from; with the output projection inside, not its input y (recomputed in the backward)
    assert per_token_values == HV * V + HV + (HV * 64 + HV if keep_wy else HV)


@pytest.mark.parametrize("B,T,dims", [(1, 37, (2, 2, 16, 32)), (2, 70, (2, 4, 16, 32))], ids=["B1", "B2-gqa"])
def test_fused_out_projection_equals_mixer_then_linear(B, T, dims):
    """With the output projection's weight the Function returns y W^T and recomputes y in the backward: outputs and
    all gradients (the weight's included) equal the composed ops followed by the same matmul."""
    d = 40
    inputs = make(B, T, dims, seed=5) + [torch.randn(d, dims[1] * dims[3], generator=torch.Generator().manual_seed(6))]
    grad_out = torch.randn(B, T, d, generator=torch.Generator().manual_seed(7))

    def run_with_out(fused):
        leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
        *mixer_in, out_w = leaves
        out = gdn_mixer(*mixer_in, dims, scale=dims[2] ** -0.5, norm_eps=1e-5, fused=fused, out_weight=out_w)
        out.backward(grad_out)
        return out.detach(), [x.grad for x in leaves]

    out_f, grads_f = run_with_out(True)
    out_c, grads_c = run_with_out(False)
    assert out_f.shape == (B, T, d)
    assert rel(out_f, out_c) < 1e-6
    for name, a, b in zip(("projected", "conv_w", "g", "beta", "norm_w", "out_w"), grads_f, grads_c):
        assert rel(a, b) < 1e-5, name


def test_fused_mixer_recomputed_wy_equals_kept(monkeypatch):
    """MEGATRON_HYBRID_GDN_RECOMPUTE_WY=1: the WY inverse is solved again in the backward instead of kept. The same
    kernels on the same values: outputs and gradients identical; per token and value head, g (1 value) is kept
    instead of T and the cumulative decay (65)."""
    B, T, dims = 1, 70, (2, 4, 16, 32)
    H, HV, K, V = dims
    inputs = make(B, T, dims, seed=9)
    grad_out = torch.randn(B, T, HV * V, generator=torch.Generator().manual_seed(10))
    results, kept = [], []
    for knob in ("0", "1"):
        monkeypatch.setenv("MEGATRON_HYBRID_GDN_RECOMPUTE_WY", knob)
        leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
        saved = []

        def pack(t, saved=saved):
            saved.append(t)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = gdn_mixer(*leaves, dims, scale=K**-0.5, norm_eps=1e-5)
        out.backward(grad_out)
        results.append([out.detach()] + [x.grad for x in leaves])
        kept.append(sum(t.numel() for t in saved if t is not None))
    for name, a, b in zip(("out", "projected", "conv_w", "g", "beta", "norm_w"), *results):
        assert torch.equal(a, b), name
    assert kept[0] - kept[1] == B * T * HV * 64


def test_fused_mixer_names_a_wrong_width():
    dims = (2, 2, 16, 32)
    projected, conv_w, g, beta, norm_w = make(1, 8, dims)
    with pytest.raises(ValueError, match="projected must be"):
        gdn_mixer(projected[..., 1:], conv_w, g, beta, norm_w, dims, scale=0.25, norm_eps=1e-5)
    with pytest.raises(ValueError, match="out_weight must be"):
        gdn_mixer(projected, conv_w, g, beta, norm_w, dims, scale=0.25, norm_eps=1e-5, out_weight=torch.ones(4, 63))


def test_gdn_block_fused_out_projection_equals_module_call(monkeypatch):
    """The layer with the output projection's GEMM inside the mixer Function (the default) against the same layer
    calling its RowParallelLinear (MEGATRON_HYBRID_GDN_FUSED_OUT_PROJ=0): the same output and parameter gradients."""
    from megatron.core.transformer.spec_utils import build_module

    from layer_specs.hybrid import gdn_layer_spec
    from megatron_hybrid.compat.distributed import init_distributed
    from megatron_hybrid.layers.gated_delta_net import _is_plain_row_parallel
    from megatron_hybrid.models import presets

    init_distributed()
    cfg = presets.tiny("GGGA", gdn_num_key_heads=2, gdn_key_head_dim=16, gdn_value_head_dim=32)
    tcfg = cfg.transformer_config(params_dtype=torch.float32, bf16=False, use_cpu_initialization=True)
    torch.manual_seed(0)
    block = build_module(gdn_layer_spec(), config=tcfg, layer_number=1)
    assert _is_plain_row_parallel(block.self_attention.out_proj), "the spec's out-projection takes the fused path"
    x = torch.randn(48, 1, cfg.d_model, generator=torch.Generator().manual_seed(2))
    grad = torch.randn(48, 1, cfg.d_model, generator=torch.Generator().manual_seed(3))
    results = []
    for knob in ("1", "0"):
        monkeypatch.setenv("MEGATRON_HYBRID_GDN_FUSED_OUT_PROJ", knob)
        block.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_(True)
        out = block(xi, attention_mask=None)[0]
        out.backward(grad)
        results.append((out.detach(), xi.grad, {n: p.grad.clone() for n, p in block.named_parameters()}))
    (out_f, dx_f, grads_f), (out_m, dx_m, grads_m) = results
    assert rel(out_f, out_m) < 1e-6
    assert rel(dx_f, dx_m) < 1e-5
    assert grads_f.keys() == grads_m.keys() and any("out_proj" in n for n in grads_f)
    for name in grads_f:
        assert rel(grads_f[name], grads_m[name]) < 1e-5, name


def test_out_projection_reduce_scattered_inside_the_mixer():
    """Async TP's GDN output projection: the mixer's GEMM fused with the sequence-parallel reduce-scatter (and the
    backward's all-gather) equals the mixer followed by Megatron's reduce-scatter, at TP=2 on gloo, B=2."""
    from tests.distributed_harness import run_on_ranks

    from .async_bodies import mixer_out_projection_async_matches

    for r in run_on_ranks(mixer_out_projection_async_matches, 2):
        assert r["shape"] == (32, 2, 24)
        assert max(r["rel"]) < 1e-5, r["rel"]  # out, dprojected, dconv, dg, dbeta, dnorm, dW
