"""The wy backward kernel's launch variants on the GPU: determinism and time per (num_stages, num_warps).

    python bench/wy_bwd_variants.py [--reps 8] [--out bench/results]

Each variant runs ``chunk_wy_bwd_kernel`` on fixed inputs (produced by the forward and the earlier backward stages),
``--reps`` times for a bit-for-bit comparison and 30 times for the time (CUDA events). On 2026-11-26 (H100, Triton
3.6) num_stages=2 gave dbeta and dg that changed from run to run; num_stages=1 did not, and was faster
(``bench/results/gpu_check/session4/wy_bwd_variants.json``; the barrier rows there came from a temporary kernel flag
that was removed once it was shown not to help). The kernel as rewritten since is pipelined again (num_stages=2,
bit-identical at every ``bench/gdn_determinism.py`` shape, 2026-11-27). Writes ``wy_bwd_variants.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402
from gdn_determinism import stages_once  # noqa: E402

from megatron_hybrid.ops.gated_delta_rule import chunk as C  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule import wy  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule.utils import CHUNK, pick_block, token_stride  # noqa: E402
from megatron_hybrid.ops.norms import l2norm  # noqa: E402

SHAPES = [(1, 8192, 30, 30, 96, 192), (1, 2048, 15, 15, 96, 192), (2, 257, 4, 8, 12, 24)]
VARIANTS = [(2, 4), (1, 4), (1, 8), (2, 8)]  # (num_stages, num_warps)


def stage_inputs(B, T, H, HV, K, V) -> dict:
    """The wy backward's inputs at one shape, from the forward and the earlier backward stages (bf16)."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    q = l2norm(torch.randn(B, T, H, K, device="cuda", generator=gen).bfloat16())
    k = l2norm(torch.randn(B, T, H, K, device="cuda", generator=gen).bfloat16())
    v = torch.randn(B, T, HV, V, device="cuda", generator=gen).bfloat16()
    do = torch.randn(B, T, HV, V, device="cuda", generator=gen).bfloat16()
    g = -torch.rand(B, T, HV, device="cuda", generator=gen)
    beta = torch.rand(B, T, HV, device="cuda", generator=gen).bfloat16()
    meta = C._meta(B, T, None)
    C._split_plan(meta, q, v)
    gcum, Ai, _, _, _, _, dv2, _, _, dk_part, dw, dgp = stages_once(q, k, v, g, beta, do, meta)[:12]
    return dict(k=k, v=v, beta=beta, gcum=gcum, Ai=Ai, dw=dw, dv2=dv2, dk_part=dk_part, dgp=dgp, meta=meta)


def run_variant(x: dict, stages: int, warps: int) -> tuple[torch.Tensor, ...]:
    """(dk, dv, dbeta, dg) of one launch of the kernel with this (num_stages, num_warps)."""
    k, v, meta = x["k"], x["v"], x["meta"]
    B, T, H, K = k.shape
    HV, V = v.shape[2], v.shape[3]
    BK, BV = pick_block(K, 64), pick_block(V, 64)
    dk = torch.empty(B, T, HV, K, dtype=torch.float32 if HV != H else k.dtype, device="cuda")
    dv = torch.empty_like(v)
    dbeta = torch.empty(B, T, HV, dtype=torch.float32, device="cuda")
    dg = torch.empty(B, T, HV, dtype=torch.float32, device="cuda")
    wy.chunk_wy_bwd_kernel.fn[(meta["NT"], B * HV)](
        k, v, x["beta"], x["gcum"], x["Ai"], x["dw"], x["dv2"], x["dk_part"], x["dgp"], dk, dv, dbeta, dg, None,
        meta["chunk_indices"], T, B * T * HV, token_stride(v, "v"), token_stride(dv, "dv"), H=H, HV=HV, K=K, V=V,
        BT=CHUNK, BK=BK, BV=BV, NK=triton.cdiv(K, BK),
        IS_VARLEN=False, num_warps=warps, num_stages=stages,
    )  # fmt: skip
    return dk, dv, dbeta, dg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--out", default=str(report.RESULTS))
    args = parser.parse_args()
    rows = []
    for B, T, H, HV, K, V in SHAPES:
        x = stage_inputs(B, T, H, HV, K, V)
        for stages, warps in VARIANTS:
            if warps == 8 and (K % pick_block(K, 64) or V % pick_block(V, 64)):
                continue  # masked tiles: the 8-warp config faulted on the H100 (wy.py)
            outs = [run_variant(x, stages, warps) for _ in range(args.reps)]
            diff = [max((o[i].float() - outs[0][i].float()).abs().max().item() for o in outs[1:]) for i in range(4)]
            for _ in range(3):
                run_variant(x, stages, warps)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            for _ in range(30):
                run_variant(x, stages, warps)
            end.record()
            torch.cuda.synchronize()
            row = {"shape": f"B={B} T={T} H={H} HV={HV} K={K} V={V}", "num_stages": stages, "num_warps": warps}
            row |= dict(zip(("maxdiff_dk", "maxdiff_dv", "maxdiff_dbeta", "maxdiff_dg"), diff))
            row["ms"] = start.elapsed_time(end) / 30
            rows.append(row)
            print(row, flush=True)
    columns = ["shape", "num_stages", "num_warps", "maxdiff_dk", "maxdiff_dv", "maxdiff_dbeta", "maxdiff_dg", "ms"]
    notes = f"maxdiff: max |difference| over {args.reps} runs on identical inputs (0 = deterministic)."
    print(report.write("wy_bwd_variants", rows, columns, notes, Path(args.out)).read_text())


if __name__ == "__main__":
    main()
