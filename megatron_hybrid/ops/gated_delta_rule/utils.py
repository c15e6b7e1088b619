"""Shared host helpers for the gated-delta-rule kernels: block sizes, chunk indices for packed sequences, autotune."""

from __future__ import annotations

import functools
import os
import types

import torch
import triton
import triton.language as tl

from ..launch import fast_launch

CHUNK = 64  # tokens per chunk (BT in the kernels)


def is_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.cache
def num_sms(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device; 132 (H100 SXM) elsewhere, i.e. under the interpreter, where the
    kernels' launch plans are only exercised, not timed."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 132


def autotune(configs: list[triton.Config], key: list[str], **kwargs):
    """triton.autotune, but with a single fixed config under the interpreter (several configs fail without a driver)
    or when MEGATRON_HYBRID_AUTOTUNE=0 (quick GPU test runs: the first config of each list is the default); with a
    cheap lookup of the tuned config on every later launch (``fast_tuned_launch``) and of the compiled kernel
    (``ops.launch.fast_launch``)."""
    if is_interpret() or os.environ.get("MEGATRON_HYBRID_AUTOTUNE", "1") == "0":
        configs = configs[:1]
    decorate = triton.autotune(configs=configs, key=key, **kwargs)

    def wrap(fn):
        tuner = decorate(fast_launch(fn))  # the tuner launches through fn.run: remembered kernels (ops/launch.py)
        if len(tuner.configs) > 1:
            tuner._key_positions = [(name, tuner.arg_names.index(name)) for name in tuner.keys]
            tuner._fast_configs = {}
            tuner.run = types.MethodType(fast_tuned_launch, tuner)
        return tuner

    return wrap


def reset_tuning(tuner) -> None:
    """Forget every tuned choice (triton's and ``fast_tuned_launch``'s), e.g. after replacing ``tuner.configs``."""
    tuner.cache.clear()
    if hasattr(tuner, "_fast_configs"):
        tuner._fast_configs.clear()


def _launch_key(tuner, args, kwargs) -> tuple:
    """What triton's Autotuner keys its choice on: the values of the ``key`` arguments and the dtypes of the
    arguments that have one, here read by position or keyword without building the argument dicts."""
    values = [kwargs[name] if name in kwargs else args[i] for name, i in tuner._key_positions]
    values += [a.dtype for a in args if hasattr(a, "dtype")]
    values += [a.dtype for a in kwargs.values() if hasattr(a, "dtype")]
    return tuple(values)


def fast_tuned_launch(tuner, *args, **kwargs):
    """The Autotuner's ``run`` for a tuner with several configs: triton's own run the first time a key is seen (it
    benchmarks the configs and launches), then the remembered config straight to the kernel. triton's run rebuilds
    name-to-argument dicts and a string key on every launch: on the H100 machine's host that made the GDN op's
    fwd+bwd launch-bound at the Olmo TP=2 slice (host 2.16 ms per call against 1.53 ms of GPU time with one config;
    bench/gdn_kernels.py, 2026-11-27)."""
    if len(tuner.configs) == 1:  # a list cut to one config after decoration (bench/gdn_config_sweep.py does)
        return type(tuner).run(tuner, *args, **kwargs)
    key = _launch_key(tuner, args, kwargs)
    hit = tuner._fast_configs.get(key)
    if hit is None:
        ret = type(tuner).run(tuner, *args, **kwargs)
        tuner._fast_configs[key] = (tuner.best_config, tuner.best_config.all_kwargs())
        return ret
    tuner.best_config = hit[0]
    return tuner.fn.run(*args, **kwargs, **hit[1])


# How the sequential state kernels multiply with their fp32 state (MEGATRON_HYBRID_GDN_STATE_DOTS, read per call:
# one mode for both passes, or "<forward mode>,<backward mode>"). A mode is (READ_F32, UPD_F32) for the product that
# reads the state (w h forward, (k exp) dh backward) and the one that updates it (k^T v_new forward, w^T dv2
# backward). True: fp32 operands (tf32 on the GPU); False: both operands rounded to the input dtype, as fla does.
# With no decay (g = 0) the state grows over the whole sequence and the update's rounding is what costs accuracy.
STATE_DOT_MODES = {"tf32": (True, True), "read": (True, False), "update": (False, True), "bf16": (False, False)}
# Measured on the H100 (2026-11-26, bench/state_dot_modes.sh, Olmo shape, one config): fwd_h 0.407 ms in tf32,
# 0.330 in "update"; bwd_dh 0.785 in tf32, 0.649 in "read". The GPU g = 0 test (o <= 5e-3) fails the forward in
# "read" (5.1e-3) and "bf16" (5.3e-3), and "bf16" fails dg in the backward (1.3e-2 > 1e-2). "update,read" (bwd_dh
# 0.649 ms) passed one g = 0 draw but failed dg on three more (1.04e-2 .. 1.43e-2, 2026-11-26 session 4), so the
# default became "update" both ways (bwd_dh 0.735 ms). Those failures turned out to be the wy backward's race (see
# wy.py); with it fixed, "update,read" passed the g = 0 draws too. Session 11 (2026-11-27, H100, Triton 3.6): the GPU
# op tests of the chunked op (26, one config per kernel) pass with "update,read" and "update,bf16", but autotuned the
# whole op's fwd+bwd is 2.465 / 2.465 / 2.447 ms in "update" / "update,read" / "update,bf16" at the Olmo shape
# (alternating rounds; bench/results/gpu_check/session11/call2, modes_time.py): since the intra-chunk dv left the
# reverse pass, its dots are no longer what it waits on, so the default stays the most accurate of the three.
STATE_DOTS_DEFAULT = "update"


def state_dot_flags(direction: str) -> tuple[bool, bool]:
    """(READ_F32, UPD_F32) for the "fwd" or "bwd" state pass."""
    spec = os.environ.get("MEGATRON_HYBRID_GDN_STATE_DOTS", STATE_DOTS_DEFAULT)
    modes = spec.split(",")
    if len(modes) not in (1, 2) or any(m not in STATE_DOT_MODES for m in modes):
        raise ValueError(
            f"MEGATRON_HYBRID_GDN_STATE_DOTS must be a mode or '<forward>,<backward>' modes from "
            f"{sorted(STATE_DOT_MODES)}, got {spec!r}"
        )
    return STATE_DOT_MODES[modes[0] if direction == "fwd" or len(modes) == 1 else modes[1]]


@triton.jit
def sdot(a, b, F32: tl.constexpr, DT: tl.constexpr):
    """a @ b where one side is (or feeds) the fp32 state: fp32 operands, or both rounded to the input dtype DT."""
    if F32:
        return tl.dot(a.to(tl.float32), b.to(tl.float32))
    else:
        return tl.dot(a.to(DT), b.to(DT))


def pick_block(dim: int, max_block: int = 64) -> int:
    """Largest power-of-two block <= max_block (>= 16) that divides ``dim`` exactly, so that 96 and 192 are tiled by
    32 and 64 with no masked waste; if none divides it, the smallest power of two that covers it (capped)."""
    b = max_block
    while b >= 16:
        if dim % b == 0:
            return b
        b //= 2
    return min(max_block, max(16, triton.next_power_of_2(dim)))


def state_block_k(K: int) -> int:
    """Block over K for the sequential state kernels, which hold all of K in at most four register blocks."""
    for b in (64, 32, 16):
        if K % b == 0 and K // b <= 4:
            return b
    return 64 if K > 128 else max(16, triton.next_power_of_2(triton.cdiv(K, 4)))


def prepare_chunks(B: int, T: int, cu_seqlens: torch.Tensor | None, chunk: int = CHUNK):
    """Return (num_seqs, chunks_in_grid, chunk_indices [NT, 2] int32 or None, chunk_offsets [N+1] int32 or None).

    Without cu_seqlens every sequence has T tokens and the kernels derive everything from the program ids.
    With cu_seqlens the chunk list is built here (one host sync, as with any varlen op).
    """
    if cu_seqlens is None:
        return B, triton.cdiv(T, chunk), None, None
    lens = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
    n_chunks = [triton.cdiv(n, chunk) for n in lens]
    idx = [(n, c) for n, nc in enumerate(n_chunks) for c in range(nc)]
    dev = cu_seqlens.device
    chunk_indices = torch.tensor(idx if idx else [(0, 0)], dtype=torch.int32, device=dev)
    offs = [0]
    for nc in n_chunks:
        offs.append(offs[-1] + nc)
    chunk_offsets = torch.tensor(offs, dtype=torch.int32, device=dev)
    return len(lens), len(idx), chunk_indices, chunk_offsets


@triton.jit
def chunk_bounds(i_t, i_bh, cu_seqlens, chunk_indices, T, HV: tl.constexpr, BT: tl.constexpr, IS_VARLEN: tl.constexpr):
    """Program -> (chunk index within its sequence, bos, eos, global chunk index = row of h)."""
    i_b = i_bh // HV
    if IS_VARLEN:
        i_n = tl.load(chunk_indices + i_t * 2).to(tl.int32)
        i_c = tl.load(chunk_indices + i_t * 2 + 1).to(tl.int32)
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        eos = tl.load(cu_seqlens + i_n + 1).to(tl.int64)
        i_nt = i_t.to(tl.int64)  # global chunk index = row of h
    else:
        i_c = i_t
        bos = (i_b * T).to(tl.int64)
        eos = bos + T
        i_nt = (i_b * tl.cdiv(T, BT) + i_t).to(tl.int64)
    return i_c, bos, eos, i_nt


@triton.jit
def chunk_program(i_t, i_bh, cu_seqlens, chunk_indices, T, H: tl.constexpr, HV: tl.constexpr, BT: tl.constexpr,
                  IS_VARLEN: tl.constexpr):  # fmt: skip
    """The per-chunk kernels' prologue: program (chunk i_t, batch x value head i_bh) -> (value head, its key head,
    global chunk index = row of h, first token, tokens in the chunk, token offsets [BT], their mask)."""
    i_hv = i_bh % HV
    i_h = i_hv // (HV // H)
    i_c, bos, eos, i_nt = chunk_bounds(i_t, i_bh, cu_seqlens, chunk_indices, T, HV, BT, IS_VARLEN)
    t0 = bos + i_c * BT
    Tc = tl.minimum(eos - t0, BT)
    o_t = tl.arange(0, BT)
    return i_hv, i_h, i_nt, t0, Tc, o_t, o_t < Tc


def token_stride(x, name: str) -> int:
    """The element stride s between consecutive tokens of a [B, T, H, D] tensor with strides (T * s, s, D, 1) (any
    batch stride when B = 1): token t of batch b then starts at (b * T + t) * s, as the kernels address it. A
    contiguous tensor has s = H * D; a head-aligned column slice of a wider contiguous [B, T, C] tensor has s = C."""
    B, T, H, D = x.shape
    ok = x.stride(3) == 1 and x.stride(2) == D and (B == 1 or x.stride(0) == T * x.stride(1)) and x.stride(1) >= H * D
    if not ok:
        raise ValueError(f"{name} must have packed heads and mergeable batch/time strides, got strides {x.stride()}")
    return x.stride(1)
