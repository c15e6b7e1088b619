"""GPU tests (``pytest -m gpu``): bf16 Triton kernels against an fp64 reference of the same bf16 inputs.

Relative RMS error ||out - ref|| / ||ref||: <= 5e-3 for o and the final state, <= 1e-2 for every gradient.
The reference is the torch chunked implementation in fp64 (itself checked against the naive recurrence on CPU).
"""

from __future__ import annotations

import os

# one config per kernel instead of autotuning each new shape (much faster compiles); takes effect only if the ops
# are imported after this line. bench/gdn_kernels.py checks the autotuned kernels against fp64 on its own inputs.
os.environ.setdefault("MEGATRON_HYBRID_AUTOTUNE", "0")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def rel_rms(a: torch.Tensor, ref: torch.Tensor) -> float:
    a, ref = a.double(), ref.double()
    assert torch.isfinite(a).all(), "non-finite values"
    return ((a - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def autotuned() -> bool:
    """Whether the kernels carry their whole config lists (MEGATRON_HYBRID_AUTOTUNE is read when the ops are first
    imported, which another test module may do before this one's default applies)."""
    from megatron_hybrid.ops.gated_delta_rule import chunk as C

    return len(C.chunk_wy_fwd_kernel.configs) > 1


def assert_same_values(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    """Two paths through the same kernels on the same values: bit-identical with one config per kernel. Autotuned,
    a kernel can run under two keys (the WY kernel with its solve, in the fused mixer's backward, and without it, from
    the kept inverse) and so with two tuned configs whose dots accumulate in another order: then equal to 1e-4
    relative (measured 1.5e-6 .. 2.2e-5 on an H200, 2026-11-27, bench/results/gpu_check/session11/call3)."""
    if autotuned():
        assert rel_rms(a, b) <= 1e-4, (name, rel_rms(a, b))
    else:
        assert torch.equal(a, b), (name, rel_rms(a, b))


def make_inputs(B, T, H, HV, K, V, dtype, g_range=(-1.0, 0.0), beta_range=(0.0, 2.0), h0=True, N=None, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)

    def rnd(*s):
        return torch.randn(*s, device="cuda", generator=gen)

    q = rnd(B, T, H, K).to(dtype)
    k = rnd(B, T, H, K).to(dtype)
    v = rnd(B, T, HV, V).to(dtype)
    lo, hi = g_range
    g = (lo + (hi - lo) * torch.rand(B, T, HV, device="cuda", generator=gen)).float()
    lo, hi = beta_range
    beta = (lo + (hi - lo) * torch.rand(B, T, HV, device="cuda", generator=gen)).to(dtype)
    N = B if N is None else N
    s0 = rnd(N, HV, K, V).float() if h0 else None
    return q, k, v, g, beta, s0


def run_and_compare(q, k, v, g, beta, s0, cu_seqlens=None, use_qk_l2norm=True):
    from megatron_hybrid.ops import chunk_gated_delta_rule, torch_chunk_gated_delta_rule

    xs = [q, k, v, g, beta] + ([s0] if s0 is not None else [])
    ours = [x.clone().requires_grad_() for x in xs]
    refs = [x.detach().double().clone().requires_grad_() for x in xs]
    o, st = chunk_gated_delta_rule(
        *ours[:5], initial_state=ours[5] if s0 is not None else None, output_final_state=True,
        cu_seqlens=cu_seqlens, use_qk_l2norm=use_qk_l2norm,
    )  # fmt: skip
    o_r, st_r = torch_chunk_gated_delta_rule(
        *refs[:5], initial_state=refs[5] if s0 is not None else None, output_final_state=True,
        cu_seqlens=cu_seqlens, use_qk_l2norm=use_qk_l2norm,
    )  # fmt: skip
    # seeded: the output and final-state gradients are part of the test's inputs (the relative dbeta error at the
    # 777-token, K=V=256 shape ranged 2.3e-3 to 9.4e-3 over 8 draws on the H100, most of it in the short tail chunk)
    gen = torch.Generator(device=o.device).manual_seed(1234)
    do = torch.randn(o.shape, device=o.device, generator=gen).to(o.dtype)
    dst = torch.randn(st.shape, device=st.device, generator=gen).to(st.dtype)
    ((o.float() * do.float()).sum() + (st * dst).sum()).backward()
    ((o_r * do.double()).sum() + (st_r * dst.double()).sum()).backward()
    errs = {"o": rel_rms(o, o_r), "state": rel_rms(st, st_r)}
    for name, a, r in zip(["dq", "dk", "dv", "dg", "dbeta", "dh0"], ours, refs):
        errs[name] = rel_rms(a.grad, r.grad)
    bad = {n: e for n, e in errs.items() if e > (5e-3 if n in ("o", "state") else 1e-2)}
    if bad and cu_seqlens is None:
        where = {}
        for name, a, r in zip(["dq", "dk", "dv", "dg", "dbeta"], ours, refs):
            if name in bad:
                where[name] = _worst_chunks(a.grad, r.grad)
        bad["where (chunk, head, share of the squared error)"] = where
    assert not bad, f"errors over tolerance: {bad} (all: {errs})"
    return errs


def _worst_chunks(a, ref, n=3):
    """The (chunk, value head) cells holding most of the squared error: localises a failure."""
    e = (a.double() - ref.double()).pow(2)
    B, T = e.shape[:2]
    e = e.reshape(B, T, e.shape[2], -1).sum(-1)
    nt = -(-T // 64)
    e = torch.nn.functional.pad(e, (0, 0, 0, nt * 64 - T)).reshape(B, nt, 64, -1).sum(2).sum(0)  # [nt, HV]
    tot = e.sum().item()
    vals, idx = e.flatten().topk(min(n, e.numel()))
    return [(int(i) // e.shape[1], int(i) % e.shape[1], round(v.item() / tot, 3)) for v, i in zip(vals, idx)]


SHAPES = [
    # B, T, H, HV, K, V
    (1, 8192, 2, 2, 96, 192),
    (2, 300, 2, 4, 64, 32),
    (1, 1000, 3, 3, 128, 128),
    (1, 777, 1, 2, 256, 256),
    (2, 63, 2, 2, 192, 96),
    (3, 129, 4, 4, 16, 48),
    (1, 2048, 2, 2, 96, 192),
    (2, 257, 4, 4, 12, 24),  # `make smoke` / the small model test's dims: K, V fill no block
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_chunk_bf16(shape):
    B, T, H, HV, K, V = shape
    run_and_compare(*make_inputs(B, T, H, HV, K, V, torch.bfloat16, seed=sum(shape)))


@pytest.mark.parametrize(
    "g_range,beta_range",
    [((-20.0, -5.0), (0.0, 2.0)), ((0.0, 0.0), (0.0, 2.0)), ((-1.0, 0.0), (0.0, 1e-3)), ((-1.0, 0.0), (1.99, 2.0)),
     ((-20.0, 0.0), (0.0, 2.0))],
    ids=["strong-decay", "g0", "beta0", "beta2", "mixed"],
)  # fmt: skip
def test_chunk_bf16_extremes(g_range, beta_range, seed=7):
    """Kernel precision at the edges. q and k are L2-normalised (and rounded to bf16) before the call, so the
    reference sees the same normalised inputs: with g = 0 (no decay over 1100 tokens) rounding the normalised q, k
    to bf16 alone moves o by ~3.9e-3 (CPU emulation, bench/KERNELS.md), most of the budget, and it is an input
    rounding that fla's in-kernel L2 norm makes too. The other tests keep use_qk_l2norm=True."""
    q, k, v, g, beta, s0 = make_inputs(1, 1100, 2, 2, 96, 192, torch.bfloat16, g_range, beta_range, seed=seed)
    q, k = F.normalize(q.float(), dim=-1, eps=1e-3).to(q.dtype), F.normalize(k.float(), dim=-1, eps=1e-3).to(k.dtype)
    run_and_compare(q, k, v, g, beta, s0, use_qk_l2norm=False)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_chunk_bf16_g0_more_draws(seed):
    """g = 0 is where the state-product roundings (MEGATRON_HYBRID_GDN_STATE_DOTS) show: more draws than one."""
    test_chunk_bf16_extremes((0.0, 0.0), (0.0, 2.0), seed=seed)


def test_chunk_bf16_varlen():
    lens = [1, 63, 64, 65, 700, 2000, 5]
    cu = torch.tensor([0] + list(torch.tensor(lens).cumsum(0)), dtype=torch.int32, device="cuda")
    T = sum(lens)
    run_and_compare(*make_inputs(1, T, 2, 2, 96, 192, torch.bfloat16, N=len(lens), seed=3), cu_seqlens=cu)


@pytest.mark.parametrize(
    "segments,varlen", [("4", False), ("3", True), ("7", False)], ids=["S4", "S3-varlen", "S7"]
)  # fmt: skip
def test_chunk_bf16_split_state(monkeypatch, segments, varlen):
    """The sequence-split state passes (MEGATRON_HYBRID_GDN_SPLIT_STATE=1, S forced), bf16 against fp64 like the
    others. Weak decay (g in (-0.05, 0)): with g in (-1, 0) a segment's start state is forgotten within one chunk and
    a wrong transition operator would not show."""
    from megatron_hybrid.ops.gated_delta_rule import chunk as C

    monkeypatch.setenv("MEGATRON_HYBRID_GDN_SPLIT_STATE", "1")
    monkeypatch.setenv("MEGATRON_HYBRID_GDN_SPLIT_SEGMENTS", segments)
    calls = []
    for name in ("chunk_fwd_h_split", "chunk_bwd_dh_split"):
        fn = getattr(C, name)
        monkeypatch.setattr(C, name, lambda *a, _fn=fn, _n=name: calls.append(_n) or _fn(*a))
    if varlen:
        lens = [1, 63, 64, 65, 700, 2000, 5]
        cu = torch.tensor([0] + list(torch.tensor(lens).cumsum(0)), dtype=torch.int32, device="cuda")
        xs = make_inputs(1, sum(lens), 2, 2, 96, 192, torch.bfloat16, (-0.05, 0.0), N=len(lens), seed=3)
    else:
        cu = None
        xs = make_inputs(1, 4096, 3, 3, 96, 192, torch.bfloat16, (-0.05, 0.0), seed=int(segments))
    errs = run_and_compare(*xs, cu_seqlens=cu)
    assert calls == ["chunk_fwd_h_split", "chunk_bwd_dh_split"], calls
    print("split", segments, {n: f"{e:.2e}" for n, e in errs.items()})


@pytest.mark.parametrize("case", ["T8192", "varlen", "g0"])
def test_chunk_bf16_kept_qk(monkeypatch, case):
    """The reverse pass forming dv2's intra-chunk part from the forward's kept q k^T * D (MEGATRON_HYBRID_GDN_KEEP_QK=1;
    "auto" takes that path only for many heads, e.g. the Olmo shape's 30, which these tests do not reach)."""
    monkeypatch.setenv("MEGATRON_HYBRID_GDN_KEEP_QK", "1")
    if case == "varlen":
        lens = [1, 63, 64, 65, 700, 2000, 5]
        cu = torch.tensor([0] + list(torch.tensor(lens).cumsum(0)), dtype=torch.int32, device="cuda")
        run_and_compare(*make_inputs(1, sum(lens), 2, 2, 96, 192, torch.bfloat16, N=len(lens), seed=3), cu_seqlens=cu)
    elif case == "g0":
        test_chunk_bf16_extremes((0.0, 0.0), (0.0, 2.0), seed=2)
    else:
        run_and_compare(*make_inputs(1, 8192, 2, 2, 96, 192, torch.bfloat16, seed=8203))


def test_chunk_fp16_and_fp32():
    for dtype in (torch.float16, torch.float32):
        run_and_compare(*make_inputs(1, 500, 2, 2, 96, 192, dtype, seed=5))


def test_fused_recurrent_matches_chunk():
    from megatron_hybrid.ops import chunk_gated_delta_rule, fused_recurrent_gated_delta_rule

    q, k, v, g, beta, s0 = make_inputs(2, 100, 2, 4, 96, 192, torch.bfloat16, seed=11)
    o1, s1 = fused_recurrent_gated_delta_rule(q, k, v, g, beta, initial_state=s0, output_final_state=True,
                                              use_qk_l2norm=True)  # fmt: skip
    o2, s2 = chunk_gated_delta_rule(q, k, v, g, beta, initial_state=s0, output_final_state=True, use_qk_l2norm=True)
    assert rel_rms(o1, o2) < 5e-3 and rel_rms(s1, s2) < 5e-3


def _check_op(f, ref, xs, tol=1e-2):
    a = [x.clone().requires_grad_(x.is_floating_point()) for x in xs]
    r = [x.detach().double().clone().requires_grad_(x.is_floating_point()) for x in xs]
    ya, yr = f(*a), ref(*r)
    ya = ya if isinstance(ya, tuple) else (ya,)
    yr = yr if isinstance(yr, tuple) else (yr,)
    ds = [torch.randn_like(y.float()) for y in ya]
    sum((y.float() * d).sum() for y, d in zip(ya, ds)).backward()
    sum((y.double() * d.double()).sum() for y, d in zip(yr, ds)).backward()
    for y1, y2 in zip(ya, yr):
        assert rel_rms(y1, y2) < tol
    for p1, p2 in zip(a, r):
        if p1.requires_grad:
            assert rel_rms(p1.grad, p2.grad) < tol


def test_small_ops_bf16():
    from megatron_hybrid.ops import causal_conv1d, gated_rms_norm, gdn_gates, l2norm
    from megatron_hybrid.ops.conv1d import causal_conv1d_torch
    from megatron_hybrid.ops.gates import gdn_gates_torch
    from megatron_hybrid.ops.norms import gated_rms_norm_torch, l2norm_torch

    dev, bf = "cuda", torch.bfloat16
    x = torch.randn(2, 1000, 4, 96, device=dev, dtype=bf)
    _check_op(l2norm, l2norm_torch, [x])
    x, gt = torch.randn(2, 1000, 4, 192, device=dev, dtype=bf), torch.randn(2, 1000, 4, 192, device=dev, dtype=bf)
    w = torch.randn(192, device=dev, dtype=bf)
    _check_op(gated_rms_norm, gated_rms_norm_torch, [x, gt, w])
    a, b = torch.randn(2, 1000, 30, device=dev, dtype=bf) * 3, torch.randn(2, 1000, 30, device=dev, dtype=bf)
    A_log, dt = torch.rand(30, device=dev).log(), torch.randn(30, device=dev)
    _check_op(gdn_gates, gdn_gates_torch, [a, b, A_log, dt])
    x, w = torch.randn(2, 3000, 1152, device=dev, dtype=bf), torch.randn(1152, 4, device=dev, dtype=bf) * 0.5
    _check_op(lambda x, w: causal_conv1d(x, w)[0], lambda x, w: causal_conv1d_torch(x, w, True), [x, w])
    xs, ws = torch.randn(2, 257, 192, device=dev, dtype=bf), torch.randn(192, 4, device=dev, dtype=bf) * 0.5
    _check_op(lambda x, w: causal_conv1d(x, w)[0], lambda x, w: causal_conv1d_torch(x, w, True), [xs, ws])
    cu = torch.tensor([0, 5, 2000, 6000], dtype=torch.int32, device=dev)
    x1 = x.reshape(1, 6000, 1152)
    _check_op(lambda x, w: causal_conv1d(x, w, cu_seqlens=cu)[0],
              lambda x, w: causal_conv1d_torch(x, w, True, cu), [x1, w])  # fmt: skip
    # the gated norm matches transformers' module exactly in bf16
    ref = gated_rms_norm_torch(x[:, :10, :192], x[:, 10:20, :192], w[:192, 0])
    out = gated_rms_norm(x[:, :10, :192].contiguous(), x[:, 10:20, :192].contiguous(), w[:192, 0].contiguous())
    assert (out.float() - ref.float()).abs().max().item() <= 1e-2 * ref.float().abs().max().item()


def test_swiglu_bf16():
    from megatron_hybrid.ops import swiglu
    from megatron_hybrid.ops.swiglu import swiglu_torch

    y = torch.randn(2, 1000, 2 * 11008, device="cuda", dtype=torch.bfloat16) * 3
    _check_op(swiglu, swiglu_torch, [y])
    out, ref = swiglu(y), swiglu_torch(y)  # the torch ops' roundings: silu rounded, then the product
    assert ((out.float() - ref.float()).abs() <= ref.float().abs() * 2**-7 + 1e-6).all()


def _mixer_inputs(B, T, dims, gen):
    """The fused mixer's inputs in bf16 (g fp32): the projection as the layer holds it (an [s, b, .] tensor seen as
    [b, s, .]), conv taps, log decay in (-1, 0], beta, the out-norm weight; drawn from ``gen``, which the caller goes
    on drawing from."""
    H, HV, K, V = dims
    width = 2 * H * K + 2 * HV * V
    projected = torch.randn(T, B, width, device="cuda", generator=gen).to(torch.bfloat16).transpose(0, 1)
    conv_w = (0.5 * torch.randn(2 * H * K + HV * V, 4, device="cuda", generator=gen)).to(torch.bfloat16)
    g = -torch.rand(B, T, HV, device="cuda", generator=gen)
    beta = torch.rand(B, T, HV, device="cuda", generator=gen).to(torch.bfloat16)
    norm_w = (1 + 0.1 * torch.randn(V, device="cuda", generator=gen)).to(torch.bfloat16)
    return projected, conv_w, g, beta, norm_w


@pytest.mark.parametrize(
    "B,T,dims", [(1, 2048, (15, 15, 96, 192)), (2, 257, (4, 8, 12, 24))], ids=["olmo-tp2", "small"]
)
def test_gdn_mixer_fused_equals_composed_bf16(B, T, dims):
    """The fused mixer Function (q, k, v recomputed in the backward, gradients written in place) gives what the
    separate ops composed by autograd give. Not bit for bit: the composed op L2-normalises q and k inside its solve
    and output kernels, the mixer with the L2-norm kernel (it recomputes q and k in its backward); the two sum the
    squares in another order, so a few normalised elements round to the neighbouring bf16 value (one ulp: 3.9e-3).
    Measured on the H100 (2026-11-28, bench/results/gpu_check/session18/callC, one config per kernel and autotuned
    alike): here out 1.4e-5 and at most 1.3e-4 (conv_w); at T=8192 at most 5.8e-4 (norm_w); 0 at the small shape. The
    bound, 1e-3, is a quarter of an ulp. A race, small as the wy backward's was, shows as two fused runs that are not
    bit-identical (they were at every shape)."""
    from megatron_hybrid.ops import gdn_mixer

    H, HV, K, V = dims
    gen = torch.Generator(device="cuda").manual_seed(0)
    projected, conv_w, g, beta, norm_w = _mixer_inputs(B, T, dims, gen)
    dy = torch.randn(B, T, HV * V, device="cuda", generator=gen).to(torch.bfloat16)
    results = []
    for fused in (True, True, False):
        leaves = [x.detach().clone().requires_grad_() for x in (projected, conv_w, g, beta, norm_w)]
        out = gdn_mixer(*leaves, dims, scale=K**-0.5, norm_eps=1e-5, fused=fused)
        out.backward(dy)
        results.append([out.detach()] + [x.grad for x in leaves])
    names = ("out", "projected", "conv_w", "g", "beta", "norm_w")
    for name, fused, fused_again in zip(names, results[0], results[1]):
        assert torch.equal(fused, fused_again), (name, rel_rms(fused_again, fused))
    diffs = {name: rel_rms(fused, composed) for name, fused, composed in zip(names, results[0], results[2])}
    assert max(diffs.values()) <= 1e-3, diffs


def test_remembered_kernel_launches_equal_tritons_launches():
    """ops/launch.py: the op and the fused mixer, forward and backward, once with every kernel launched through
    Triton's own path (caches emptied) and once more through the remembered kernels: bit-identical (the kernels are
    deterministic run to run: bench/gdn_determinism.py)."""
    from megatron_hybrid.ops import chunk_gated_delta_rule, gdn_mixer, launch

    if not launch.fast_launch_enabled():
        pytest.skip("MEGATRON_HYBRID_FAST_LAUNCH=0")
    dims = (15, 15, 96, 192)
    gen = torch.Generator(device="cuda").manual_seed(0)
    projected, conv_w, g, beta, norm_w = _mixer_inputs(1, 1000, dims, gen)
    dy = torch.randn(1, 1000, 15 * 192, device="cuda", generator=gen).to(torch.bfloat16)
    q, k, v, g2, beta2, s0 = make_inputs(1, 1000, 4, 8, 96, 192, torch.bfloat16)
    do = torch.randn_like(v)

    def both():
        leaves = [x.detach().clone().requires_grad_() for x in (projected, conv_w, g, beta, norm_w)]
        out = gdn_mixer(*leaves, dims, scale=96**-0.5, norm_eps=1e-5)
        out.backward(dy)
        xs = [x.detach().clone().requires_grad_() for x in (q, k, v, g2, beta2, s0)]
        o, ht = chunk_gated_delta_rule(*xs[:5], initial_state=xs[5], output_final_state=True, use_qk_l2norm=True)
        (o.float() * do.float()).sum().add(ht.sum()).backward()
        return [out, o, ht] + [x.grad for x in leaves + xs]

    launch.forget_kernels()
    first = both()
    assert launch.remembered_kernels() >= 10
    second = both()
    for i, (a, b) in enumerate(zip(first, second)):
        assert torch.equal(a, b), (i, rel_rms(a, b))


def test_gdn_mixer_recomputed_wy_bf16(monkeypatch):
    """MEGATRON_HYBRID_GDN_RECOMPUTE_WY=1 solves for the WY inverse again in the backward: the same kernel on the same
    values, so outputs and gradients are bit-identical to keeping it (autotuned, see ``assert_same_values``)."""
    from megatron_hybrid.ops import gdn_mixer

    B, T, dims = 1, 2048, (15, 15, 96, 192)
    H, HV, K, V = dims
    gen = torch.Generator(device="cuda").manual_seed(2)
    projected, conv_w, g, beta, norm_w = _mixer_inputs(B, T, dims, gen)
    dy = torch.randn(B, T, HV * V, device="cuda", generator=gen).to(torch.bfloat16)
    results = []
    for knob in ("0", "1"):
        monkeypatch.setenv("MEGATRON_HYBRID_GDN_RECOMPUTE_WY", knob)
        leaves = [x.detach().clone().requires_grad_() for x in (projected, conv_w, g, beta, norm_w)]
        out = gdn_mixer(*leaves, dims, scale=K**-0.5, norm_eps=1e-5)
        out.backward(dy)
        results.append([out.detach()] + [x.grad for x in leaves])
    for name, a, b in zip(("out", "projected", "conv_w", "g", "beta", "norm_w"), *results):
        assert_same_values(name, a, b)


@pytest.mark.parametrize(
    "B,T,dims", [(1, 2048, (15, 15, 96, 192)), (2, 257, (4, 8, 12, 24))], ids=["olmo-tp2", "small"]
)
def test_gdn_mixer_out_projection_bf16(B, T, dims):
    """The output projection's GEMM inside the fused Function (y recomputed in the backward by the gated norm's
    kernel) against the fused mixer followed by the same matmul under autograd (which keeps y): the same output;
    gradients equal up to the GEMMs' accumulation order (autograd forms the weight gradient as (y^T dout)^T)."""
    from megatron_hybrid.ops import gdn_mixer

    H, HV, K, V = dims
    gen = torch.Generator(device="cuda").manual_seed(1)
    d = 512
    projected, conv_w, g, beta, norm_w = _mixer_inputs(B, T, dims, gen)
    out_w = (torch.randn(d, HV * V, device="cuda", generator=gen) / (HV * V) ** 0.5).to(torch.bfloat16)
    dout = torch.randn(B, T, d, device="cuda", generator=gen).to(torch.bfloat16)
    results = []
    for inside in (True, False):
        leaves = [x.detach().clone().requires_grad_() for x in (projected, conv_w, g, beta, norm_w, out_w)]
        mixer_in, w = leaves[:5], leaves[5]
        if inside:
            out = gdn_mixer(*mixer_in, dims, scale=K**-0.5, norm_eps=1e-5, out_weight=w)
        else:
            out = torch.matmul(gdn_mixer(*mixer_in, dims, scale=K**-0.5, norm_eps=1e-5), w.t())
        out.backward(dout)
        results.append([out.detach()] + [x.grad for x in leaves])
    assert torch.equal(results[0][0], results[1][0])
    for name, a, b in zip(("projected", "conv_w", "g", "beta", "norm_w", "out_w"), results[0][1:], results[1][1:]):
        assert rel_rms(a, b) <= 2e-3, (name, rel_rms(a, b))


def test_rms_norm_bf16():
    """The fused RMSNorm (the block and QK norms) against fp64, and against the torch ops it replaces in bf16."""
    from megatron_hybrid.ops import rms_norm
    from megatron_hybrid.ops.norms import rms_norm_torch

    x = torch.randn(2, 1000, 3840, device="cuda", dtype=torch.bfloat16) * 3
    w = (1 + 0.1 * torch.randn(3840, device="cuda")).to(torch.bfloat16)
    _check_op(rms_norm, rms_norm_torch, [x, w])
    out, ref = rms_norm(x, w), rms_norm_torch(x, w)
    # one bf16 ulp at most (the fp32 row sum is reduced in another order)
    assert ((out.float() - ref.float()).abs() <= ref.float().abs() * 2**-7 + 1e-6).all()


def test_long_t_olmo_dims_large_heads():
    """T=8192 with the Olmo head dims and 8 heads, no initial state, l2norm off (q, k normalised by hand)."""
    q, k, v, g, beta, _ = make_inputs(1, 8192, 8, 8, 96, 192, torch.bfloat16, h0=False, seed=13)
    q, k = F.normalize(q.float(), dim=-1).to(q.dtype), F.normalize(k.float(), dim=-1).to(k.dtype)
    run_and_compare(q, k, v, g, beta, None, use_qk_l2norm=False)


def _g0_inputs(T=1100):
    q, k, v, g, beta, s0 = make_inputs(1, T, 2, 2, 96, 192, torch.bfloat16, (0.0, 0.0), (0.0, 2.0), seed=7)
    q, k = F.normalize(q.float(), dim=-1, eps=1e-3).to(q.dtype), F.normalize(k.float(), dim=-1, eps=1e-3).to(k.dtype)
    return q, k, v, g, beta, s0


@pytest.mark.parametrize("case", ["g0-2heads", "olmo-tp2"])
def test_backward_deterministic(case):
    """Three forward+backward runs give bit-identical outputs and gradients (no race). Few heads did not show the
    race of the pipelined wy backward (dbeta, dg); the Olmo TP=2 slice (15 heads, T=2048) did."""
    from megatron_hybrid.ops import chunk_gated_delta_rule

    if case == "g0-2heads":
        xs = _g0_inputs()
    else:
        xs = make_inputs(1, 2048, 15, 15, 96, 192, torch.bfloat16, seed=5)
        xs = [F.normalize(x.float(), dim=-1).to(x.dtype) if i < 2 else x for i, x in enumerate(xs)]
    B, T, HV, V = xs[2].shape
    do = torch.randn(B, T, HV, V, device="cuda", generator=torch.Generator(device="cuda").manual_seed(1))
    runs = []
    for _ in range(3):
        ours = [x.clone().requires_grad_() for x in xs]
        o, st = chunk_gated_delta_rule(*ours[:5], initial_state=ours[5], output_final_state=True)
        ((o.float() * do).sum() + st.sum()).backward()
        runs.append([o, st] + [x.grad for x in ours])
    names = ["o", "state", "dq", "dk", "dv", "dg", "dbeta", "dh0"]
    diff = {n: [(r[i] - runs[0][i]).abs().max().item() for r in runs[1:]] for i, n in enumerate(names)}
    assert all(max(d) == 0 for d in diff.values()), f"non-deterministic: {diff}"


def test_g0_stage_errors():
    """Each per-chunk backward kernel against fp64 on its OWN inputs (tests/ops/interpret/gdn_stage_ref.py), on the
    g = 0 inputs: isolates a kernel's own error from the bf16 roundings upstream of it. The CPU model of the GPU
    roundings (tests/ops/interpret/emulate_gpu.py) gives dqk: dq 2.2e-3, dk_part 1.7e-3, dw 1.7e-3, dG 1e-7;
    wy_bwd: dk 2.0e-3, dv 1.7e-3, dbeta 8e-4, dg 5e-4. An error far above these is a GPU-only defect of that kernel."""
    from megatron_hybrid.ops.gated_delta_rule import chunk as C

    from .interpret.gdn_stage_ref import dqk_ref, wy_bwd_ref

    q, k, v, g, beta, s0 = _g0_inputs()
    B, T, H, K = q.shape
    scale = K**-0.5
    meta = C._meta(B, T, None)
    gen = torch.Generator(device="cuda").manual_seed(1)
    do = torch.randn(v.shape, device="cuda", generator=gen).to(v.dtype)
    dht = torch.randn(s0.shape, device="cuda", generator=gen)
    gcum, Ai, w, u = C.chunk_wy_fwd(k, v, g, beta, meta)
    h, v_new, _ = C.chunk_fwd_h(k, w, u, gcum, s0, False, meta)
    dv2, dh, _ = C.chunk_bwd_dh(q, k, w, gcum, do, dht, s0, scale, meta)
    dq, dk_part, dw, dgp = C.chunk_bwd_dqk(q, k, gcum, h, dh, v_new, dv2, do, scale, meta)
    errs = {}
    ref = dqk_ref(q, k, gcum, h, dh, v_new, dv2, do, scale)
    for n, a, r in zip(["dq", "dk_part", "dw", "dG"], [dq, dk_part, dw, dgp.sum(0)], ref):
        errs["dqk." + n] = rel_rms(a, r)
    out = C.chunk_wy_bwd(k, v, beta, gcum, Ai, dw, dv2, dk_part, dgp, meta)
    ref = wy_bwd_ref(k, v, beta, gcum, Ai, dw, dv2, dk_part, dgp)
    for n, a, r in zip(["dk", "dv", "dbeta", "dg"], out, ref):
        errs["wy_bwd." + n] = rel_rms(a, r)
    print("stage errors:", {n: f"{e:.2e}" for n, e in errs.items()})
    assert all(e < 5e-3 for e in errs.values()), f"a kernel is off on its own inputs: {errs}"
