"""Triton conv1d, L2 norm, gated RMSNorm and gate kernels on the CPU (TRITON_INTERPRET=1) against PyTorch, fp32."""

from __future__ import annotations

import os

import pytest
import torch

assert os.environ.get("TRITON_INTERPRET") == "1", "run through tests/ops/test_triton_interpreter.py"

from megatron_hybrid.ops import causal_conv1d, conv1d, gated_rms_norm, gdn_gates, l2norm, norms  # noqa: E402
from megatron_hybrid.ops.conv1d import causal_conv1d_torch  # noqa: E402
from megatron_hybrid.ops.gates import gdn_gates_torch  # noqa: E402
from megatron_hybrid.ops.norms import gated_rms_norm_torch, l2norm_torch, rms_norm_torch  # noqa: E402
from megatron_hybrid.ops.swiglu import swiglu, swiglu_torch  # noqa: E402


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


def test_l2norm_pair_in_one_launch_equals_one_launch_each():
    """q and k normalised in one launch (program_id(1) picks the tensor), read as column slices of one buffer as in the
    GDN mixer, their gradients written into column slices: bit-identical to a launch per tensor."""
    N, H, K = 14, 3, 12
    qk, dqk = torch.randn(N, 2 * H * K), torch.zeros(N, 2 * H * K)
    q_in, k_in = (qk[:, i * H * K : (i + 1) * H * K].view(N, H, K) for i in (0, 1))
    q, k, rstd = norms.l2norm_fwd(q_in, k_in, eps=1e-6)
    (q1, rq), (k1, rk) = norms.l2norm_fwd(q_in, eps=1e-6), norms.l2norm_fwd(k_in, eps=1e-6)
    assert torch.equal(q, q1) and torch.equal(k, k1) and torch.equal(rstd, torch.cat([rq, rk]))
    assert rel(q, l2norm_torch(q_in.reshape(-1, K))) < 1e-6
    dq, dk = torch.randn_like(q), torch.randn_like(k)
    dq_in, dk_in = (dqk[:, i * H * K : (i + 1) * H * K].view(N, H, K) for i in (0, 1))
    norms.l2norm_bwd((q, k), rstd, (dq, dk), (dq_in, dk_in))
    assert torch.equal(dq_in.reshape(-1, K), norms.l2norm_bwd((q,), rq, (dq,))[0])
    assert torch.equal(dk_in.reshape(-1, K), norms.l2norm_bwd((k,), rk, (dk,))[0])


def test_gated_rms_norm():
    x, gate, w = torch.randn(3, 7, 192), torch.randn(3, 7, 192), torch.randn(192)
    check(gated_rms_norm, gated_rms_norm_torch, x, gate, w)
    # fp16: the same roundings as the module (to within one fp16 ulp from rsqrt vs 1/sqrt)
    xh, gh, wh = x.half(), gate.half(), w.half()
    assert rel(gated_rms_norm(xh, gh, wh), gated_rms_norm_torch(xh, gh, wh)) < 1e-3


def test_gated_rms_norm_strided_gate():
    """The layer's gate z is a column slice of the input projection: read in place, gradient into the wide tensor;
    a gate whose leading dims do not merge (batch-major transposed) takes a copy."""
    x, w = torch.randn(2, 7, 3, 16), torch.randn(16)
    for wide, make_gate in (
        (torch.randn(2, 7, 100), lambda t: t[..., 40:88].view(2, 7, 3, 16)),
        (torch.randn(7, 2, 48), lambda t: t.view(7, 2, 3, 16).transpose(0, 1)),
    ):
        a, r = wide.clone().requires_grad_(), wide.clone().requires_grad_()
        xa, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yr = gated_rms_norm(xa, make_gate(a), w), gated_rms_norm_torch(xr, make_gate(r), w)
        dy = torch.randn_like(yr)
        (ya * dy).sum().backward()
        (yr * dy).sum().backward()
        assert rel(ya, yr) < 1e-5 and rel(a.grad, r.grad) < 1e-5 and rel(xa.grad, xr.grad) < 1e-5


def test_gated_rms_norm_saves_no_gate_copy():
    """Activation memory: what the norm keeps for its backward is x, the gate's own storage (the projection it is a
    slice of, which the layer keeps anyway), the weight and rstd: no copy of the gate (47-94 MB at the Olmo shape)."""
    wide = torch.randn(2, 7, 100)
    x, w = torch.randn(2, 7, 3, 16, requires_grad=True), torch.randn(16, requires_grad=True)
    storages = []
    with torch.autograd.graph.saved_tensors_hooks(
        lambda t: storages.append(t.untyped_storage().data_ptr()) or t, lambda t: t
    ):
        gated_rms_norm(x, wide.requires_grad_()[..., 40:88].view(2, 7, 3, 16), w)
    big = [ptr for ptr in storages if ptr not in (x.untyped_storage().data_ptr(), w.untyped_storage().data_ptr())]
    assert wide.untyped_storage().data_ptr() in big
    assert len(big) == 2, f"expected the wide gate and rstd only, got {len(big)} storages"


def test_rms_norm(monkeypatch):
    """Olmo's RMSNorm: fp32 and fp16 against the torch ops; the backward with several row blocks per program."""
    x, w = torch.randn(600, 96), torch.randn(96)
    check(norms.rms_norm, rms_norm_torch, x, w)
    monkeypatch.setattr(norms, "BWD_PROGRAMS", 4)  # 38 row blocks over 4 programs: 10 row blocks each
    check(norms.rms_norm, rms_norm_torch, torch.randn(3, 200, 40), torch.randn(40))
    xh, wh = x.half(), w.half()
    assert rel(norms.rms_norm(xh, wh), rms_norm_torch(xh, wh)) < 1e-3
    with pytest.raises(ValueError, match="full_width=192 differs"):
        norms.rms_norm(x, w, full_width=192)


def test_rms_norm_split_over_ranks():
    """The QK-norm case: the width split over 2 gloo ranks, statistics all-reduced, equals the whole-width norm."""
    from tests.distributed_harness import run_on_ranks

    from .rms_norm_ranks import split_width_rms_norm

    M, D = 50, 48
    parts = run_on_ranks(split_width_rms_norm, world_size=2, args=(M, D))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(M, 2 * D, generator=gen).requires_grad_()
    w = torch.randn(2 * D, generator=gen).requires_grad_()
    dy = torch.randn(M, 2 * D, generator=gen)
    y = rms_norm_torch(x, w)
    y.backward(dy)
    y_s, dx_s, dw_s = (torch.cat([p[i] for p in parts], -1) for i in range(3))
    assert rel(y_s, y) < 1e-5 and rel(dx_s, x.grad) < 1e-5 and rel(dw_s, w.grad) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_rope(dtype):
    """Fused RoPE against the torch ops, forward and backward: a contiguous x, and a strided one (k as a slice of a
    wider [s, b, groups, 3, d] projection, as the attention layer's split leaves it)."""
    from megatron_hybrid.layers.attention import rope_tables
    from megatron_hybrid.ops.rope import rope, rope_torch

    s, b, h, d = 7, 2, 3, 32
    inv_freq = 1.0 / (500000 ** (torch.arange(0, d, 2).float() / d))
    freqs = torch.outer(torch.arange(s).float(), inv_freq)
    cos, sin = rope_tables(torch.cat([freqs, freqs], -1)[:, None, None, :], torch.device("cpu"))
    tol = 1e-6 if dtype == torch.float32 else 1e-3
    x = torch.randn(s, b, h, d).to(dtype)
    check(lambda t: rope(t, cos, sin), lambda t: rope_torch(t, cos, sin), x, tol=tol)
    wide = torch.randn(s, b, h, 3, d).to(dtype)
    strided = wide[:, :, :, 1]
    assert strided.stride() == (b * h * 3 * d, h * 3 * d, 3 * d, 1)
    y = rope(strided, cos, sin)
    assert y.is_contiguous() and rel(y, rope_torch(strided, cos, sin)) < tol
    with pytest.raises(ValueError, match="cos and sin must be fp32"):
        rope(x, cos.half(), sin.half())
    with pytest.raises(ValueError, match=r"\[s, b, h, d\] with an even d"):
        rope(x[..., :-1], cos, sin)


def _lse_reference(logits, targets):
    x = logits.double()
    return torch.logsumexp(x, -1), x.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cross_entropy_lse_and_target(dtype):
    """Fused logsumexp / target logit / gradient against float64 torch, over a vocabulary of two kernel blocks plus
    a tail (5000 = 4096 + 904), with the gradient written over the logits or into a new tensor alike."""
    from megatron_hybrid.ops.cross_entropy import vocab_parallel_lse

    gen = torch.Generator().manual_seed(0)
    N, V = 6, 5000
    logits = (4 * torch.randn(2, N // 2, V, generator=gen)).to(dtype)
    targets = torch.randint(0, V, (2, N // 2), generator=gen)
    dlse, dtarget = torch.randn(2, N // 2, generator=gen), torch.randn(2, N // 2, generator=gen)
    ref = logits.double().requires_grad_()
    lse_r, tl_r = _lse_reference(ref, targets)
    ((lse_r * dlse).sum() + (tl_r * dtarget).sum()).backward()
    grads = []
    for inplace in (False, True):
        x = logits.clone().requires_grad_()
        lse, target_logit = vocab_parallel_lse(x * 1, targets, inplace_backward=inplace)  # x * 1: a non-leaf
        assert lse.dtype == target_logit.dtype == torch.float32 and lse.shape == targets.shape
        assert rel(lse, lse_r) < 1e-6 and rel(target_logit, tl_r) < 1e-6
        ((lse * dlse).sum() + (target_logit * dtarget).sum()).backward()
        assert x.grad.dtype == dtype
        assert rel(x.grad, ref.grad) < (1e-6 if dtype == torch.float32 else 1e-3)
        grads.append(x.grad)
    assert torch.equal(grads[0], grads[1])


def test_cross_entropy_vocab_split_over_ranks():
    """Two gloo ranks, each with half the vocabulary (targets on either half): fused and torch paths equal the whole
    vocabulary's result."""
    from tests.distributed_harness import run_on_ranks

    from .cross_entropy_ranks import split_vocab_lse

    N, V = 8, 700
    gen = torch.Generator().manual_seed(0)
    logits = (4 * torch.randn(N, 2 * V, generator=gen)).double().requires_grad_()
    targets = torch.randint(0, 2 * V, (N,), generator=gen)
    dlse, dtarget = torch.randn(N, generator=gen), torch.randn(N, generator=gen)
    lse_r, tl_r = _lse_reference(logits, targets)
    ((lse_r * dlse).sum() + (tl_r * dtarget).sum()).backward()
    for fused in (True, False):
        parts = run_on_ranks(split_vocab_lse, world_size=2, args=(N, V, fused))
        for lse, target_logit, _ in parts:  # every rank holds the whole vocabulary's values
            assert rel(lse, lse_r) < 1e-6 and rel(target_logit, tl_r) < 1e-6
        assert rel(torch.cat([p[2] for p in parts], -1), logits.grad) < 1e-6


def test_lm_loss_fused_equals_torch_over_tp_ranks():
    """training/loss.py: fused and torch paths give the same ce, z and logits gradient, TP = 2 (gloo)."""
    from tests.distributed_harness import run_on_ranks

    from .cross_entropy_ranks import lm_loss_both_paths

    for (ce_f, z_f, g_f), (ce_t, z_t, g_t) in run_on_ranks(lm_loss_both_paths, world_size=2, args=(5, 400)):
        assert rel(ce_f, ce_t) < 1e-6 and rel(z_f, z_t) < 1e-6 and rel(g_f, g_t) < 1e-6


def test_fused_loss_through_a_model_equals_torch_loss():
    """The in-place backward on the logits a real model returns (hybrid and attention layers): the same loss and
    parameter gradients as the torch loss; no autograd node needed the overwritten logits."""
    from tests.distributed_harness import run_on_ranks

    from .cross_entropy_ranks import model_grads_both_losses

    ((loss_f, grads_f), (loss_t, grads_t)) = run_on_ranks(model_grads_both_losses, world_size=1, args=("GGAS",))[0]
    assert loss_f == pytest.approx(loss_t, rel=1e-6)
    for name, g in grads_t.items():
        assert rel(grads_f[name], g) < 1e-5, name


def test_cross_entropy_bench_rows_on_cpu():
    """bench/cross_entropy.py end to end on tiny shapes: every variant runs and lands near the fp64 reference."""
    from tests.distributed_harness import run_on_ranks

    from .cross_entropy_ranks import bench_rows_on_cpu

    (rows,) = run_on_ranks(bench_rows_on_cpu, world_size=1, args=(4, 300))
    assert [r["variant"] for r in rows] == ["fused", "fused new grad", "torch", "megatron"]
    for r in rows:
        assert r["grad_err"] < 1e-2 and r["ms"] == 1.0 and r["GB/s"] > 0
        assert r["variant"] == "megatron" or r["lse_err"] < 1e-6


def test_cross_entropy_input_checks():
    from megatron_hybrid.ops.cross_entropy import vocab_parallel_lse

    with pytest.raises(ValueError, match="targets .* without the last dim"):
        vocab_parallel_lse(torch.zeros(4, 10), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="int32 or int64"):
        vocab_parallel_lse(torch.zeros(4, 10), torch.zeros(4))


def test_swiglu():
    """silu(gate) * up of Megatron's [gate, up] fc1 output; odd widths and row counts that fill no tile."""
    check(swiglu, swiglu_torch, torch.randn(3, 37, 2 * 1100) * 3)
    check(swiglu, swiglu_torch, torch.randn(5, 2 * 7))
    yh = (torch.randn(4, 2 * 300) * 3).half()
    assert rel(swiglu(yh), swiglu_torch(yh)) < 1e-3
    with pytest.raises(ValueError, match="even last dim"):
        swiglu(torch.randn(2, 5))


def test_swiglu_mlp_matches_megatron_mlp():
    """The fused MLP equals Megatron's own MLP (its unfused torch SwiGLU) on the same weights."""
    from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear
    from megatron.core.transformer.mlp import MLP, MLPSubmodules
    from megatron.core.transformer.spec_utils import build_module

    from megatron_hybrid.compat.distributed import init_distributed
    from megatron_hybrid.layers.mlp import SwiGLUMLP
    from megatron_hybrid.models import presets

    init_distributed()
    tcfg = presets.tiny("GGGA").transformer_config(use_cpu_initialization=True)
    subs = MLPSubmodules(linear_fc1=ColumnParallelLinear, linear_fc2=RowParallelLinear)
    torch.manual_seed(0)
    ours = build_module(SwiGLUMLP, submodules=subs, config=tcfg)
    theirs = build_module(MLP, submodules=subs, config=tcfg)
    theirs.load_state_dict(ours.state_dict())
    check(lambda x: ours(x)[0], lambda x: theirs(x)[0], torch.randn(9, 2, tcfg.hidden_size))


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


# ------------------------------------------------------------------------------------- conv1d backward variants
# Every backward variant of ops/conv1d.py (bench/conv1d.py times them on the GPU): tile sizes small enough that
# T is not a multiple of the row tile, C not a multiple of the channel tile, and a program walks several tiles.
CONV_BWD_CONFIGS = [
    conv1d.BwdConfig("fused", rows_per_program=1, block_t=32),
    conv1d.BwdConfig("fused", rows_per_program=3, block_t=16, block_c=64),
    conv1d.BwdConfig("two_pass", "fp32", rows_per_program=1, block_t=32),
    conv1d.BwdConfig("two_pass", "fp32", rows_per_program=4, block_t=16, block_c=64),
    conv1d.BwdConfig("two_pass", "dy", rows_per_program=8, block_t=8, block_c=32),
    conv1d.BwdConfig("ring", "fp32", rows_per_program=1),
    conv1d.BwdConfig("ring", "dy", rows_per_program=3, block_t=8, block_c=64),
]


def _conv(act, cu=None, s0=None):
    """The op, and its torch reference, with an activation flag, varlen bounds and an initial state (optional)."""

    def ref(x, w, *s):
        if s0 is None:
            return causal_conv1d_torch(x, w, act, cu)
        rows = s[0].transpose(1, 2)  # [N, W-1, C]
        if cu is None:
            return causal_conv1d_torch(torch.cat([rows, x], 1), w, act)[:, w.shape[1] - 1 :]
        bounds = cu.tolist()
        outs = []
        for n in range(len(bounds) - 1):
            seq = torch.cat([rows[n], x[0, bounds[n] : bounds[n + 1]]], 0)[None]
            outs.append(causal_conv1d_torch(seq, w, act)[:, w.shape[1] - 1 :])
        return torch.cat(outs, 1)

    def op(x, w, *s):
        return causal_conv1d(x, w, "silu" if act else None, initial_state=s[0] if s else None, cu_seqlens=cu)[0]

    return op, ref


@pytest.mark.parametrize("cfg", CONV_BWD_CONFIGS, ids=lambda c: c.name)
def test_conv1d_bwd_variants(monkeypatch, cfg):
    monkeypatch.setattr(conv1d, "_BWD_CONFIG", cfg)
    torch.manual_seed(0)
    x, w = torch.randn(2, 45, 150), torch.randn(150, 4)
    for act in (True, False):
        check(*_conv(act), x, w)
    # varlen: a 1-token sequence, an empty one, sequences shorter and longer than the row tile
    cu = torch.tensor([0, 1, 1, 20, 21, 90], dtype=torch.int32)
    x1 = x.reshape(1, 90, 150)
    for act in (True, False):
        check(*_conv(act, cu), x1, w)
    # kernel width 3, one channel tile narrower than the tile
    check(*_conv(True), torch.randn(1, 23, 24), torch.randn(24, 3))


@pytest.mark.parametrize("cfg", CONV_BWD_CONFIGS, ids=lambda c: c.name)
def test_conv1d_strided_input(monkeypatch, cfg):
    """x a channel slice of a wider tensor (the layer's ``projected[..., :C]``): read in place, gradients flow into
    the wider tensor; also with the batch dimension the outer-most stride of a [T, B] layout."""
    monkeypatch.setattr(conv1d, "_BWD_CONFIG", cfg)
    torch.manual_seed(1)
    w = torch.randn(150, 4)
    for wide in (torch.randn(2, 45, 230), torch.randn(45, 2, 230).transpose(0, 1)):
        for act in (True, False):
            op, ref = _conv(act)
            check(lambda p, w, op=op: op(p[..., 10:160], w), lambda p, w, ref=ref: ref(p[..., 10:160], w), wide, w)
    # the view is what the forward saves: no copy of x
    x = torch.randn(1, 30, 230)[..., :150].requires_grad_()
    y = causal_conv1d(x, w.clone().requires_grad_())[0]
    assert y.grad_fn.saved_tensors[0].data_ptr() == x.data_ptr() and y.is_contiguous()
    # varlen on the strided view (check() clones its inputs: slice inside, as above)
    op, ref = _conv(True, torch.tensor([0, 1, 1, 30], dtype=torch.int32))
    check(lambda p, w: op(p[..., :150], w), lambda p, w: ref(p[..., :150], w), torch.randn(1, 30, 230), w)


@pytest.mark.parametrize("cfg", CONV_BWD_CONFIGS[::2] + CONV_BWD_CONFIGS[-1:], ids=lambda c: c.name)
def test_conv1d_state_variants(monkeypatch, cfg):
    monkeypatch.setattr(conv1d, "_BWD_CONFIG", cfg)
    torch.manual_seed(2)
    x, w = torch.randn(2, 37, 70), torch.randn(70, 4)
    check(*_conv(True, s0=True), x, w, torch.randn(2, 70, 3))
    cu = torch.tensor([0, 1, 1, 40, 74], dtype=torch.int32)
    check(*_conv(True, cu, s0=True), x.reshape(1, 74, 70), w, torch.randn(4, 70, 3))
    # final state with varlen
    y, s = causal_conv1d(x.reshape(1, 74, 70), w, initial_state=None, output_final_state=True, cu_seqlens=cu)
    x2 = x.reshape(74, 70)
    assert torch.equal(s[0, :, :2], torch.zeros(70, 2)) and torch.equal(s[0, :, 2], x2[0])  # a 1-token sequence
    assert torch.equal(s[1], torch.zeros(70, 3))  # an empty one
    assert torch.equal(s[2], x2[37:40].t()) and torch.equal(s[3], x2[71:74].t())


@pytest.mark.parametrize("cfg", CONV_BWD_CONFIGS, ids=lambda c: c.name)
def test_conv1d_fp16(monkeypatch, cfg):
    """fp16 in and out, fp32 inside: within a few fp16 roundings of the fp32 reference (dpre in fp16 adds one)."""
    monkeypatch.setattr(conv1d, "_BWD_CONFIG", cfg)
    torch.manual_seed(3)
    x, w = torch.randn(2, 45, 150).half(), (torch.randn(150, 4) / 2).half()
    cu = torch.tensor([0, 1, 1, 20, 21, 90], dtype=torch.int32)
    for act, cu_, xx in ((True, None, x), (False, None, x), (True, cu, x.reshape(1, 90, 150))):
        op, ref = _conv(act, cu_)
        a, r = [t.clone().requires_grad_() for t in (xx, w)], [t.float().requires_grad_() for t in (xx, w)]
        ya, yr = op(*a), ref(*r)
        dy = torch.randn_like(yr).half()
        ya.backward(dy)
        yr.backward(dy.float())
        assert ya.dtype == torch.float16 and a[0].grad.dtype == torch.float16 and a[1].grad.dtype == torch.float16
        assert rel(ya, yr) < 5e-4  # measured ~2e-4: one fp16 rounding of y
        assert rel(a[0].grad, r[0].grad) < 1e-3  # ~2e-4; ~3e-4 with dpre in fp16
        assert rel(a[1].grad, r[1].grad) < 1e-3


def test_conv1d_bwd_config_checks():
    with pytest.raises(ValueError):
        conv1d.BwdConfig("sliding")
    with pytest.raises(ValueError):
        conv1d.BwdConfig(dpre_dtype="bf16")
    with pytest.raises(ValueError):
        conv1d.BwdConfig(block_t=24)
    with pytest.raises(ValueError):
        conv1d.BwdConfig(rows_per_program=0)
