"""Time the WY forward (solve + w,u) and w,u alone for the package first on sys.path; autotuned; one JSON line.
(Archived as run in session 13, calls B and C; formatting edits only.)"""

# ruff: noqa: B023  (the timed lambdas run inside the loop iteration that defines them)

import json
import sys

import triton

sys.path.insert(0, "bench")
from gdn_kernels import SHAPES, make  # noqa: E402

import megatron_hybrid  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule import chunk as C  # noqa: E402
from megatron_hybrid.ops.norms import l2norm  # noqa: E402

out = {"package": megatron_hybrid.__file__}
for name in ("olmo", "olmo_tp2"):
    B, T, H, K, V, lens = SHAPES[name]
    q, k, v, g, beta, cu = make(B, T, H, K, V, lens)
    k = l2norm(k)
    meta = C._meta(B, T, cu)
    gcum, Ai, w, u = C.chunk_wy_fwd(k, v, g, beta, meta)
    full = triton.testing.do_bench(lambda: C.chunk_wy_fwd(k, v, g, beta, meta), warmup=25, rep=200)
    wu = triton.testing.do_bench(lambda: C.chunk_wy_fwd(k, v, None, beta, meta, gcum=gcum, Ai=Ai), warmup=25, rep=200)
    out[f"{name} wy_fwd ms"] = round(full, 4)
    out[f"{name} w,u ms"] = round(wu, 4)
    out[f"{name} T checksum"] = float(Ai.double().abs().sum())
print(json.dumps(out))
