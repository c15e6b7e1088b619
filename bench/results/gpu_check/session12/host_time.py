# ruff: noqa: B023  (step runs inside the iteration that defines it)
"""Host and wall time per fwd+bwd of the op (use_qk_l2norm) at H=15 and H=30, T=8192, for the package first on
sys.path (the current directory): 5 reps of 20 calls each, after a warm-up (which autotunes when enabled)."""

import sys
import time

sys.path.insert(0, ".")
import torch  # noqa: E402

import megatron_hybrid  # noqa: E402
from megatron_hybrid.ops import chunk_gated_delta_rule  # noqa: E402

print("package", megatron_hybrid.__file__)
for H in (15, 30):
    gen = torch.Generator(device="cuda").manual_seed(0)
    q, k = (torch.randn(1, 8192, H, 96, device="cuda", generator=gen).bfloat16() for _ in range(2))
    v = torch.randn(1, 8192, H, 192, device="cuda", generator=gen).bfloat16()
    g = -torch.rand(1, 8192, H, device="cuda", generator=gen)
    beta = torch.rand(1, 8192, H, device="cuda", generator=gen).bfloat16()
    xs = [x.clone().requires_grad_() for x in (q, k, v, g, beta)]
    do = torch.randn_like(v)

    def step():
        for x in xs:
            x.grad = None
        chunk_gated_delta_rule(*xs, use_qk_l2norm=True)[0].backward(do)

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    host, wall = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(20):
            step()
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        host.append((t1 - t0) / 20 * 1e3)
        wall.append((t2 - t0) / 20 * 1e3)
    host.sort()
    wall.sort()
    print(f"H={H} host ms/call median {host[2]:.3f} (min {host[0]:.3f}) wall median {wall[2]:.3f} (min {wall[0]:.3f})")
