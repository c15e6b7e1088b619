"""Triton conv1d, L2 norm, gated RMSNorm and gate kernels on the CPU (TRITON_INTERPRET=1) against PyTorch, fp32."""

from __future__ import annotations

import os

import torch

assert os.environ.get("TRITON_INTERPRET") == "1", "run through tests/ops/test_triton_interpreter.py"

from megatron_hybrid.ops import causal_conv1d, gated_rms_norm, gdn_gates, l2norm  # noqa: E402
from megatron_hybrid.ops.conv1d import causal_conv1d_torch  # noqa: E402
from megatron_hybrid.ops.gates import gdn_gates_torch  # noqa: E402
from megatron_hybrid.ops.norms import gated_rms_norm_torch, l2norm_torch  # noqa: E402


def rel(a, b):
    a, b = a.double(), b.double()
    assert torch.isfinite(a).all()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def check(f, ref, *xs, tol=1e-5):
    a = [x.clone().requires_grad_(x.is_floating_point()) for x in xs]
    r = [x.clone().requires_grad_(x.is_floating_point()) for x in xs]
    ya, yr = f(*a), ref(*r)
    ya = ya if isinstance(ya, tuple) else (ya,)
    yr = yr if isinstance(yr, tuple) else (yr,)
    ds = [torch.randn_like(y) for y in yr]
    sum((y * d).sum() for y, d in zip(ya, ds)).backward()
    sum((y * d).sum() for y, d in zip(yr, ds)).backward()
    for y1, y2 in zip(ya, yr):
        assert rel(y1, y2) < tol
    for p1, p2 in zip(a, r):
        if p1.requires_grad:
            assert rel(p1.grad, p2.grad) < tol


def test_l2norm():
    check(l2norm, l2norm_torch, torch.randn(3, 5, 2, 96))


def test_gated_rms_norm():
    x, gate, w = torch.randn(3, 7, 192), torch.randn(3, 7, 192), torch.randn(192)
    check(gated_rms_norm, gated_rms_norm_torch, x, gate, w)
    # fp16: the same roundings as the module (to within one fp16 ulp from rsqrt vs 1/sqrt)
    xh, gh, wh = x.half(), gate.half(), w.half()
    assert rel(gated_rms_norm(xh, gh, wh), gated_rms_norm_torch(xh, gh, wh)) < 1e-3


def test_gates():
    a, b = torch.randn(2, 9, 6) * 8, torch.randn(2, 9, 6)
    A_log, dt = torch.rand(6).log(), torch.randn(6)
    check(gdn_gates, gdn_gates_torch, a, b, A_log, dt)
    check(lambda *x: gdn_gates(*x, allow_neg_eigval=False), lambda *x: gdn_gates_torch(*x, allow_neg_eigval=False),
          a, b, A_log, dt)  # fmt: skip


def test_conv1d():
    x, w = torch.randn(2, 70, 40), torch.randn(40, 4)
    check(lambda x, w: causal_conv1d(x, w)[0], lambda x, w: causal_conv1d_torch(x, w, True), x, w)
    check(lambda x, w: causal_conv1d(x, w, activation=None)[0], lambda x, w: causal_conv1d_torch(x, w, False), x, w)
    cu = torch.tensor([0, 3, 50, 70, 140], dtype=torch.int32)
    x1 = x.reshape(1, 140, 40)
    check(lambda x, w: causal_conv1d(x, w, cu_seqlens=cu)[0], lambda x, w: causal_conv1d_torch(x, w, True, cu), x1, w)
    # several channel tiles, kernel width 3
    x, w = torch.randn(1, 45, 150), torch.randn(150, 3)
    check(lambda x, w: causal_conv1d(x, w)[0], lambda x, w: causal_conv1d_torch(x, w, True), x, w)


def test_conv1d_state_chaining():
    x, w = torch.randn(2, 70, 40), torch.randn(40, 4)
    y, s = causal_conv1d(x, w, output_final_state=True)
    y1, s1 = causal_conv1d(x[:, :2], w, output_final_state=True)  # shorter than the kernel width
    y2, s2 = causal_conv1d(x[:, 2:], w, initial_state=s1, output_final_state=True)
    assert rel(torch.cat([y1, y2], 1), y) < 1e-6 and rel(s2, s) < 1e-6
    assert torch.equal(s, x[:, -3:].transpose(1, 2))
    # gradients flow into the initial state and match torch
    s0 = torch.randn(2, 40, 3)

    def ref(x, w, s0):
        xe = torch.cat([s0.transpose(1, 2), x], 1)
        return causal_conv1d_torch(xe, w, True)[:, 3:]

    check(lambda x, w, s0: causal_conv1d(x, w, initial_state=s0)[0], ref, x, w, s0)
