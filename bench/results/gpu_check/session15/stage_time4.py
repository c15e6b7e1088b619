"""The solve + w/u, w/u alone, fwd_h, fwd_o, bwd_dh (with dv_local), dqk, wy_bwd and the op's fwd+bwd, autotuned,
for the package of the tree in the working directory; one JSON line with each stage's median and its outputs'
checksums."""

# ruff: noqa: B023  (the timed lambdas run inside the loop iteration that defines them)
import json
import sys

import torch
import triton

sys.path.insert(0, "bench")  # the tree in the working directory: gdn_breakdown puts its root first
from gdn_breakdown import stage_inputs  # noqa: E402

import megatron_hybrid  # noqa: E402
from megatron_hybrid.ops import chunk_gated_delta_rule  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule import chunk as C  # noqa: E402

out = {"package": megatron_hybrid.__file__}
for name in ("olmo", "olmo_tp2"):
    q, k, v, g, beta, do, scale, meta, gcum, Ai, w, u, h, v_new, dv2, dh, dk_part, dw, dgp = stage_inputs(name)
    stages = {
        "wy_fwd": lambda: C.chunk_wy_fwd(k, v, g, beta, meta),
        "wu": lambda: C.chunk_wy_fwd(k, v, None, beta, meta, gcum=gcum, Ai=Ai)[2:],
        "fwd_h": lambda: C.chunk_fwd_h(k, w, u, gcum, None, False, meta)[:2],
        "fwd_o": lambda: (C.chunk_fwd_o(q, k, v_new, h, gcum, scale, meta),),
        "bwd_dh": lambda: C.chunk_bwd_dh(q, k, w, gcum, do, None, None, scale, meta)[:2],
        "dqk": lambda: C.chunk_bwd_dqk(q, k, gcum, h, dh, v_new, dv2, do, scale, meta),
        "wy_bwd": lambda: C.chunk_wy_bwd(k, v, beta, gcum, Ai, dw, dv2, dk_part, dgp, meta),
    }
    for stage, fn in stages.items():
        res = fn()
        out[f"{name} {stage} ms"] = round(triton.testing.do_bench(fn), 4)
        out[f"{name} {stage} sums"] = [float(t.double().abs().sum()) for t in res if t is not None]
    xs = [x.detach().clone().requires_grad_() for x in (q, k, v, g, beta)]

    def step():
        chunk_gated_delta_rule(*xs, use_qk_l2norm=True)[0].backward(do)

    step()
    out[f"{name} op ms"] = round(triton.testing.do_bench(step, grad_to_none=xs, return_mode="median"), 4)
torch.cuda.synchronize()
print(json.dumps(out))
