"""dqk, wy_bwd and the op's fwd+bwd for the package of the tree in the working directory (MEGATRON_HYBRID_AUTOTUNE as
set); one JSON line of medians; with SAVE=path, dqk's outputs (dG summed over its K-block partials) and the op's
input gradients are saved there for a cross-tree comparison."""

# ruff: noqa: B023
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

out = {"package": megatron_hybrid.__file__}
saved = {}
for name in ("olmo", "olmo_tp2"):
    q, k, v, g, beta, do, scale, meta, gcum, Ai, w, u, h, v_new, dv2, dh, dk_part, dw, dgp = stage_inputs(name)

    def dqk():
        return C.chunk_bwd_dqk(q, k, gcum, h, dh, v_new, dv2, do, scale, meta)

    def wyb():
        return C.chunk_wy_bwd(k, v, beta, gcum, Ai, dw, dv2, dk_part, dgp, meta)

    r = dqk()
    saved[f"{name} dqk"] = [r[0], r[1], r[2], r[3].sum(0)]
    out[f"{name} dqk ms"] = round(triton.testing.do_bench(dqk), 4)
    out[f"{name} wy_bwd ms"] = round(triton.testing.do_bench(wyb), 4)
    xs = [x.detach().clone().requires_grad_() for x in (q, k, v, g, beta)]

    def step():
        chunk_gated_delta_rule(*xs, use_qk_l2norm=True)[0].backward(do)

    step()
    saved[f"{name} op grads"] = [x.grad.clone() for x in xs]
    out[f"{name} op ms"] = round(triton.testing.do_bench(step, grad_to_none=xs, return_mode="median"), 4)
torch.cuda.synchronize()
from megatron_hybrid.ops.gated_delta_rule import chunk_bwd, wy  # noqa: E402

for kname, tuner in (("dqk", chunk_bwd.chunk_bwd_dqk_kernel), ("wy_bwd", wy.chunk_wy_bwd_kernel)):
    out[f"{kname} tuned"] = sorted({str(c) for c in getattr(tuner, "cache", {}).values()})
if os.environ.get("SAVE"):
    torch.save({k: [t.cpu() for t in v] for k, v in saved.items()}, os.environ["SAVE"])
print(json.dumps(out))
