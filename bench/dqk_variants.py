"""dq/dk with the chunks' dP computed once, against the op's kernels, on the GPU (an experiment, not yet the op's path).

    python bench/dqk_variants.py [--shapes olmo,olmo_tp2] [--rounds 3] [--out bench/results]

``chunk_bwd_dqk`` runs one program per (K block, chunk, value head), and each of a chunk's K blocks (3 at K=96)
computes the same do v_new^T product over all of V (40% of its tensor-core work) and its decay mask. The variant
has ``chunk_bwd_dv_local`` (one program per chunk and value head, already loading do) compute the masked
dP = scale (do v_new^T) * D once, store it in fp32 ([B, T, HV, 64]: 63 MB at T=8192, 30 heads) and has dqk read it.
Both pairs (dv_local + dqk) are timed with triton ``do_bench`` in alternating rounds, autotuned as the op runs them,
and their outputs compared. Writes ``dqk_variants.{json,md}``.
"""

# ruff: noqa: B023  (the timed lambdas run inside the loop iteration that defines them)
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402
from gdn_breakdown import stage_inputs  # noqa: E402
from gdn_config_sweep import rel_rms  # noqa: E402

from megatron_hybrid.ops.gated_delta_rule import chunk as C  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule.chunk_bwd import chunk_bwd_dv_local  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule.utils import CHUNK  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="olmo,olmo_tp2", help="shape names from bench/gdn_kernels.py")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(report.RESULTS))
    args = parser.parse_args()
    report.warm_up_gpu()
    rows = []
    for name in args.shapes.split(","):
        q, k, v, g, beta, do, scale, meta, gcum, Ai, w, u, h, v_new, dv2, dh, dk_part, dw, dgp = stage_inputs(name)
        B, T, HV = v.shape[0], v.shape[1], v.shape[2]
        dP = torch.empty(B, T, HV, CHUNK, dtype=torch.float32, device=v.device)

        def op_pair():
            chunk_bwd_dv_local(q, k, gcum, do, scale, meta)
            return C.chunk_bwd_dqk(q, k, gcum, h, dh, v_new, dv2, do, scale, meta)

        def variant_pair():
            chunk_bwd_dv_local(q, k, gcum, do, scale, meta, v_new=v_new, dp_out=dP)
            return C.chunk_bwd_dqk(q, k, gcum, h, dh, v_new, dv2, do, scale, meta, dP=dP)

        pairs = zip(("dq", "dk_part", "dw", "dgp"), variant_pair(), op_pair())
        errors = {f"rel_{n}": rel_rms(a, b) for n, a, b in pairs}
        stages = {
            "op: dv_local": lambda: chunk_bwd_dv_local(q, k, gcum, do, scale, meta),
            "op: dqk": lambda: C.chunk_bwd_dqk(q, k, gcum, h, dh, v_new, dv2, do, scale, meta),
            "variant: dv_local + dP": lambda: chunk_bwd_dv_local(q, k, gcum, do, scale, meta, v_new=v_new, dp_out=dP),
            "variant: dqk reading dP": lambda: C.chunk_bwd_dqk(q, k, gcum, h, dh, v_new, dv2, do, scale, meta, dP=dP),
            "op: pair": op_pair,
            "variant: pair": variant_pair,
        }
        times: dict[str, list[float]] = {s: [] for s in stages}
        for r in range(args.rounds):
            order = list(stages) if r % 2 == 0 else list(reversed(stages))
            for s in order:
                times[s].append(triton.testing.do_bench(stages[s], warmup=25, rep=200, return_mode="median"))
        for s, ts in times.items():
            per_round = ", ".join(f"{t:.3f}" for t in ts)
            row = {"shape": name, "stage": s, "ms": statistics.median(ts), "per_round": per_round}
            rows.append(row | (errors if s == "variant: pair" else {}))
            print(f"{name:10s} {s:28s} {row['ms']:.3f} ms ({row['per_round']})", flush=True)
        print(f"{name:10s} variant vs op: {errors}", flush=True)
    columns = ["shape", "stage", "ms", "per_round", "rel_dq", "rel_dk_part", "rel_dw", "rel_dgp"]
    notes = (
        "Medians over alternating rounds of triton do_bench medians; autotuned as the op runs them. rel_*: relative "
        "RMS difference of the variant's outputs from the op's on the same inputs."
    )
    print(report.write("dqk_variants", rows, columns, notes, Path(args.out)).read_text())


if __name__ == "__main__":
    main()
