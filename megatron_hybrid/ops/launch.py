"""A cheaper launch path for Triton kernels that are launched many times with arguments of the same kinds.

``JITFunction.run`` binds and specialises every argument, builds a string cache key, looks the compiled kernel up,
checks the kernel's globals and builds launch metadata on every launch. On the H100 machine's host that came to
~100 us per launch under cProfile, and the GDN op's forward+backward at the Olmo TP=2 slice (9 launches) took the
host 1.7-1.9 ms per call against ~1.45 ms of GPU work (bench/results/gpu_check/session12/callB/host_profile.txt):
the op was launch-bound there.

``fast_launch(jit_fn)`` gives a JITFunction a ``run`` that remembers the compiled kernel under a key of what Triton
specialises on, a superset of it so that a hit can never pick a kernel compiled for other argument kinds:
constexpr values; each tensor's dtype and 16-byte alignment; each int's ``== 1``, divisibility by 16 and 32/64-bit
range; the other arguments' types; the launch options (``num_warps`` ...); the device. A hit launches the remembered
kernel exactly as ``JITFunction.run`` does (``CompiledKernel.run`` with every argument in signature order); a miss,
a warm-up, an argument of another kind, or launch hooks (profilers) take Triton's own path. Off under the
interpreter, or with MEGATRON_HYBRID_FAST_LAUNCH=0 (read when a kernel is decorated).
"""

from __future__ import annotations

import os

import torch
from triton import knobs
from triton.runtime.driver import driver

_I32 = (-(2**31), 2**31)
_INSTALLED: list = []  # the JITFunctions with the remembered-kernel run


def forget_kernels() -> None:
    """Empty every remembered-kernel cache: each kernel's next launch takes Triton's own path again."""
    for jit_fn in _INSTALLED:
        jit_fn._fast_kernels.clear()


def remembered_kernels() -> int:
    """How many (kernel, argument kinds) launches are remembered, over every kernel."""
    return sum(len(jit_fn._fast_kernels) for jit_fn in _INSTALLED)


def fast_launch_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") != "1" and os.environ.get("MEGATRON_HYBRID_FAST_LAUNCH", "1") != "0"


def _value_key(value, constexpr: bool):
    """What of ``value`` Triton's specialisation can depend on; None for a kind this path does not handle."""
    if constexpr:
        return ("c", value)
    if isinstance(value, torch.Tensor):
        return (value.dtype, value.data_ptr() % 16 == 0)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return type(value)
    if isinstance(value, int):
        return (value == 1, value % 16 == 0, _I32[0] <= value < _I32[1], value < 2**63)
    return None


def launch_key(values, constexprs, options, device) -> tuple | None:
    """The cache key of one launch (``values`` in signature order, ``options`` the non-parameter keyword arguments)."""
    parts = [device]
    for value, constexpr in zip(values, constexprs):
        part = _value_key(value, constexpr)
        if part is None:
            return None
        parts.append(part)
    for name, value in options:
        if not isinstance(value, (int, float, bool, str, type(None))):
            return None
        parts.append((name, value))
    return tuple(parts)


def _current_device():
    return driver.active.get_current_device()


def _current_stream(device):
    return driver.active.get_current_stream(device)


def _hook_set(hook) -> bool:
    # Triton 3.6+ keeps a HookChain there, never None: a hook is set when the chain holds a call
    return hook is not None and len(getattr(hook, "calls", (hook,))) > 0


def _launch_hooks() -> bool:
    """Whether a launch hook (a profiler's, e.g. proton) is set: then every launch takes Triton's own path."""
    return _hook_set(knobs.runtime.launch_enter_hook) or _hook_set(knobs.runtime.launch_exit_hook)


def fast_launch(jit_fn):
    """Install the remembered-kernel ``run`` on ``jit_fn`` (a ``triton.jit`` function; returned as is when the fast
    path is off). Works under ``triton.autotune`` too: the tuner launches through ``jit_fn.run``."""
    if not fast_launch_enabled():
        return jit_fn
    triton_run = jit_fn.run
    params = jit_fn.params
    position = {p.name: i for i, p in enumerate(params)}
    constexprs = [p.is_constexpr for p in params]
    defaults = [p.default for p in params]
    names = [p.name for p in params]
    kernels: dict = {}

    def run(*args, grid, warmup, **kwargs):
        if warmup or len(args) > len(params) or _launch_hooks():
            return triton_run(*args, grid=grid, warmup=warmup, **kwargs)
        values = list(args) + defaults[len(args) :]
        options = []
        for name, value in kwargs.items():
            i = position.get(name)
            if i is None:
                options.append((name, value))
            else:
                values[i] = value
        device = _current_device()
        key = launch_key(values, constexprs, options, device)
        kernel = kernels.get(key) if key is not None else None
        if kernel is None:
            kernel = triton_run(*args, grid=grid, warmup=warmup, **kwargs)
            if key is not None and kernel is not None:
                kernels[key] = kernel
            return kernel
        if callable(grid):
            grid = grid(dict(zip(names, values)))
        stream = _current_stream(device)
        kernel.run(
            grid[0], grid[1] if len(grid) > 1 else 1, grid[2] if len(grid) > 2 else 1, stream, kernel.function,
            kernel.packed_metadata, None, None, None, *values,
        )  # fmt: skip
        return kernel

    jit_fn.run = run
    jit_fn._fast_kernels = kernels
    _INSTALLED.append(jit_fn)
    return jit_fn


__all__ = ["fast_launch", "fast_launch_enabled", "forget_kernels", "launch_key", "remembered_kernels"]
