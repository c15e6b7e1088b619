"""Per-kernel timing of the chunked gated delta rule (GPU): where the forward and backward time goes.

python bench/gdn_breakdown.py [--shape olmo] [--out DIR]
"""

# ruff: noqa: B023  (the timed lambdas run inside the loop iteration that defines them)
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import triton

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import report  # noqa: E402
from gdn_kernels import SHAPES, chosen_configs, make  # noqa: E402

from megatron_hybrid.ops.gated_delta_rule import chunk as C  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule.chunk_bwd import chunk_bwd_dv_local  # noqa: E402
from megatron_hybrid.ops.norms import l2norm  # noqa: E402


def stage_inputs(name: str):
    """Every stage's inputs at a shape of bench/gdn_kernels.py, from one forward and backward of the kernels:
    (q, k, v, g, beta, do, scale, meta, gcum, Ai, w, u, h, v_new, dv2, dh, dk_part, dw, dgp)."""
    B, T, H, K, V, lens = SHAPES[name]
    q, k, v, g, beta, cu = make(B, T, H, K, V, lens)
    q, k = l2norm(q), l2norm(k)
    do = torch.randn_like(v)
    scale = K**-0.5
    meta = C._meta(B, T, cu)
    gcum, Ai, w, u = C.chunk_wy_fwd(k, v, g, beta, meta)
    h, v_new, _ = C.chunk_fwd_h(k, w, u, gcum, None, False, meta)
    dv2, dh, _ = C.chunk_bwd_dh(q, k, w, gcum, do, None, None, scale, meta)
    _, dk_part, dw, dgp = C.chunk_bwd_dqk(q, k, gcum, h, dh, v_new, dv2, do, scale, meta)
    return q, k, v, g, beta, do, scale, meta, gcum, Ai, w, u, h, v_new, dv2, dh, dk_part, dw, dgp


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="olmo,olmo_tp2", help="comma-separated shape names from bench/gdn_kernels.py")
    ap.add_argument("--out", default=None, help="folder for gdn_breakdown.json (optional)")
    args = ap.parse_args()
    report.warm_up_gpu()
    result = {}
    for name in args.shapes.split(","):
        q, k, v, g, beta, do, scale, meta, gcum, Ai, w, u, h, v_new, dv2, dh, dk_part, dw, dgp = stage_inputs(name)
        stages = {
            "wy_fwd (cumsum+solve+w,u)": lambda: C.chunk_wy_fwd(k, v, g, beta, meta),
            "fwd_h (h, v_new)": lambda: C.chunk_fwd_h(k, w, u, gcum, None, False, meta),
            "fwd_o": lambda: C.chunk_fwd_o(q, k, v_new, h, gcum, scale, meta),
            "wy_recompute (w,u)": lambda: C.chunk_wy_fwd(k, v, None, beta, meta, gcum=gcum, Ai=Ai),
            "wy_recompute (w; kept states)": lambda: C.chunk_wy_fwd(
                k, v, None, beta, meta, gcum=gcum, Ai=Ai, need_u=False
            ),
            "bwd_dv_local (parallel)": lambda: chunk_bwd_dv_local(q, k, gcum, do, scale, meta),
            "bwd_dh (dv local + state pass)": lambda: C.chunk_bwd_dh(q, k, w, gcum, do, None, None, scale, meta),
            "bwd_dqk": lambda: C.chunk_bwd_dqk(q, k, gcum, h, dh, v_new, dv2, do, scale, meta),
            "wy_bwd": lambda: C.chunk_wy_bwd(k, v, beta, gcum, Ai, dw, dv2, dk_part, dgp, meta),
            "l2norm q fwd": lambda: l2norm(q),
        }
        res = {}
        for s, fn in stages.items():
            fn()
            res[s] = triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")
            print(f"{name:10s} {s:36s} {res[s]:.3f} ms", flush=True)
        for kernel_name, config in chosen_configs().items():
            print(f"{name:10s} {kernel_name:36s} best config: {config}")
        result[name] = res
    if args.out:
        with open(os.path.join(args.out, "gdn_breakdown.json"), "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
