"""The op's fwd+bwd (T=8192, K=96, V=192, bf16, q/k L2 norm in the op) at H=15 and 30, per backward state-dot mode
(MEGATRON_HYBRID_GDN_STATE_DOTS, read at each forward) and with the states kept or recomputed; rounds alternate."""

import os
import statistics

import torch
import torch.nn.functional as F
import triton

from megatron_hybrid.ops import chunk_gated_delta_rule

ARMS = [("update", True), ("update,read", True), ("update,bf16", True), ("update", False)]
for H in (15, 30):
    torch.manual_seed(0)
    T, K, V = 8192, 96, 192
    mk = lambda *s: torch.randn(*s, device="cuda", dtype=torch.bfloat16)  # noqa: E731
    q, k, v = mk(1, T, H, K), mk(1, T, H, K), mk(1, T, H, V)
    g = F.logsigmoid(torch.randn(1, T, H, device="cuda"))
    beta = torch.rand(1, T, H, device="cuda", dtype=torch.bfloat16) * 2
    do = mk(1, T, H, V)
    xs = [x.clone().requires_grad_() for x in (q, k, v, g, beta)]
    times = {arm: [] for arm in ARMS}
    for rnd in range(3):
        for mode, keep in ARMS if rnd % 2 == 0 else ARMS[::-1]:
            os.environ["MEGATRON_HYBRID_GDN_STATE_DOTS"] = mode

            def step(keep=keep, xs=xs, do=do):
                chunk_gated_delta_rule(*xs, use_qk_l2norm=True, keep_states=keep)[0].backward(do)

            step()
            torch.cuda.synchronize()
            times[(mode, keep)].append(
                triton.testing.do_bench(step, warmup=30, rep=300, grad_to_none=xs, return_mode="median")
            )
    for arm, ts in times.items():
        print(
            f"H={H} bwd_dots={arm[0]:12s} keep_states={arm[1]!s:5s} median {statistics.median(ts):.3f} ms "
            f"rounds {' '.join(f'{t:.3f}' for t in ts)}",
            flush=True,
        )
