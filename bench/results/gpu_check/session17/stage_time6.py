"""fwd_o (keeping q k^T * D or not), bwd_dh (dv_local + reverse pass, or the pass from the kept q k^T * D), and the
op's fwd+bwd and peak extra memory, autotuned, for the package of the tree in the working directory; one JSON line.
With SAVE=path the op's input gradients at both shapes are saved for a cross-tree comparison."""

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

new = "Aqk" in inspect.signature(C.chunk_bwd_dh).parameters
out = {"package": megatron_hybrid.__file__, "kept_qk": new}
saved = {}
for name in ("olmo", "olmo_tp2"):
    q, k, v, g, beta, do, scale, meta, gcum, Ai, w, u, h, v_new, dv2, dh, dk_part, dw, dgp = stage_inputs(name)
    if new:
        _, Aqk = C.chunk_fwd_o(q, k, v_new, h, gcum, scale, meta, keep_qk=True)
        stages = {
            "fwd_o": lambda: C.chunk_fwd_o(q, k, v_new, h, gcum, scale, meta, keep_qk=True),
            "bwd_dh": lambda: C.chunk_bwd_dh(q, k, w, gcum, do, None, None, scale, meta, Aqk=Aqk)[:2],
            "bwd_dh via dv_local": lambda: C.chunk_bwd_dh(q, k, w, gcum, do, None, None, scale, meta)[:2],
        }
    else:
        stages = {
            "fwd_o": lambda: (C.chunk_fwd_o(q, k, v_new, h, gcum, scale, meta),),
            "bwd_dh": lambda: C.chunk_bwd_dh(q, k, w, gcum, do, None, None, scale, meta)[:2],
        }
    for stage, fn in stages.items():
        res = fn()
        out[f"{name} {stage} ms"] = round(triton.testing.do_bench(fn), 4)
        out[f"{name} {stage} sums"] = [float(t.double().abs().sum()) for t in res if t is not None]
    xs = [x.detach().clone().requires_grad_() for x in (q, k, v, g, beta)]

    def fwd():
        return chunk_gated_delta_rule(*xs, use_qk_l2norm=True)[0]

    def step():
        fwd().backward(do)

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
    with torch.no_grad():
        out[f"{name} op fwd ms (no grad)"] = round(triton.testing.do_bench(fwd, return_mode="median"), 4)
    out[f"{name} op ms"] = round(triton.testing.do_bench(step, grad_to_none=xs, return_mode="median"), 4)
torch.cuda.synchronize()
if os.environ.get("SAVE"):
    torch.save({k_: [t.cpu() for t in v_] for k_, v_ in saved.items()}, os.environ["SAVE"])
print(json.dumps(out))
