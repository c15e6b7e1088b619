"""The reverse pass with the kept q k^T * D (LOCAL_A) and fed by dv_local, and fwd_o keeping it or not, autotuned,
for the package of the tree in the working directory: do_bench and CUDA-graph medians; one JSON line. With
SAVE=path the kept-path outputs are saved for a cross-tree bitwise comparison."""

# ruff: noqa: B023
import json
import os
import sys

import torch
import triton

sys.path.insert(0, "bench")
from gdn_breakdown import stage_inputs  # noqa: E402

import megatron_hybrid  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule import chunk as C  # noqa: E402

out = {"package": megatron_hybrid.__file__}
saved = {}
for name in ("olmo", "olmo_tp2"):
    q, k, v, g, beta, do, scale, meta, gcum, Ai, w, u, h, v_new, dv2, dh, dk_part, dw, dgp = stage_inputs(name)
    _, Aqk = C.chunk_fwd_o(q, k, v_new, h, gcum, scale, meta, keep_qk=True)
    stages = {
        "bwd_dh kept": lambda: C.chunk_bwd_dh(q, k, w, gcum, do, None, None, scale, meta, Aqk=Aqk)[:2],
        "bwd_dh dvl": lambda: C.chunk_bwd_dh(q, k, w, gcum, do, None, None, scale, meta)[:2],
        "fwd_o keep": lambda: C.chunk_fwd_o(q, k, v_new, h, gcum, scale, meta, keep_qk=True),
        "fwd_o": lambda: C.chunk_fwd_o(q, k, v_new, h, gcum, scale, meta),
    }
    for stage, fn in stages.items():
        res = fn()
        res2 = fn()
        out[f"{name} {stage} repeat equal"] = all(torch.equal(a, b) for a, b in zip(res, res2) if a is not None)
        out[f"{name} {stage} ms"] = round(triton.testing.do_bench(fn, return_mode="median"), 4)
        out[f"{name} {stage} graph ms"] = round(triton.testing.do_bench_cudagraph(fn, return_mode="median"), 4)
        if stage == "bwd_dh kept":
            saved[name] = [t.cpu() for t in res]
            ref = stages["bwd_dh dvl"]()
            out[f"{name} kept vs dvl rel"] = [
                float((a.float() - b.float()).norm() / b.float().norm()) for a, b in zip(res, ref)
            ]
if os.environ.get("SAVE"):
    torch.save(saved, os.environ["SAVE"])
print(json.dumps(out), flush=True)
