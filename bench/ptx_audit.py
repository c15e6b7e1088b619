"""Offline sm_90 audit of the GDN kernels, on a machine without a GPU: each kernel compiled for an H100 (Triton's
own ptxas) at the Olmo shape (T=8192, 30 heads, K=96, V=192, bf16), per config: registers, spilled bytes, and the
global loads Triton's software pipeline made asynchronous copies against those it left synchronous, and the shared
memory a program takes (an H100 SM has 228 KiB: it caps how many programs share an SM, so whether a sequential
pass's programs all run at once; at 30 heads the reverse pass's 360 programs take 52 KiB each at 2 stages, four fit
per SM, and 99 KiB at 3 stages, two fit: 264 at once, and 0.67 against 0.43 ms in session 19's config sweep).

    python bench/ptx_audit.py [--kernels bwd_dh,fwd_h] [--all-configs] [--json out.json]

The kernels are compiled as Triton specialises them at run time: pointers 16-byte aligned, integer arguments that
are multiples of 16 marked so (both hold at the Olmo shape). Without that every 16-bit load compiles to scalar
loads and none is pipelined: sessions 17-18 read "no cp.async, ~540 B spilled" for the reverse pass from such
compiles. A 2-D load left synchronous in a sequential kernel's loop is a stall of every step; the usual cause is a
mask that varies along the contiguous dim (session 19: bwd_dh's kept q k^T * D, 0.520 -> 0.434 ms once masked on
tokens only). Per-token vectors (g's cumsum, beta) load synchronously by nature.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from megatron_hybrid.ops.gated_delta_rule import chunk as C  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule import chunk_bwd, split_state  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule.utils import state_dot_flags  # noqa: E402

SHAPE = {"H": 30, "HV": 30, "K": 96, "V": 192, "BT": 64, "BK": 32, "IS_VARLEN": False}
# the state passes' product precision as the op runs them (MEGATRON_HYBRID_GDN_STATE_DOTS, default "update")
FWD_DOTS = dict(zip(("READ_F32", "UPD_F32"), state_dot_flags("fwd")))
BWD_DOTS = dict(zip(("READ_F32", "UPD_F32"), state_dot_flags("bwd")))
# per kernel: (autotuned kernel, its other constexprs as the op launches it at the Olmo shape)
KERNELS = {
    "solve": (C.chunk_wy_solve_kernel, {"NORM_K": True}),
    "wy_fwd": (C.chunk_wy_fwd_kernel, {"BV": 64, "STORE_U": True}),
    "fwd_h": (C.chunk_fwd_h_kernel, {"USE_H0": False, "STORE_HT": False, "STORE_H": True, **FWD_DOTS}),
    "fwd_o": (C.chunk_fwd_o_kernel, {"STORE_A": True, "NORM_Q": True}),
    "bwd_dh": (C.chunk_bwd_dh_kernel, {"USE_DHT": False, "STORE_DH0": False, "LOCAL_A": True, **BWD_DOTS}),
    "dv_local": (chunk_bwd.chunk_bwd_dv_local_kernel, {}),
    "dqk": (C.chunk_bwd_dqk_kernel, {}),
    "wy_bwd": (C.chunk_wy_bwd_kernel, {"BV": 64, "NK": 3, "K_NORM": True, "Q_NORM": True}),
    # the sequence-split state passes (opt-in, MEGATRON_HYBRID_GDN_SPLIT_STATE): pass 1 and pass 3 of each
    "split_fwd_h_1": (split_state.split_fwd_h_kernel, {"PASS": 1, "STORE_HT": False, **FWD_DOTS}),
    "split_fwd_h_3": (split_state.split_fwd_h_kernel, {"PASS": 3, "STORE_HT": False, **FWD_DOTS}),
    "split_bwd_dh_1": (split_state.split_bwd_dh_kernel, {"PASS": 1, "STORE_DH0": False, **BWD_DOTS}),
    "split_bwd_dh_3": (split_state.split_bwd_dh_kernel, {"PASS": 3, "STORE_DH0": False, **BWD_DOTS}),
}
# pointer arguments that are not in the input dtype
FP32_POINTERS = {"gcum", "dgp", "Ai", "Awork", "k_rstd", "q_rstd", "dg", "g", "dvl", "dh0", "dht", "h0", "ht", "hs",
                 "mseg", "hloc", "dhe", "dloc"}  # fmt: skip
INT_POINTERS = {"cu_seqlens", "chunk_indices", "chunk_offsets", "seg_info"}
FP32_SCALARS = {"scale", "eps"}
INT_SCALARS = {"T", "TOT", "SV", "SDV", "SDK", "SDQ", "NSEQ_BUCKET", "NSEG_BUCKET"}  # lengths and token strides


def jit_function(kernel) -> triton.runtime.jit.JITFunction:
    fn = kernel
    while not isinstance(fn, triton.runtime.jit.JITFunction):
        fn = fn.fn
    return fn


def signature(fn, consts: dict) -> tuple[dict, dict]:
    """(signature, attrs) for ASTSource: constexprs fixed, 16-bit pointers bf16, the run-time specialisation."""
    names = [p.name for p in fn.params]
    skip = {names[d] if isinstance(d, int) else d for d in (getattr(fn, "do_not_specialize", None) or ())}
    sig = {}
    for n in names:
        if n in consts:
            sig[n] = "constexpr"
        elif n in FP32_SCALARS:
            sig[n] = "fp32"
        elif n in INT_POINTERS:
            sig[n] = "*i32"
        elif n in FP32_POINTERS:
            sig[n] = "*fp32"
        elif n in INT_SCALARS:
            sig[n] = "i32"
        else:
            sig[n] = "*bf16"
    aligned = [n for n in names if sig[n].startswith("*") or (sig[n] == "i32" and n not in skip)]
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    return sig, attrs


def compile_for_h100(name: str, config: triton.Config):
    kernel, extra = KERNELS[name]
    fn = jit_function(kernel)
    names = [p.name for p in fn.params]
    consts = {k: v for k, v in {**SHAPE, **extra, **config.kwargs}.items() if k in names}
    sig, attrs = signature(fn, consts)
    src = ASTSource(fn, sig, {(names.index(n),): v for n, v in consts.items()}, attrs)
    options = {"num_warps": config.num_warps, "num_stages": config.num_stages}
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)


_TENSOR = r"tensor<([0-9x]+)x!tt\.ptr<(\w+)>"


def loads(ttgir: str) -> tuple[collections.Counter, collections.Counter]:
    """(asynchronous copies, synchronous loads) in the TTGIR, counted by tensor shape and element type."""
    copies, plain = collections.Counter(), collections.Counter()
    for line in ttgir.splitlines():
        m = re.search(_TENSOR, line)
        if m is None:
            continue
        key = f"{m.group(1)}x{m.group(2)}"
        if "ttg.async_copy_global_to_local" in line:
            copies[key] += 1
        elif re.search(r"= tt\.load ", line):
            plain[key] += 1
    return copies, plain


def ptxas_usage(ptx: str) -> tuple[int | None, int | None]:
    """(registers, spilled bytes) from ``ptxas -v`` for sm_90a; (None, None) where Triton ships no ptxas."""
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    if not os.path.exists(ptxas):
        return None, None
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    try:
        err = subprocess.run([ptxas, "-arch=sm_90a", "-v", f.name, "-o", os.devnull], capture_output=True,
                             text=True, check=True).stderr  # fmt: skip
    finally:
        os.unlink(f.name)
    regs = re.search(r"Used (\d+) registers", err)
    spill = re.search(r"(\d+) bytes spill stores", err)
    return (int(regs.group(1)) if regs else None), (int(spill.group(1)) if spill else None)


def audit(name: str, config: triton.Config) -> dict:
    ck = compile_for_h100(name, config)
    copies, plain = loads(ck.asm["ttgir"])
    regs, spill = ptxas_usage(ck.asm["ptx"])
    return {
        "kernel": name, "config": {**config.kwargs, "num_warps": config.num_warps, "num_stages": config.num_stages},
        "registers": regs, "spill_bytes": spill, "shared_bytes": ck.metadata.shared, "async_copies": dict(copies),
        "sync_loads": dict(plain),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kernels", default=",".join(KERNELS), help="comma-separated from: " + ", ".join(KERNELS))
    ap.add_argument("--all-configs", action="store_true", help="every autotune config, not only the first")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    unknown = set(args.kernels.split(",")) - KERNELS.keys()
    if unknown:
        raise SystemExit(f"--kernels: unknown {sorted(unknown)}; choose from {', '.join(KERNELS)}")
    rows = []
    for name in args.kernels.split(","):
        configs = KERNELS[name][0].configs
        for config in configs if args.all_configs else configs[:1]:
            row = audit(name, config)
            rows.append(row)
            print(f"{name:9s} {row['config']}: {row['registers']} registers, {row['spill_bytes']} B spilled, "
                  f"{row['shared_bytes']} B shared; async {row['async_copies']}; sync {row['sync_loads']}",
                  flush=True)  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
