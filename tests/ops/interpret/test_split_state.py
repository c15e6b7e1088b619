"""The sequence-split state passes (split_state.py, MEGATRON_HYBRID_GDN_SPLIT_STATE) against the one-level kernels
of chunk_h.py, fp32 under TRITON_INTERPRET=1: relative error <= 1e-5 for every output, with S forced to 2 and 3.

The decay is weak (g in (-0.05, 0), or 0) so that a segment's start state reaches the next segments: with the
usual g in (-1, 0) the state forgets within one 64-token chunk (exp(-32)) and a wrong transition operator would
pass unnoticed.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

assert os.environ.get("TRITON_INTERPRET") == "1", "run through tests/ops/test_triton_interpreter.py"

from megatron_hybrid.ops import chunk_gated_delta_rule  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule import chunk as C  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule import split_state as SS  # noqa: E402

TOL = 1e-5


def rel(a, b):
    a, b = a.double(), b.double()
    assert torch.isfinite(a).all()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def inputs(B, T, H, HV, K, V, N=None, h0=True, seed=0, g_lo=-0.05):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=gen)
    k = F.normalize(torch.randn(B, T, H, K, generator=gen), dim=-1)
    v = torch.randn(B, T, HV, V, generator=gen)
    g = g_lo * torch.rand(B, T, HV, generator=gen)
    beta = 2 * torch.rand(B, T, HV, generator=gen)
    N = B if N is None else N
    s0 = torch.randn(N, HV, K, V, generator=gen) if h0 else None
    return q, k, v, g, beta, s0


def stage_compare(q, k, v, g, beta, s0, S, cu=None, dht=True):
    """chunk_fwd_h / chunk_bwd_dh against their split versions on the same inputs."""
    B, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    meta = C._meta(B, T, cu)
    plan = SS.plan_segments(meta, HV, V, q.device, num_segments=S)
    assert plan is not None
    gen = torch.Generator().manual_seed(5)
    do = torch.randn(v.shape, generator=gen)
    dst = torch.randn(meta["N"], HV, K, V, generator=gen) if dht else None
    gcum, _, w, u = C.chunk_wy_fwd(k, v, g, beta, meta)
    ref = C.chunk_fwd_h(k, w, u, gcum, s0, True, meta)
    out = SS.chunk_fwd_h_split(k, w, u, gcum, s0, True, meta, plan)
    errs = {n: rel(a, r) for n, a, r in zip(["h", "v_new", "ht"], out, ref)}
    ref = C.chunk_bwd_dh(q, k, w, gcum, do, dst, s0, K**-0.5, meta)
    out = SS.chunk_bwd_dh_split(q, k, w, gcum, do, dst, s0, K**-0.5, meta, plan)
    errs.update({n: rel(a, r) for n, a, r in zip(["dv2", "dh", "dh0"], out, ref) if r is not None})
    assert max(errs.values()) <= TOL, errs
    return plan


@pytest.mark.parametrize("S", [2, 3])
def test_stage_fixed_length(S):
    """B = 2, T = 300 (five chunks, the last one partial), grouped values, K = 32, V = 48."""
    plan = stage_compare(*inputs(2, 300, 1, 2, 32, 48, seed=S), S=S)
    assert plan["counts"] == [S, S]


@pytest.mark.parametrize("S", [2, 3])
def test_stage_olmo_dims(S):
    """K = 96, V = 192 (three K blocks, no power of two), T = 200, no initial state, no final-state gradient."""
    stage_compare(*inputs(1, 200, 1, 1, 96, 192, h0=False, seed=10 + S), S=S, dht=False)


@pytest.mark.parametrize("S", [2, 3])
def test_stage_varlen(S):
    """Packed sequences of 1, 130, 0 (empty) and 170 tokens: 1, 3, 0 and 3 chunks; segments never cross a sequence."""
    cu = torch.tensor([0, 1, 131, 131, 301], dtype=torch.int32)
    plan = stage_compare(*inputs(1, 301, 1, 1, 32, 48, N=4, seed=20 + S), S=S, cu=cu)
    assert plan["counts"] == [1, min(S, 3), 1, min(S, 3)]


def test_stage_no_decay():
    stage_compare(*inputs(1, 200, 1, 1, 32, 32, seed=30, g_lo=0.0), S=3)


def run_op(xs, cu=None):
    ours = [x.clone().requires_grad_() if x is not None else None for x in xs]
    o, st = chunk_gated_delta_rule(*ours[:5], initial_state=ours[5], output_final_state=True, cu_seqlens=cu)
    gen = torch.Generator().manual_seed(1)
    ((o * torch.randn(o.shape, generator=gen)).sum() + (st * torch.randn(st.shape, generator=gen)).sum()).backward()
    return [o, st] + [x.grad for x in ours if x is not None]


def op_compare(monkeypatch, xs, S, cu=None, mode="1", recompute="0"):
    monkeypatch.setenv("MEGATRON_HYBRID_GDN_RECOMPUTE_H", recompute)
    monkeypatch.setenv("MEGATRON_HYBRID_GDN_SPLIT_STATE", "0")
    ref = run_op(xs, cu)
    monkeypatch.setenv("MEGATRON_HYBRID_GDN_SPLIT_STATE", mode)
    monkeypatch.setenv("MEGATRON_HYBRID_GDN_SPLIT_SEGMENTS", str(S))
    calls = []
    for name in ("chunk_fwd_h_split", "chunk_bwd_dh_split"):
        fn = getattr(C, name)
        monkeypatch.setattr(C, name, lambda *a, _fn=fn, _n=name: calls.append(_n) or _fn(*a))
    out = run_op(xs, cu)
    n_fwd = (2 if recompute == "1" else 1) if "fwd" in mode or mode == "1" else 0
    assert calls.count("chunk_fwd_h_split") == n_fwd and calls.count("chunk_bwd_dh_split") == int(mode != "fwd")
    names = ["o", "state", "dq", "dk", "dv", "dg", "dbeta", "dh0"]
    errs = {n: rel(a, r) for n, a, r in zip(names, out, ref)}
    assert max(errs.values()) <= TOL, errs
    print("split vs default:", {n: f"{e:.1e}" for n, e in errs.items()})


@pytest.mark.parametrize("S", [2, 3])
def test_op_split_equals_default(monkeypatch, S):
    """The whole op (o, final state, every gradient), T = 250, grouped values, initial state."""
    op_compare(monkeypatch, inputs(1, 250, 1, 2, 32, 48, seed=40 + S), S)


@pytest.mark.parametrize("S", [2, 3])
def test_op_split_varlen(monkeypatch, S):
    cu = torch.tensor([0, 63, 64, 260], dtype=torch.int32)
    op_compare(monkeypatch, inputs(1, 260, 1, 1, 32, 48, N=3, seed=50 + S), S, cu=cu)


def test_op_split_olmo_dims_modes(monkeypatch):
    """K = 96, V = 192; forward-only and backward-only split, and the recompute path (split forward run twice)."""
    xs = inputs(1, 140, 1, 1, 96, 192, seed=60)
    op_compare(monkeypatch, xs, 3, mode="fwd")
    op_compare(monkeypatch, xs, 2, mode="bwd", recompute="1")


def test_plan_rules(monkeypatch):
    monkeypatch.delenv("MEGATRON_HYBRID_GDN_SPLIT_SEGMENTS", raising=False)
    monkeypatch.delenv("MEGATRON_HYBRID_GDN_SPLIT_STATE", raising=False)
    assert SS.split_modes() == frozenset()
    dev = torch.device("cpu")
    # Olmo TP=2 slice: 15 heads x 6 V blocks = 90 programs -> 3 segments of 43/43/42 chunks; H = 30: not split
    plan = SS.plan_segments(C._meta(1, 8192, None), 15, 192, dev)
    assert plan["counts"] == [3] and plan["seg_info"][:, 2].tolist() == [42, 43, 43]
    assert SS.plan_segments(C._meta(1, 8192, None), 30, 192, dev) is None
    assert SS.plan_segments(C._meta(1, 8192, None), 30, 192, dev, num_segments=4)["counts"] == [4]
    # packed: each sequence cut in proportion to its length, segments inside their sequence, all chunks covered
    cu = torch.tensor([0, 3000, 3017, 8192], dtype=torch.int32)
    meta = C._meta(1, 8192, cu)
    plan = SS.plan_segments(meta, 8, 192, dev)  # 48 programs per segment: segments of 24 chunks
    info = plan["seg_info"].tolist()
    offs = meta["chunk_offsets"].tolist()
    for n in range(3):
        segs = [r for r in info if r[0] == n]
        assert segs[0][1] == 0 and segs[0][3] & 1 and segs[-1][3] & 2
        assert sum(r[2] for r in segs) == offs[n + 1] - offs[n]
        assert all(a[1] + a[2] == b[1] for a, b in zip(segs[:-1], segs[1:]))
    assert plan["counts"] == [2, 1, 4]
    monkeypatch.setenv("MEGATRON_HYBRID_GDN_SPLIT_STATE", "bwd")
    assert SS.split_modes() == frozenset({"bwd"})
