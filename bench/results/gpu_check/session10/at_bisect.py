"""Which autotune config faults at the small GPU op-test shapes? `list`: print "kernel idx" per config;
`run KERNEL IDX`: every tuner on its first config except KERNEL on config IDX, then the failing tests' cases."""

import importlib
import sys

import torch
from triton.runtime.autotuner import Autotuner

from megatron_hybrid.ops.gated_delta_rule.utils import reset_tuning

MODS = ["wy", "chunk_bwd", "chunk_o", "chunk_h", "split_state"]
tuners = {}
for m in MODS:
    mod = importlib.import_module(f"megatron_hybrid.ops.gated_delta_rule.{m}")
    for name, obj in vars(mod).items():
        if isinstance(obj, Autotuner):
            tuners[f"{m}.{name}"] = obj
if sys.argv[1] == "list":
    for n, t in tuners.items():
        for i in range(len(t.configs)):
            print(n, i)
    sys.exit()

target, idx = sys.argv[2], int(sys.argv[3])
full = {n: list(t.configs) for n, t in tuners.items()}
for n, t in tuners.items():
    t.configs = [full[n][idx if n == target else 0]]
    reset_tuning(t)
sys.path.insert(0, ".")
T = importlib.import_module("tests.ops.test_gdn_gpu")

cases = [
    ("chunk 3x129x4x4x16x48", lambda: T.test_chunk_bf16((3, 129, 4, 4, 16, 48))),
    ("chunk 2x257x4x4x12x24", lambda: T.test_chunk_bf16((2, 257, 4, 4, 12, 24))),
    ("mixer small", lambda: T.test_gdn_mixer_fused_equals_composed_bf16(2, 257, (4, 8, 12, 24))),
    ("small ops", T.test_small_ops_bf16),
]
res = []
for label, fn in cases:
    try:
        fn()
        torch.cuda.synchronize()
        res.append(f"{label}: ok")
    except AssertionError as e:
        res.append(f"{label}: ASSERT {str(e).splitlines()[0][:120]}")
    except Exception as e:
        res.append(f"{label}: {type(e).__name__} {str(e).splitlines()[0][:100]}")
        break
print(f"{target} #{idx} {full[target][idx]} | " + " | ".join(res))
