"""The backward stages this session changes, and the op, autotuned, for the package of the tree in the working
directory: bwd_dh (dv_local + reverse pass), the wy backward with k's L2-norm backward (base: wy_bwd then
l2norm_bwd of k; new: folded), the L2-norm backward left for q (base: q and k), op fwd+bwd and its peak extra memory.
One JSON line; with SAVE=path the op's input gradients at both shapes are saved for a cross-tree comparison."""

# ruff: noqa: B023
import inspect
import json
import os
import sys

import torch
import triton

sys.path.insert(0, "bench")
from gdn_breakdown import stage_inputs  # noqa: E402

import megatron_hybrid  # noqa: E402
from megatron_hybrid.ops import chunk_gated_delta_rule  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule import chunk as C  # noqa: E402
from megatron_hybrid.ops.norms import l2norm_bwd, l2norm_fwd  # noqa: E402

new = "k_rstd" in inspect.signature(C.chunk_wy_bwd).parameters
out = {"package": megatron_hybrid.__file__, "folded": new}
saved = {}
for name in ("olmo", "olmo_tp2"):
    q, k, v, g, beta, do, scale, meta, gcum, Ai, w, u, h, v_new, dv2, dh, dk_part, dw, dgp = stage_inputs(name)
    K = k.shape[-1]
    _, _, rstd = l2norm_fwd(q.view(-1, K), k.view(-1, K), eps=1e-6)
    dq = torch.randn_like(q)

    def wyk():
        if new:
            return C.chunk_wy_bwd(k, v, beta, gcum, Ai, dw, dv2, dk_part, dgp, meta, k_rstd=rstd[1])
        dk, dv, db, dg_ = C.chunk_wy_bwd(k, v, beta, gcum, Ai, dw, dv2, dk_part, dgp, meta)
        return (l2norm_bwd((k.view(-1, K),), rstd[1:], (dk.view(-1, K),))[0], dv, db, dg_)

    def l2q():
        if new:
            return l2norm_bwd((q.view(-1, K),), rstd[:1], (dq.view(-1, K),))
        return l2norm_bwd((q.view(-1, K), k.view(-1, K)), rstd, (dq.view(-1, K), dq.view(-1, K)))

    stages = {
        "bwd_dh": lambda: C.chunk_bwd_dh(q, k, w, gcum, do, None, None, scale, meta)[:2],
        "wy_bwd+knorm": wyk,
        "l2norm_bwd rest": l2q,
    }
    for stage, fn in stages.items():
        res = fn()
        out[f"{name} {stage} ms"] = round(triton.testing.do_bench(fn), 4)
        out[f"{name} {stage} sums"] = [float(t.double().abs().sum()) for t in res if t is not None]
    xs = [x.detach().clone().requires_grad_() for x in (q, k, v, g, beta)]

    def step():
        chunk_gated_delta_rule(*xs, use_qk_l2norm=True)[0].backward(do)

    step()
    saved[name] = [x.grad.clone() for x in xs]
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    for x in xs:
        x.grad = None
    step()
    torch.cuda.synchronize()
    out[f"{name} op peak MiB"] = round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)
    out[f"{name} op ms"] = round(triton.testing.do_bench(step, grad_to_none=xs, return_mode="median"), 4)
torch.cuda.synchronize()
if os.environ.get("SAVE"):
    torch.save({k_: [t.cpu() for t in v_] for k_, v_ in saved.items()}, os.environ["SAVE"])
print(json.dumps(out))
