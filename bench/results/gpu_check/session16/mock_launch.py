"""The op's host time per fwd+bwd at T=8192 (H from argv, default 15) down to CompiledKernel.run, which is a no-op
here: CPU tensors, Triton's compile replaced by a stand-in compiled kernel and the autotuner's benchmark by its first
config. Run on the CPU machine and on the GPU machine's host (session 16, call D) to compare the two CPUs.
With a second argument, a cProfile of 200 calls."""

# ruff: noqa: E402  (the patches must be in place before the package is imported)
import cProfile
import io
import pstats
import sys
import time

import torch
import triton.runtime.autotuner as A
import triton.runtime.jit as J

calls = {"run": 0}


class FakeKernel:
    function = packed_metadata = None

    def run(self, *args):
        calls["run"] += 1


def fake_jit_run(self, *args, grid, warmup, **kwargs):
    calls["run"] += 1
    return FakeKernel()


def fake_tuner_run(self, *args, **kwargs):
    self.best_config = self.configs[0]
    return self.fn.run(*args, **kwargs, **self.best_config.all_kwargs())


J.JITFunction.run = fake_jit_run
A.Autotuner.run = fake_tuner_run
from megatron_hybrid.ops import launch

launch._current_device = lambda: 0
launch._current_stream = lambda device: 0
launch._launch_hooks = lambda: False
from megatron_hybrid.ops.gated_delta_rule.chunk import ChunkGatedDeltaRuleFunction

H = int(sys.argv[1]) if len(sys.argv) > 1 else 15
T = 8192
q, k = (torch.randn(1, T, H, 96).bfloat16() for _ in range(2))
v = torch.randn(1, T, H, 192).bfloat16()
g = -torch.rand(1, T, H)
beta = torch.rand(1, T, H).bfloat16()
xs = [x.clone().requires_grad_() for x in (q, k, v, g, beta)]
do = torch.randn_like(v)


def step():
    for x in xs:
        x.grad = None
    o, _ = ChunkGatedDeltaRuleFunction.apply(*xs, 96**-0.5, None, False, None, True, True)
    o.backward(do)


for _ in range(5):
    step()
calls["run"] = 0
times = []
for _ in range(5):
    t0 = time.perf_counter()
    for _ in range(100):
        step()
    times.append((time.perf_counter() - t0) / 100 * 1e3)
print(f"host with launch path (no C launcher): {sorted(times)[2]:.3f} ms/call; launches/call {calls['run'] / 500:.1f}")
if len(sys.argv) > 2:
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(200):
        step()
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
    print(out.getvalue())
