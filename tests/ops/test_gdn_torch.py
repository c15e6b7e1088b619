"""CPU tests of the torch paths (no Triton): naive recurrence vs transformers, torch-chunked vs naive (forward and
every gradient), packed sequences, state chaining, dispatch, the small ops' references, and input validation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from megatron_hybrid.ops import (
    causal_conv1d,
    chunk_gated_delta_rule,
    gated_delta_rule,
    gated_rms_norm,
    gdn_gates,
    l2norm,
    naive_recurrent_gated_delta_rule,
    torch_chunk_gated_delta_rule,
)


def rel(a, b):
    a, b = a.double(), b.double()
    assert torch.isfinite(a).all()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def inputs(B, T, H, HV, K, V, dtype=torch.float64, N=None, h0=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=gen, dtype=dtype)
    k = F.normalize(torch.randn(B, T, H, K, generator=gen, dtype=dtype), dim=-1)
    v = torch.randn(B, T, HV, V, generator=gen, dtype=dtype)
    g = -torch.rand(B, T, HV, generator=gen, dtype=dtype) * 2
    beta = 2 * torch.rand(B, T, HV, generator=gen, dtype=dtype)
    N = B if N is None else N
    s0 = torch.randn(N, HV, K, V, generator=gen, dtype=dtype) if h0 else None
    return q, k, v, g, beta, s0


def test_naive_matches_transformers_recurrence():
    tr = pytest.importorskip("transformers.models.qwen3_next.modeling_qwen3_next")
    q, k, v, g, beta, s0 = inputs(2, 40, 2, 4, 16, 24, dtype=torch.float32)
    o1, s1 = naive_recurrent_gated_delta_rule(q, k, v, g, beta, initial_state=s0, output_final_state=True,
                                              use_qk_l2norm=True)  # fmt: skip
    o2, s2 = tr.torch_recurrent_gated_delta_rule(q, k, v, g, beta, initial_state=s0, output_final_state=True,
                                                 use_qk_l2norm_in_kernel=True)  # fmt: skip
    assert rel(o1, o2) < 1e-5 and rel(s1, s2) < 1e-5


@pytest.mark.parametrize("shape", [(2, 75, 1, 2, 16, 24), (1, 1, 2, 2, 8, 8), (1, 130, 1, 1, 96, 192)],
                         ids=["gva-T75", "T1", "olmo-dims-T130"])  # fmt: skip
def test_torch_chunk_matches_naive(shape):
    q, k, v, g, beta, s0 = inputs(*shape, seed=1)
    xs = [x.clone().requires_grad_() for x in (q, k, v, g, beta, s0)]
    ys = [x.clone().requires_grad_() for x in (q, k, v, g, beta, s0)]
    o1, st1 = torch_chunk_gated_delta_rule(*xs[:5], initial_state=xs[5], output_final_state=True, use_qk_l2norm=True)
    o2, st2 = naive_recurrent_gated_delta_rule(*ys[:5], initial_state=ys[5], output_final_state=True,
                                               use_qk_l2norm=True)  # fmt: skip
    assert rel(o1, o2) < 1e-10 and rel(st1, st2) < 1e-10
    do, dst = torch.randn_like(o1), torch.randn_like(st1)
    ((o1 * do).sum() + (st1 * dst).sum()).backward()
    ((o2 * do).sum() + (st2 * dst).sum()).backward()
    for a, b in zip(xs, ys):
        assert rel(a.grad, b.grad) < 1e-10


def test_torch_chunk_varlen_and_chaining():
    cu = torch.tensor([0, 1, 64, 67, 150], dtype=torch.int32)
    q, k, v, g, beta, s0 = inputs(1, 150, 1, 1, 16, 16, N=4, seed=2)
    o1, st1 = torch_chunk_gated_delta_rule(q, k, v, g, beta, initial_state=s0, output_final_state=True, cu_seqlens=cu)
    o2, st2 = naive_recurrent_gated_delta_rule(q, k, v, g, beta, initial_state=s0, output_final_state=True,
                                               cu_seqlens=cu)  # fmt: skip
    assert rel(o1, o2) < 1e-10 and rel(st1, st2) < 1e-10
    a, sa = torch_chunk_gated_delta_rule(q[:, :70], k[:, :70], v[:, :70], g[:, :70], beta[:, :70],
                                         initial_state=s0[:1], output_final_state=True)  # fmt: skip
    b, sb = torch_chunk_gated_delta_rule(q[:, 70:], k[:, 70:], v[:, 70:], g[:, 70:], beta[:, 70:], initial_state=sa,
                                         output_final_state=True)  # fmt: skip
    c, sc = torch_chunk_gated_delta_rule(q, k, v, g, beta, initial_state=s0[:1], output_final_state=True)
    assert rel(torch.cat([a, b], 1), c) < 1e-10 and rel(sb, sc) < 1e-10


def test_dispatch_on_cpu_uses_torch_path():
    q, k, v, g, beta, s0 = inputs(1, 20, 1, 1, 8, 8, dtype=torch.float32)
    o1, s1 = gated_delta_rule(q, k, v, g, beta, initial_state=s0, output_final_state=True)
    o2, s2 = torch_chunk_gated_delta_rule(q, k, v, g, beta, initial_state=s0, output_final_state=True)
    assert torch.equal(o1, o2) and torch.equal(s1, s2)


def test_bad_inputs_raise_value_error():
    q, k, v, g, beta, s0 = inputs(1, 20, 2, 2, 8, 8, dtype=torch.float32)
    big = torch.randn(1, 20, 2, 300)
    cases = [
        dict(q=big, k=big, v=v),  # K > 256
        dict(v=torch.randn(1, 20, 2, 300)),  # V > 256
        dict(v=torch.randn(1, 20, 3, 8)),  # HV not a multiple of H
        dict(q=torch.randn(1, 20, 2, 4)),  # q and k differ
        dict(g=torch.randn(1, 20, 3)),  # wrong g shape
        dict(cu_seqlens=torch.tensor([0, 5, 20], dtype=torch.int64)),  # not int32
        dict(cu_seqlens=torch.tensor([0, 5, 19], dtype=torch.int32)),  # last offset != T
        dict(initial_state=torch.randn(2, 2, 8, 8)),  # wrong N
        dict(q=q.to(torch.int32)),  # not floating point
        dict(v=v.double(), q=q.double(), k=k.double(), use_chunk=True),  # fp64 on the Triton path
    ]
    for case in cases:
        args = dict(q=q, k=k, v=v, g=g, beta=beta, initial_state=None, cu_seqlens=None)
        use_chunk = case.pop("use_chunk", False)
        args.update(case)
        fn = chunk_gated_delta_rule if use_chunk else gated_delta_rule
        with pytest.raises(ValueError):
            fn(args["q"], args["k"], args["v"], args["g"], args["beta"], initial_state=args["initial_state"],
               cu_seqlens=args["cu_seqlens"])  # fmt: skip
    with pytest.raises(ValueError):  # B > 1 with cu_seqlens
        gated_delta_rule(*inputs(2, 20, 1, 1, 8, 8, dtype=torch.float32)[:5],
                         cu_seqlens=torch.tensor([0, 20], dtype=torch.int32))  # fmt: skip
    with pytest.raises(ValueError):  # Triton path on a CPU tensor without the interpreter
        import os

        if os.environ.get("TRITON_INTERPRET") == "1":
            raise ValueError("skip: interpreter set")
        chunk_gated_delta_rule(q, k, v, g, beta)
    with pytest.raises(ValueError):
        causal_conv1d(torch.randn(1, 10, 4), torch.randn(5, 4))
    with pytest.raises(ValueError):
        causal_conv1d(torch.randn(1, 10, 4), torch.randn(4, 4), cu_seqlens=torch.tensor([0, 10]))
    with pytest.raises(ValueError):
        gated_rms_norm(torch.randn(2, 8), torch.randn(2, 7), torch.randn(8))
    with pytest.raises(ValueError):
        gdn_gates(torch.randn(2, 4), torch.randn(2, 4), torch.randn(3), torch.randn(4))


def test_small_ops_torch_paths():
    tr = pytest.importorskip("transformers.models.qwen3_next.modeling_qwen3_next")
    x, gate = torch.randn(3, 5, 192, dtype=torch.bfloat16), torch.randn(3, 5, 192, dtype=torch.bfloat16)
    mod = tr.Qwen3NextRMSNormGated(192, eps=1e-5).to(torch.bfloat16)
    with torch.no_grad():
        mod.weight.copy_(torch.randn(192))
    assert torch.equal(gated_rms_norm(x, gate, mod.weight), mod(x, gate))
    y = l2norm(x.float())
    assert rel(y, x.float() / torch.sqrt(x.float().pow(2).sum(-1, keepdim=True) + 1e-6)) < 1e-6
    a, b, A_log, dt = torch.randn(2, 4, 3), torch.randn(2, 4, 3), torch.randn(3), torch.randn(3)
    g, beta = gdn_gates(a, b, A_log, dt)
    assert rel(g, -A_log.exp() * F.softplus(a + dt)) < 1e-6 and rel(beta, 2 * b.sigmoid()) < 1e-6
    x, w = torch.randn(2, 30, 6), torch.randn(6, 4)
    y, _ = causal_conv1d(x, w)
    ref = torch.stack([sum(w[:, j] * (x[:, t - 3 + j] if t - 3 + j >= 0 else 0) for j in range(4))
                       for t in range(30)], 1)  # fmt: skip
    assert rel(y, F.silu(ref)) < 1e-6
