"""The GDN layer's depthwise causal conv1d (``megatron_hybrid/ops/conv1d.py``) on one GPU, every backward variant.

At B = 1, T = 8192 (``--seq``), C = 11520 and 5760 (``--channels``: the layer's q k v width at TP = 1 and 2), bf16,
W = 4, SiLU, x a channel slice of a wider tensor as the layer passes it (``projected[..., :C]``, row stride 1.5 C):
median time (``triton.testing.do_bench``) of
- the forward (strided x, contiguous x, and the ``x.contiguous()`` copy the strided path saves);
- each backward variant (``conv1d.BwdConfig``: fused / two_pass / ring, dpre dtype, rows per program, tile), called
  as the autograd backward calls it (``conv1d._conv1d_bwd``: kernels, allocations and the dw partial sum);
- torch's reference (``causal_conv1d_torch``: F.conv1d in fp32, autograd) for scale;
with each variant's dx and dw against an fp32 reference (normwise and max relative error), and the registers and
spills of the kernels each variant compiled. Prints a Markdown table; writes ``conv1d.{json,md}`` to ``--out``.
A variant off the reference by more than bf16 rounding allows exits non-zero after writing the results.

    python bench/conv1d.py [--seq 8192] [--channels 11520,5760] [--variants ring,two_pass] [--out bench/results]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402

from megatron_hybrid.ops import conv1d  # noqa: E402

W = 4
WIDE = 1.5  # the layer's projected width over the conv width (q k v z: 17280 over 11520)
# bf16 rounding of dx plus fp32 accumulation-order differences; dpre in bf16 adds one more rounding.
TOL_NORM, TOL_MAX = 1e-2, 3e-2


def configs() -> list[conv1d.BwdConfig]:
    """Every backward variant timed: each family at several rows per program, at [32, 64] and [16, 64] tiles.
    ``fused/rows=1/tile=32x64`` is the previous kernel (weights now loaded once per program)."""

    def cfg(variant, dpre, rows, block_t):
        return conv1d.BwdConfig(variant, dpre, rows_per_program=rows, block_t=block_t, block_c=64)

    # fused at [32, 64] with several rows per program spills (255 registers + 128 B of stack in ptxas, Triton 3.6)
    cfgs = [cfg("fused", "fp32", 1, 32)] + [cfg("fused", "fp32", r, 16) for r in (1, 4, 8)]
    for dpre in conv1d.DPRE_DTYPES:
        cfgs += [cfg("two_pass", dpre, r, 32) for r in (1, 4, 8)] + [cfg("two_pass", dpre, 8, 16)]
    for dpre in conv1d.DPRE_DTYPES:
        cfgs += [cfg("ring", dpre, r, 16) for r in (4, 8, 16)]
    cfgs.append(cfg("ring", "fp32", 8, 32))
    return cfgs


COLUMNS = ["C", "op", "variant", "ms", "GB/s", "dx_err", "dx_max_err", "dw_err", "dw_max_err", "regs", "spills"]


def errors(a: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(normwise relative error, max abs error over max abs reference)."""
    d = a.double() - ref.double()
    return (d.norm() / ref.double().norm()).item(), (d.abs().max() / ref.double().abs().max()).item()


def reference(x, w, dy):
    """fp32 y, dx, dw of the same bf16 inputs (cuDNN's TF32 off)."""
    allow = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        xf, wf = x.float().requires_grad_(), w.float().requires_grad_()
        y = conv1d.causal_conv1d_torch(xf, wf, True)
        y.backward(dy.float())
        return y.detach(), xf.grad, wf.grad
    finally:
        torch.backends.cudnn.allow_tf32 = allow


def compiled_kernels() -> dict:
    """{(kernel name, cache key): compiled kernel} of the conv1d kernels compiled so far (Triton 3.x internals:
    empty if they moved)."""
    out = {}
    for fn in (conv1d.conv1d_bwd_kernel, conv1d.conv1d_bwd_dpre_kernel, conv1d.conv1d_bwd_ring_kernel):
        try:
            for cache in fn.device_caches.values():
                for key, kernel in cache[0].items():
                    out[(fn.__name__, key)] = kernel
        except (AttributeError, IndexError, TypeError):
            pass
    return out


def regs_of(before: dict) -> tuple[str, str]:
    """Registers and spills of the kernels compiled since ``before``, as 'name:value' lists."""
    new = {k: v for k, v in compiled_kernels().items() if k not in before}
    short = {"conv1d_bwd_kernel": "dx", "conv1d_bwd_dpre_kernel": "dpre", "conv1d_bwd_ring_kernel": "ring"}
    regs = " ".join(f"{short[n]}:{getattr(k, 'n_regs', '?')}" for (n, _), k in new.items())
    spills = " ".join(f"{short[n]}:{getattr(k, 'n_spills', '?')}" for (n, _), k in new.items())
    return regs, spills


def bench(fn) -> float:
    return triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median")


def run_shape(T: int, C: int, cfgs, check: bool, device: str = "cuda") -> list[dict]:
    torch.manual_seed(0)
    wide = torch.randn(1, T, int(C * WIDE), device=device, dtype=torch.bfloat16)
    x = wide[..., :C]  # the layer's view: channel stride 1, row stride 1.5 C
    w = (torch.randn(C, W, device=device) / W**0.5).to(torch.bfloat16)
    dy = torch.randn(1, T, C, device=device, dtype=torch.bfloat16)
    nbytes = T * C * x.element_size()
    rows = []

    def add(op, variant, ms, traffic, **kw):
        row = {"C": C, "op": op, "variant": variant, "ms": ms, "GB/s": traffic * nbytes / ms / 1e6, **kw}
        rows.append(row)
        errs = " ".join(f"{k} {v:.2e}" for k, v in kw.items() if isinstance(v, float))
        print(f"C={C:6d} {op:10s} {variant:40s} {ms:8.4f} ms {row['GB/s']:7.0f} GB/s {errs}", flush=True)

    ref = reference(x, w, dy) if check else None
    xc = x.contiguous()
    y = conv1d._conv1d_fwd(x, w, True)
    kw = {}
    if check:
        kw = dict(zip(("y_err", "y_max_err"), errors(y, ref[0])))
    add("fwd", "strided x (row stride 1.5 C)", bench(lambda: conv1d._conv1d_fwd(x, w, True)), 2, **kw)
    add("fwd", "contiguous x", bench(lambda: conv1d._conv1d_fwd(xc, w, True)), 2)
    add("copy", "x.contiguous() (saved by the strided path)", bench(lambda: x.contiguous()), 2)
    for cfg in cfgs:
        before = compiled_kernels()
        dx, dw = conv1d._conv1d_bwd(x, w, dy, True, config=cfg)  # compile
        torch.cuda.synchronize()
        regs, spills = regs_of(before)
        kw = {}
        if check:
            kw = dict(zip(("dx_err", "dx_max_err"), errors(dx, ref[1])))
            kw.update(zip(("dw_err", "dw_max_err"), errors(dw, ref[2])))
        del dx, dw
        ms = bench(lambda cfg=cfg: conv1d._conv1d_bwd(x, w, dy, True, config=cfg))
        add("bwd", cfg.name, ms, 3, regs=regs, spills=spills, **kw)
    # torch's reference path (F.conv1d in fp32 on the bf16 inputs) for scale
    xr, wr = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    add("torch fwd", "causal_conv1d_torch", bench(lambda: conv1d.causal_conv1d_torch(xr, wr, True)), 2)

    def torch_fwd_bwd():
        conv1d.causal_conv1d_torch(xr, wr, True).backward(dy)

    ms = triton.testing.do_bench(torch_fwd_bwd, warmup=5, rep=30, grad_to_none=[xr, wr], return_mode="median")
    add("torch f+b", "causal_conv1d_torch", ms, 5)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq", type=int, default=8192, help="T (B = 1)")
    ap.add_argument("--channels", default="11520,5760", help="comma-separated C values")
    ap.add_argument("--variants", default="", help="comma-separated substrings: time only the backward variants "
                    "whose name contains one (e.g. 'ring,two_pass/dpre=dy'); default all")  # fmt: skip
    ap.add_argument("--out", default=str(report.RESULTS), help="folder for conv1d.json and conv1d.md")
    ap.add_argument("--no-check", dest="check", action="store_false", help="skip the fp32 reference check")
    args = ap.parse_args(argv)
    cfgs = configs()
    if args.variants:
        keys = args.variants.split(",")
        cfgs = [c for c in cfgs if any(k in c.name for k in keys)]
    if not torch.cuda.is_available():
        raise SystemExit("bench/conv1d.py needs a CUDA GPU")
    t0 = time.time()
    rows = []
    for C in (int(c) for c in args.channels.split(",")):
        rows += run_shape(args.seq, C, cfgs, args.check)
        torch.cuda.empty_cache()
    bad = [
        f"C={r['C']} {r['variant']}"
        for r in rows
        if args.check and r["op"] == "bwd"
        and (max(r["dx_err"], r["dw_err"]) > TOL_NORM or max(r["dx_max_err"], r["dw_max_err"]) > TOL_MAX)
    ]  # fmt: skip
    default = conv1d._BWD_CONFIG.name
    fastest = {}
    for r in rows:
        if r["op"] == "bwd" and f"C={r['C']} {r['variant']}" not in bad and r["ms"] < fastest.get(r["C"], (1e9,))[0]:
            fastest[r["C"]] = (r["ms"], r["variant"])
    notes = f"""
B = 1, T = {args.seq}, bf16, W = {W}, SiLU; x is a channel slice of a [1, T, {WIDE} C] tensor (the layer's view).
GB/s counts the minimal traffic: forward x + y, backward x + dy + dx (2 bytes each), torch f+b 5 tensors.
Backward variants (`conv1d.BwdConfig.name`): variant / dpre dtype (two_pass, ring) / rows per program / tile of the
dx-dw kernel. Errors: dx, dw against fp32 torch on the same bf16 inputs (normwise; max |err| / max |ref|).
Registers and spills as the GPU's Triton compiled them (dx = conv1d_bwd_kernel, dpre = pass 1, ring).
Module default: `{default}`. Fastest within tolerance: {
        "; ".join(f"C={c}: `{v}` {ms:.4f} ms" for c, (ms, v) in fastest.items())
    }. Wall time of this run: {time.time() - t0:.0f} s.
"""
    path = report.write("conv1d", rows, COLUMNS + ["y_err", "y_max_err"], notes, out_dir=Path(args.out))
    print()
    print(report.markdown_table(rows, COLUMNS))
    print(notes)
    print(f"wrote {path} and {path.with_suffix('.json')}")
    if bad:
        print(f"off the fp32 reference: {bad}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
