"""The remembered-kernel launch path (ops/launch.py) on the CPU, with a stand-in for a JITFunction: which launches
reuse a compiled kernel, which go back to Triton's own path, and what the reused kernel is launched with. The GPU
side (bit-identical outputs with the path on and off) is in test_gdn_gpu.py."""

from __future__ import annotations

import inspect

import pytest
import torch

from megatron_hybrid.ops import launch


class Param:
    def __init__(self, name, is_constexpr=False, default=inspect.Parameter.empty):
        self.name, self.is_constexpr, self.default = name, is_constexpr, default


class Compiled:
    function, packed_metadata = "function", "metadata"

    def __init__(self, launches):
        self.launches = launches

    def run(self, *args):
        self.launches.append(args)


class FakeJit:
    """Triton's JITFunction as fast_launch sees it: ``params`` and ``run(*args, grid, warmup, **kwargs)``."""

    params = [Param("x"), Param("y"), Param("n"), Param("scale"), Param("BLOCK", True), Param("FLAG", True, False)]

    def __init__(self):
        self.triton_runs = []
        self.fast_launches = []

    def run(self, *args, grid, warmup, **kwargs):
        self.triton_runs.append((args, kwargs))
        return Compiled(self.fast_launches)


@pytest.fixture
def jit(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv("MEGATRON_HYBRID_FAST_LAUNCH", "1")
    monkeypatch.setattr(launch, "_current_device", lambda: 0)
    monkeypatch.setattr(launch, "_current_stream", lambda device: "stream")
    monkeypatch.setattr(launch, "_launch_hooks", lambda: False)
    return launch.fast_launch(FakeJit())


def _go(fn, x, y, n=32, scale=0.5, grid=(4,), **kwargs):
    kwargs.setdefault("BLOCK", 64)
    return fn.run(x, y, n, scale, grid=grid, warmup=False, **kwargs)


def test_a_repeated_launch_reuses_the_kernel_with_the_arguments_in_signature_order(jit):
    x, y = torch.zeros(64), torch.zeros(64, dtype=torch.bfloat16)
    _go(jit, x, y, num_warps=4)
    assert len(jit.triton_runs) == 1 and jit.fast_launches == []
    seen = {}

    def grid(meta):
        seen.update(meta)
        return (meta["n"] // meta["BLOCK"], 3)

    _go(jit, x, y, n=48, scale=0.25, grid=grid, num_warps=4)  # other values of the same kinds
    assert len(jit.triton_runs) == 1
    (launched,) = jit.fast_launches
    assert launched[:9] == (0, 3, 1, "stream", "function", "metadata", None, None, None)
    assert launched[9:] == (x, y, 48, 0.25, 64, False)  # the default of FLAG filled in
    assert seen == {"x": x, "y": y, "n": 48, "scale": 0.25, "BLOCK": 64, "FLAG": False}


@pytest.mark.parametrize(
    "change",
    [
        "dtype",
        "alignment",
        "int_divisibility",
        "int_one",
        "int_64_bit",
        "constexpr",
        "option",
    ],
)
def test_a_launch_of_another_kind_goes_through_triton(jit, change):
    x, y = torch.zeros(64), torch.zeros(64)
    _go(jit, x, y, n=32, num_warps=4)
    other = {
        "dtype": lambda: _go(jit, x, y.double(), n=32, num_warps=4),
        "alignment": lambda: _go(jit, x[1:], y, n=32, num_warps=4),  # 4 bytes past a 16-byte boundary
        "int_divisibility": lambda: _go(jit, x, y, n=33, num_warps=4),
        "int_one": lambda: _go(jit, x, y, n=1, num_warps=4),
        "int_64_bit": lambda: _go(jit, x, y, n=2**40, num_warps=4),
        "constexpr": lambda: _go(jit, x, y, n=32, num_warps=4, BLOCK=128),
        "option": lambda: _go(jit, x, y, n=32, num_warps=8),
    }[change]
    other()
    assert len(jit.triton_runs) == 2 and jit.fast_launches == []
    other()  # now remembered as well
    assert len(jit.triton_runs) == 2 and len(jit.fast_launches) == 1


def test_warmup_hooks_and_unknown_argument_kinds_always_take_tritons_path(jit, monkeypatch):
    x, y = torch.zeros(64), torch.zeros(64)
    for _ in range(2):
        jit.run(x, y, 32, 0.5, grid=(1,), warmup=True, BLOCK=64)
        _go(jit, x, y, n=[32])  # a list: not a kind the key covers
    assert len(jit.triton_runs) == 4 and jit.fast_launches == []
    _go(jit, x, y)
    monkeypatch.setattr(launch, "_launch_hooks", lambda: True)  # a profiler's launch hooks
    _go(jit, x, y)
    assert len(jit.triton_runs) == 6 and jit.fast_launches == []


@pytest.mark.parametrize("env", [("MEGATRON_HYBRID_FAST_LAUNCH", "0"), ("TRITON_INTERPRET", "1")])
def test_off_by_environment(monkeypatch, env):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv(*env)
    fn = FakeJit()
    run = fn.run
    assert launch.fast_launch(fn) is fn and fn.run == run


def test_launch_hooks_are_seen_in_tritons_hook_chains():
    """Triton 3.6+ keeps an (empty) HookChain in knobs.runtime.launch_enter_hook, never None: only a chain that holds
    a call counts as a hook (an earlier version of this path took every launch for hooked, on the H100)."""
    from triton import knobs

    assert not launch._launch_hooks()
    chain = knobs.runtime.launch_enter_hook
    if not hasattr(chain, "add"):
        pytest.skip("this Triton keeps a plain callable or None there")

    def hook(metadata):
        return None

    chain.add(hook)
    try:
        assert launch._launch_hooks()
    finally:
        chain.remove(hook)
    assert not launch._launch_hooks()
