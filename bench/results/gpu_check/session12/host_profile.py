"""Where the host's time goes in one fwd+bwd of the op at the TP=2 slice (H=15): cProfile over 50 calls."""

import cProfile
import io
import pstats
import sys
import time

import torch

sys.path.insert(0, ".")  # the package under test first
from bench.gdn_kernels import make
from megatron_hybrid.ops import chunk_gated_delta_rule

q, k, v, g, beta, cu = make(1, 8192, 15, 96, 192, None)
xs = [x.clone().requires_grad_() for x in (q, k, v, g, beta)]
do = torch.randn_like(v)


def step():
    for x in xs:
        x.grad = None
    o = chunk_gated_delta_rule(*xs, use_qk_l2norm=True)[0]
    o.backward(do)


for _ in range(5):
    step()
torch.cuda.synchronize()
for _rep in range(3):
    t0 = time.perf_counter()
    for _ in range(20):
        step()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    print(f"host {(t1 - t0) / 20 * 1e3:.3f} ms/call, wall {(t2 - t0) / 20 * 1e3:.3f} ms/call")
pr = cProfile.Profile()
pr.enable()
for _ in range(50):
    step()
pr.disable()
torch.cuda.synchronize()
s = io.StringIO()
st = pstats.Stats(pr, stream=s)
st.sort_stats("tottime").print_stats(35)
st.sort_stats("cumulative").print_stats(45)
print(s.getvalue())
