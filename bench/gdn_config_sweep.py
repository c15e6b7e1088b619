"""Launch-config sweep of the GDN kernels (GPU): every kernel's time over a wide list of configs (block, warps,
pipeline stages, register cap), each checked against the kernel's default config and for run-to-run determinism.

The autotune lists in the kernels are short (2-3 configs) and MEGATRON_HYBRID_AUTOTUNE=0 takes their first entry,
which is what every model-step benchmark so far ran. This finds which configs deserve those places.

    python bench/gdn_config_sweep.py --phase compile --shard 0 --nshards 8 &   # ... 8 processes: fill Triton's cache
    python bench/gdn_config_sweep.py --phase time --out DIR                    # one process: check and time

A config is *usable* when its outputs are bit-identical over three runs (Triton 3.6 on Hopper raced in a pipelined
kernel before, see wy.py) and within 1e-2 relative RMS of the default config's (different tilings round differently;
the op's GPU tests still decide correctness).
"""

# ruff: noqa: B023  (the launched lambdas run inside the loop iteration that defines them)
from __future__ import annotations

import argparse
import itertools
import os
import sys

import torch
import triton

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import report  # noqa: E402
from gdn_breakdown import stage_inputs  # noqa: E402
from gdn_kernels import SHAPES  # noqa: E402

from megatron_hybrid.ops import conv1d as CV  # noqa: E402
from megatron_hybrid.ops import norms as NM  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule import chunk as C  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule.chunk_bwd import chunk_bwd_dv_local, chunk_bwd_dv_local_kernel  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule.utils import reset_tuning  # noqa: E402

DEVICE = "cuda"  # the CPU smoke check of this script (interpreter) sets "cpu"


def _cfgs(blocks, warps, stages, maxnreg=(None,), block_name="BV"):
    out = []
    for b, w, s, r in itertools.product(blocks, warps, stages, maxnreg):
        out.append(triton.Config({} if b is None else {block_name: b}, num_warps=w, num_stages=s, maxnreg=r))
    return out


def _reg_capped(blocks, stages):
    """4 warps with the register cap that lets 3 (168) or 4 (128) programs share an SM: the big kernels run 2 per
    SM, register-bound (bench/KERNELS.md, Nsight Compute)."""
    return _cfgs(blocks, (4,), stages, (128, 168))


# Parallel-over-chunks kernels: 1 program per (chunk, head) or (block, chunk, head).
WY_SOLVE = _cfgs([None], (1, 2, 4), (1, 2, 3))
WY_FWD = _cfgs([None], (2, 4, 8), (1, 2, 3)) + _reg_capped([None], (1, 2))
WY_BWD = _cfgs([None], (2, 4, 8), (1, 2)) + _reg_capped([None], (1, 2))  # pipelined again since session 15 (wy.py)
PER_CHUNK = _cfgs((32, 64), (4, 8), (1, 2, 3)) + _reg_capped((64,), (1, 2))
# chunk_bwd_dqk with BV = 64 and num_stages = 1 (4 warps, with or without a register cap) hit an illegal memory
# access on the H100 (Triton 3.6, 2026-11-27), which ends the process: left out. Its BV = 32 configs ran.
DQK = [c for c in PER_CHUNK if not (c.kwargs["BV"] == 64 and c.num_stages == 1 and c.num_warps == 4)]
# Sequential kernels: 1 program per (V block, sequence, head).
STATE = _cfgs((16, 32, 64), (2, 4, 8), (1, 2, 3))
# The mixer's row-blocked and conv kernels (launched directly: their host functions fix the tiles); each list starts
# with the setting its host function uses (norms.py, conv1d.py).
GNORM_FWD = [triton.Config({"BM": bm}, num_warps=w) for bm, w in itertools.product((8, 4, 16, 32), (4, 1, 2, 8))]
GNORM_BWD = [triton.Config({"BM": bm}, num_warps=w) for bm, w in itertools.product((8, 4, 16, 32), (2, 1, 4, 8))]
L2 = [triton.Config({"BM": bm}, num_warps=w) for bm, w in itertools.product((16, 8, 32, 64), (4, 1, 2, 8))]
CONV_FWD = [
    triton.Config({"BT": bt, "BC": bc}, num_warps=w)
    for bt, bc, w in itertools.product((16, 32, 64), (128, 64, 256), (2, 4, 8))
]
CONV_BWD = [
    triton.Config({"BT": bt, "BC": bc, "RPP": rpp}, num_warps=w, num_stages=1)
    for bt, bc, rpp, w in itertools.product((16, 32), (64, 128), (16, 8, 32), (4, 2))
]
GDN_STAGES = {
    "wy_solve": WY_SOLVE, "wy_fwd": WY_FWD, "fwd_h": STATE, "fwd_o": PER_CHUNK, "dv_local": PER_CHUNK,
    "bwd_dh": STATE, "bwd_dh_kept_qk": STATE, "dqk": DQK, "wy_bwd": WY_BWD,
}  # fmt: skip
DIRECT_STAGES = {
    "gated_norm_bwd": GNORM_BWD, "conv_fwd_qk": CONV_FWD, "gated_norm_fwd": GNORM_FWD, "l2norm_fwd_q": L2,
    "l2norm_bwd_q": L2,
    "conv_bwd": CONV_BWD,
}  # fmt: skip
STAGE_CONFIGS = {**GDN_STAGES, **DIRECT_STAGES}


def describe(cfg: triton.Config) -> str:
    parts = [f"{k}={v}" for k, v in cfg.kwargs.items()] + [f"w{cfg.num_warps}", f"s{cfg.num_stages}"]
    if getattr(cfg, "maxnreg", None):
        parts.append(f"r{cfg.maxnreg}")
    return " ".join(parts)


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt().clamp_min(1e-30))


def gdn_stages(shape: str):
    """Stage name -> (autotuned kernel, launcher returning the outputs) at one shape; configs in GDN_STAGES."""
    q, k, v, g, beta, do, scale, meta, gcum, Ai, w, u, h, v_new, dv2, dh, dk_part, dw, dgp = stage_inputs(shape)

    def bwd_dh():  # includes dv_local at its own (autotuned) config: a constant across this stage's rows
        return C.chunk_bwd_dh(q, k, w, gcum, do, None, None, scale, meta)[:2]

    _, Aqk = C.chunk_fwd_o(q, k, v_new, h, gcum, scale, meta, keep_qk=True)

    def bwd_dh_kept_qk():  # the op's path where it keeps q k^T * D (chunk.keeps_qk): no dv_local
        return C.chunk_bwd_dh(q, k, w, gcum, do, None, None, scale, meta, Aqk=Aqk)[:2]

    def dqk():
        return C.chunk_bwd_dqk(q, k, gcum, h, dh, v_new, dv2, do, scale, meta)

    def wy_bwd():
        return C.chunk_wy_bwd(k, v, beta, gcum, Ai, dw, dv2, dk_part, dgp, meta)

    return {
        "wy_solve": (C.chunk_wy_solve_kernel, lambda: C.chunk_wy_fwd(k, v, g, beta, meta)[:2]),  # + w, u at theirs
        "wy_fwd": (C.chunk_wy_fwd_kernel, lambda: C.chunk_wy_fwd(k, v, None, beta, meta, gcum=gcum, Ai=Ai)[2:]),
        "fwd_h": (C.chunk_fwd_h_kernel, lambda: C.chunk_fwd_h(k, w, u, gcum, None, False, meta)[:2]),
        "fwd_o": (C.chunk_fwd_o_kernel, lambda: C.chunk_fwd_o(q, k, v_new, h, gcum, scale, meta)),
        "dv_local": (chunk_bwd_dv_local_kernel, lambda: chunk_bwd_dv_local(q, k, gcum, do, scale, meta)),
        "bwd_dh": (C.chunk_bwd_dh_kernel, bwd_dh),
        "bwd_dh_kept_qk": (C.chunk_bwd_dh_kernel, bwd_dh_kept_qk),
        "dqk": (C.chunk_bwd_dqk_kernel, dqk),
        "wy_bwd": (C.chunk_wy_bwd_kernel, wy_bwd),
    }


def direct_stages(shape: str):
    """Stage name -> launcher taking a config, for the mixer's bandwidth-bound kernels (configs in DIRECT_STAGES):
    the gated RMSNorm forward and backward (recomputing y, as the fused mixer does), the conv forward over the [q k]
    half and backward over q k v, the L2 norm of q both ways."""
    B, T, H, K, V, _ = SHAPES[shape]
    HV, QK = H, 2 * H * K
    width = QK + 2 * HV * V  # [q k v | z]
    dev, dt = DEVICE, torch.bfloat16
    proj = torch.randn(B, T, width, device=dev, dtype=dt)
    o2 = torch.randn(B * T * HV, V, device=dev, dtype=dt)
    g3 = NM._gate_rows(proj[..., QK + HV * V :].unflatten(-1, (HV, V)))
    norm_w = torch.rand(V, device=dev, dtype=dt) + 0.5
    rstd = torch.rand(B * T * HV, device=dev, dtype=torch.float32) + 0.5
    dy = torch.randn_like(o2)
    M, D = o2.shape
    BD = triton.next_power_of_2(D)

    def gnorm(cfg):
        BM = cfg.kwargs["BM"]
        n_prog = triton.cdiv(M, BM)
        dx, dgate, y = torch.empty_like(o2), torch.empty(M, D, dtype=dt, device=dev), torch.empty_like(o2)
        dwp = torch.empty(n_prog, D, dtype=torch.float32, device=dev)
        NM.gated_rms_norm_bwd_kernel[(n_prog,)](
            o2, g3, norm_w, rstd, dy, dx, dgate, dwp, y, M, g3.stride(0), g3.stride(1), HV * D, D,
            D=D, GH=HV, BM=BM, BD=BD, STORE_Y=True, H_DTYPE=NM._TL[dt], num_warps=cfg.num_warps,
        )  # fmt: skip
        return dx, dgate, y, dwp.sum(0)

    x = proj[..., : 2 * H * K]
    cw = torch.randn(2 * H * K, 4, device=dev, dtype=dt) * 0.3
    R, Cc = B * T, x.shape[-1]

    def conv(cfg):
        BT, BC = cfg.kwargs["BT"], cfg.kwargs["BC"]
        y = torch.empty(B, T, Cc, dtype=dt, device=dev)
        CV.conv1d_fwd_kernel[(triton.cdiv(R, BT), triton.cdiv(Cc, BC))](
            x, cw, y, None, None, R, T, x.stride(0), x.stride(1), C=Cc, W=4, BT=BT, BC=BC, ACT=True, SEQS=0,
            num_warps=cfg.num_warps,
        )  # fmt: skip
        return (y,)

    def gnorm_fwd(cfg):
        BM = cfg.kwargs["BM"]
        y, r = torch.empty_like(o2), torch.empty(M, dtype=torch.float32, device=dev)
        NM.gated_rms_norm_fwd_kernel[(triton.cdiv(M, BM),)](
            o2, g3, norm_w, y, r, M, 1e-6, g3.stride(0), g3.stride(1), D=D, GH=HV, BM=BM, BD=BD,
            H_DTYPE=NM._TL[dt], num_warps=cfg.num_warps,
        )  # fmt: skip
        return y, r

    # the L2 norm of q: a column slice of the [q k] conv output, as the mixer reads it; backward into a column
    # slice of the conv input's gradient
    qk_out = torch.randn(B * T, 2 * H * K, device=dev, dtype=dt)
    xq = qk_out[:, : H * K].view(B * T, H, K)
    yq = torch.randn(B * T * H, K, device=dev, dtype=dt)
    rq = torch.rand(B * T * H, device=dev, dtype=torch.float32) + 0.5
    dyq = torch.randn_like(yq)
    dqkv = torch.empty(B * T, QK + HV * V, device=dev, dtype=dt)
    dxq = dqkv[:, : H * K].view(B * T, H, K)
    MQ, BDQ = B * T * H, triton.next_power_of_2(K)

    def l2_fwd(cfg):
        BM = cfg.kwargs["BM"]
        y, r = torch.empty(MQ, K, device=dev, dtype=dt), torch.empty(MQ, device=dev, dtype=torch.float32)
        NM.l2norm_fwd_kernel[(triton.cdiv(MQ, BM),)](
            xq, y, r, xq, y, MQ, 1e-6, xq.stride(0), xq.stride(1), D=K, GH=H, BM=BM, BD=BDQ, num_warps=cfg.num_warps
        )
        return y, r

    def l2_bwd(cfg):
        BM = cfg.kwargs["BM"]
        NM.l2norm_bwd_kernel[(triton.cdiv(MQ, BM),)](
            yq, rq, dyq, dxq, yq, dyq, dxq, MQ, dxq.stride(0), dxq.stride(1), D=K, GH=H, BM=BM, BD=BDQ,
            num_warps=cfg.num_warps,
        )  # fmt: skip
        return (dxq,)

    # the conv backward (ring variant, fp32 ring) over the whole q k v width, dx into the projection's gradient
    xc = proj[..., : QK + HV * V]
    Cf = xc.shape[-1]
    cwf = torch.randn(Cf, 4, device=dev, dtype=dt) * 0.3
    dyc = torch.randn(B, T, Cf, device=dev, dtype=dt)
    dproj = torch.empty_like(proj)
    dxc = dproj[..., :Cf]

    def conv_bwd(cfg):
        BT, BC, RPP = cfg.kwargs["BT"], cfg.kwargs["BC"], cfg.kwargs["RPP"]
        n_p, n_c = triton.cdiv(R, BT * RPP), triton.cdiv(Cf, BC)
        dwp = torch.empty(n_p, 4, Cf, dtype=torch.float32, device=dev)
        ring = torch.empty(n_p * n_c, 2 * BT, BC, dtype=torch.float32, device=dev)
        CV.conv1d_bwd_ring_kernel[(n_p, n_c)](
            xc, cwf, dyc, dxc, dwp, ring, None, None, R, T, xc.stride(0), xc.stride(1), dyc.stride(0), dyc.stride(1),
            dxc.stride(0), dxc.stride(1), C=Cf, W=4, BT=BT, BC=BC, RPP=RPP, SEQS=0, num_warps=cfg.num_warps,
            num_stages=1,
        )  # fmt: skip
        return dxc, dwp.sum(0)

    return {
        "gated_norm_bwd": gnorm, "conv_fwd_qk": conv, "gated_norm_fwd": gnorm_fwd, "l2norm_fwd_q": l2_fwd,
        "l2norm_bwd_q": l2_bwd, "conv_bwd": conv_bwd,
    }  # fmt: skip


def _as_tuple(x):
    return tuple(t for t in (x if isinstance(x, (tuple, list)) else (x,)) if isinstance(t, torch.Tensor))


def jobs(shapes):
    """Every (shape, stage, config index): the unit the compile phase shards over."""
    out = []
    for shape in shapes:
        for stage, cfgs in STAGE_CONFIGS.items():
            out += [(shape, stage, i) for i in range(len(cfgs))]
    return out


def run_shape(shape, wanted, timing, rows):
    wanted_here = {st for (s, st, _) in wanted if s == shape}
    # inputs only for the kinds of stage this process runs: the GDN ones take a forward and backward of every kernel
    stages = gdn_stages(shape) if wanted_here & GDN_STAGES.keys() else {}
    direct = direct_stages(shape) if wanted_here & DIRECT_STAGES.keys() else {}
    for stage, cfgs in STAGE_CONFIGS.items():
        idx = [i for (s, st, i) in wanted if s == shape and st == stage]
        if not idx:
            continue
        if stage in GDN_STAGES:
            kern, fn = stages[stage]
            saved = kern.configs

            def launcher(cfg):
                kern.configs = [cfg]
                reset_tuning(kern)
                return lambda: _as_tuple(fn())

            default = saved[0]
        else:
            fn = direct[stage]
            saved = None

            def launcher(cfg):
                return lambda: _as_tuple(fn(cfg))

            default = cfgs[0]
        ref = None
        todo = [(i, cfgs[i]) for i in idx]
        if timing:
            ref = [t.clone() for t in launcher(default)()]
            todo = [(-1, default)] + todo  # the default's own row first: the baseline of the summary
        for i, cfg in todo:
            row = {"shape": shape, "stage": stage, "config": describe(cfg), "is_default": i < 0}
            try:
                run = launcher(cfg)
                first = [t.clone() for t in run()]
                if timing:
                    same = all(all(torch.equal(a, b) for a, b in zip(first, run())) for _ in range(2))
                    err = max(rel_rms(a, b) for a, b in zip(first, ref))
                    ms = triton.testing.do_bench(run, warmup=10, rep=50, return_mode="median")
                    row.update(ms=round(ms, 4), deterministic=same, rel_err_vs_default=float(f"{err:.2e}"))
                    row["usable"] = same and err <= 1e-2
                else:
                    torch.cuda.synchronize()
                    row["compiled"] = True
            except Exception as e:  # noqa: BLE001  (a config that does not compile or fit is a result)
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
            rows.append(row)
            print(row, flush=True)
        if saved is not None:
            kern.configs = saved
            reset_tuning(kern)


def summarise(rows):
    """Per (shape, stage): the default config's time, the best usable one and its speed-up."""
    out = []
    for (shape, stage), grp in itertools.groupby(rows, key=lambda r: (r["shape"], r["stage"])):
        grp = [r for r in grp if "ms" in r]
        if not grp:
            continue
        default = next((r for r in grp if r["is_default"]), None)
        usable = [r for r in grp if r.get("usable")]
        best = min(usable, key=lambda r: r["ms"]) if usable else None
        out.append({
            "shape": shape, "stage": stage, "default_ms": default["ms"] if default else "",
            "default_config": default["config"] if default else "",
            "best_ms": best["ms"] if best else "", "best_config": best["config"] if best else "",
            "speedup": round(default["ms"] / best["ms"], 3) if best and default else "",
        })  # fmt: skip
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phase", choices=("compile", "time"), default="time")
    ap.add_argument("--shapes", default="olmo_tp2,olmo")
    ap.add_argument("--stages", default=",".join(STAGE_CONFIGS), help="comma-separated subset of the stages")
    ap.add_argument("--shard", type=int, default=0)
    ap.add_argument("--nshards", type=int, default=1)
    ap.add_argument("--name", default="gdn_config_sweep")
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    args = ap.parse_args()
    shapes = args.shapes.split(",")
    stages = set(args.stages.split(","))
    wanted = [j for j in jobs(shapes) if j[1] in stages][args.shard :: args.nshards]
    timing = args.phase == "time"
    if timing:
        report.warm_up_gpu()
    rows = []
    for shape in shapes:
        run_shape(shape, wanted, timing, rows)
    if timing:
        summary = summarise(rows)
        notes = (
            "Each stage's first row is its default config (the first of its autotune list: what "
            "MEGATRON_HYBRID_AUTOTUNE=0 runs). `usable`: bit-identical over three runs and within 1e-2 relative RMS "
            "of the default config's outputs. Times: triton do_bench median, one launch of the stage's host "
            "function (bwd_dh includes dv_local at its autotuned config). Full rows in the JSON."
        )
        report.write(args.name, summary + rows, list(summary[0].keys()) if summary else [], notes, args.out)


if __name__ == "__main__":
    main()
