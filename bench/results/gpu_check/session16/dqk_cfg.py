"""dqk's time under each config of its autotune list, one at a time (the tree in the working directory)."""

# ruff: noqa: B023
import json
import sys

import triton

sys.path.insert(0, "bench")
from gdn_breakdown import stage_inputs  # noqa: E402

from megatron_hybrid.ops.gated_delta_rule import chunk as C  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule import chunk_bwd  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule.utils import reset_tuning  # noqa: E402

tuner = chunk_bwd.chunk_bwd_dqk_kernel
configs = list(tuner.configs)
out = {}
for name in ("olmo", "olmo_tp2"):
    q, k, v, g, beta, do, scale, meta, gcum, Ai, w, u, h, v_new, dv2, dh, dk_part, dw, dgp = stage_inputs(name)
    for cfg in configs:
        tuner.configs = [cfg]
        reset_tuning(tuner)
        try:
            t = triton.testing.do_bench(lambda: C.chunk_bwd_dqk(q, k, gcum, h, dh, v_new, dv2, do, scale, meta))
            out[f"{name} {cfg}"] = round(t, 4)
        except Exception as e:  # a config that does not fit
            out[f"{name} {cfg}"] = type(e).__name__
print(json.dumps(out))
