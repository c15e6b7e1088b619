"""Relative RMS errors of the op (bf16) against the fp64 torch reference on the GPU tests' edge cases, for the package
of the tree in the working directory (MEGATRON_HYBRID_AUTOTUNE as set); one JSON line. Cases as
tests/ops/test_gdn_gpu.py builds them (extremes: q, k normalised before the call; l2norm cases: in the op)."""

# ruff: noqa: I001  (the test module sets MEGATRON_HYBRID_AUTOTUNE before the ops are imported)
import json
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, ".")
from tests.ops.test_gdn_gpu import make_inputs, rel_rms  # noqa: E402

from megatron_hybrid.ops import chunk_gated_delta_rule, torch_chunk_gated_delta_rule  # noqa: E402


def errs(q, k, v, g, beta, s0, l2):
    xs = [q, k, v, g, beta, s0]
    ours = [x.clone().requires_grad_() for x in xs]
    refs = [x.detach().double().clone().requires_grad_() for x in xs]
    o, st = chunk_gated_delta_rule(*ours[:5], initial_state=ours[5], output_final_state=True, use_qk_l2norm=l2)
    o_r, st_r = torch_chunk_gated_delta_rule(*refs[:5], initial_state=refs[5], output_final_state=True,
                                             use_qk_l2norm=l2)  # fmt: skip
    gen = torch.Generator(device=o.device).manual_seed(1234)
    do = torch.randn(o.shape, device=o.device, generator=gen).to(o.dtype)
    dst = torch.randn(st.shape, device=st.device, generator=gen).to(st.dtype)
    ((o.float() * do.float()).sum() + (st * dst).sum()).backward()
    ((o_r * do.double()).sum() + (st_r * dst.double()).sum()).backward()
    e = {"o": rel_rms(o, o_r), "state": rel_rms(st, st_r)}
    for n, a, r in zip(["dq", "dk", "dv", "dg", "dbeta", "dh0"], ours, refs):
        e[n] = rel_rms(a.grad, r.grad)
    return {n: float(f"{x:.3e}") for n, x in e.items()}


out = {}
cases = {"g0": ((0.0, 0.0), (0.0, 2.0)), "beta2": ((-1.0, 0.0), (1.99, 2.0)), "mixed": ((-20.0, 0.0), (0.0, 2.0)),
         "strong": ((-20.0, -5.0), (0.0, 2.0))}  # fmt: skip
for name, (gr, br) in cases.items():
    for seed in (1, 2, 3, 4, 7) if name == "g0" else (7,):
        q, k, v, g, beta, s0 = make_inputs(1, 1100, 2, 2, 96, 192, torch.bfloat16, gr, br, seed=seed)
        qn = F.normalize(q.float(), dim=-1, eps=1e-3).to(q.dtype)
        kn = F.normalize(k.float(), dim=-1, eps=1e-3).to(k.dtype)
        out[f"{name} s{seed}"] = errs(qn, kn, v, g, beta, s0, False)
for seed in (1, 2):  # the L2 norm in the op (k's backward folded into the wy backward in the new tree)
    out[f"g0 l2 s{seed}"] = errs(*make_inputs(1, 1100, 2, 2, 96, 192, torch.bfloat16, (0.0, 0.0), seed=seed), True)
out["T8192 l2"] = errs(*make_inputs(1, 8192, 2, 2, 96, 192, torch.bfloat16, seed=8203), True)
worst = {}
for e in out.values():
    for n, x in e.items():
        worst[n] = max(worst.get(n, 0.0), x)
out["worst"] = worst
print(json.dumps(out))
