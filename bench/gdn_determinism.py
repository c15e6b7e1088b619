"""Determinism of each gated-delta-rule kernel stage on the GPU: every stage runs several times on the same inputs
and its outputs are compared bit for bit (a race shows as a nonzero max |diff|).

    python bench/gdn_determinism.py [--reps 4] [--out bench/results]

Shapes: the Olmo TP=2 slice (15 heads, T=2048), a 2-head sequence, the full Olmo shape (30 heads, T=8192), and two
of the GPU tests' shapes (K = V = 256 with a 9-token tail chunk; K=192, V=96), with an initial state and a
final-state gradient. On
2026-11-26 this found the pipelined wy backward's race (dbeta, dg; the kernel then ran unpipelined, num_stages=1 in
``wy.py``); the other stages were bit-identical. On 2026-11-27 (session 15) the rewritten wy backward, pipelined
again, was bit-identical at every shape here. Since session 17 it also runs the op's other paths: the output kernel
keeping q k^T * D and the reverse pass from it (``MEGATRON_HYBRID_GDN_KEEP_QK``), and the wy backward with k's
L2-norm backward folded in (one value head per key head); since session 18 the op's L2 norms everywhere they run: the
solve normalising k, the output kernel normalising q, and the wy backward taking q's norm backward with k's.
Writes ``gdn_determinism.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402

from megatron_hybrid.ops.gated_delta_rule import chunk as C  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule.chunk_bwd import chunk_bwd_dqk  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule.chunk_h import chunk_bwd_dh, chunk_fwd_h  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule.chunk_o import chunk_fwd_o  # noqa: E402
from megatron_hybrid.ops.gated_delta_rule.wy import chunk_wy_bwd, chunk_wy_fwd  # noqa: E402
from megatron_hybrid.ops.norms import L2NORM_EPS, l2norm, l2norm_fwd  # noqa: E402

SHAPES = [
    (1, 2048, 15, 15, 96, 192),
    (1, 1100, 2, 2, 96, 192),
    (1, 8192, 30, 30, 96, 192),
    (1, 777, 1, 2, 256, 256),  # the GPU tests' widest heads, grouped values, a 9-token tail chunk
    (2, 63, 2, 2, 192, 96),
]
STAGES = ("gcum", "Ai", "w", "u", "h", "v_new", "o", "Aqk", "dv2", "dh", "dv2 from Aqk", "dh from Aqk", "dq", "dk_part",
          "dw", "dgp", "dk", "dv", "dbeta", "dg", "dk norm folded", "k normed in solve", "q normed in fwd_o",
          "dq norm folded")  # fmt: skip


def stages_once(q, k, k_rstd, q_raw, k_raw, v, g, beta, do, h0, dht, meta) -> tuple[torch.Tensor, ...]:
    K = q.shape[-1]
    gcum, Ai, w, u = chunk_wy_fwd(k, v, g, beta, meta)
    h, v_new, _ = chunk_fwd_h(k, w, u, gcum, h0, False, meta)
    o, Aqk = chunk_fwd_o(q, k, v_new, h, gcum, K**-0.5, meta, keep_qk=True)
    dv2, dh, _ = chunk_bwd_dh(q, k, w, gcum, do, dht, h0, K**-0.5, meta)
    dv2_a, dh_a, _ = chunk_bwd_dh(q, k, w, gcum, do, dht, h0, K**-0.5, meta, Aqk=Aqk)
    dq, dk_part, dw, dgp = chunk_bwd_dqk(q, k, gcum, h, dh, v_new, dv2, do, K**-0.5, meta)
    wy_args = (k, v, beta, gcum, Ai, dw, dv2, dk_part, dgp, meta)
    dk, dv, dbeta, dg = chunk_wy_bwd(*wy_args)
    dk_n = dq_n = torch.zeros(())
    if v.shape[2] == k.shape[2]:  # the wy backward takes the norms' backward with one value head per key head
        dk_n = chunk_wy_bwd(*wy_args, k_rstd=k_rstd)[0]
        dq_n = torch.empty_like(dq)
        chunk_wy_bwd(*wy_args, k_rstd=k_rstd, q_norm=(q, dq, k_rstd, dq_n))  # (k's rstd: any [B*T*H] will do)
    # the forward's L2 norms in the solve (k) and the output kernel (q), from raw rows
    k_n, q_n = torch.empty_like(k), torch.empty_like(q)
    rstd = torch.empty(2, k.numel() // K, dtype=torch.float32, device=k.device)
    _, Ai_n, _, _ = chunk_wy_fwd(k_raw, v, g, beta, meta, k_norm=(k_n, rstd[1], L2NORM_EPS))
    o_n, _ = chunk_fwd_o(q_raw, k, v_new, h, gcum, K**-0.5, meta, q_norm=(q_n, rstd[0], L2NORM_EPS))
    solve_n = torch.cat([k_n.float().flatten(), Ai_n.float().flatten(), rstd[1]])
    fwd_o_n = torch.cat([q_n.float().flatten(), o_n.float().flatten(), rstd[0]])
    return (gcum, Ai, w, u, h, v_new, o, Aqk, dv2, dh, dv2_a, dh_a, dq, dk_part, dw, dgp, dk, dv, dbeta, dg, dk_n,
            solve_n, fwd_o_n, dq_n)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--out", default=str(report.RESULTS))
    args = parser.parse_args()
    rows = []
    for B, T, H, HV, K, V in SHAPES:
        gen = torch.Generator(device="cuda").manual_seed(0)

        def rnd(*shape, gen=gen):
            return torch.randn(*shape, device="cuda", generator=gen)

        q_raw, k_raw = rnd(B, T, H, K).bfloat16(), rnd(B, T, H, K).bfloat16()
        q = l2norm(q_raw)
        k, k_rstd = l2norm_fwd(k_raw.view(-1, K), eps=L2NORM_EPS)
        k, k_rstd = k.view(B, T, H, K), k_rstd[0]
        v, do = rnd(B, T, HV, V).bfloat16(), rnd(B, T, HV, V).bfloat16()
        g = -torch.rand(B, T, HV, device="cuda", generator=gen)
        beta = torch.rand(B, T, HV, device="cuda", generator=gen).bfloat16()
        meta = C._meta(B, T, None)
        C._split_plan(meta, q, v)
        h0, dht = rnd(B, HV, K, V), rnd(B, HV, K, V)  # an initial state and a final-state gradient, as the tests use
        inputs = (q, k, k_rstd, q_raw, k_raw, v, g, beta, do, h0, dht, meta)
        runs = [[x.clone() for x in stages_once(*inputs)] for _ in range(args.reps)]
        row = {"shape": f"B={B} T={T} H={H} HV={HV} K={K} V={V}"}
        for i, name in enumerate(STAGES):
            row[name] = max((r[i].float() - runs[0][i].float()).abs().max().item() for r in runs[1:])
        rows.append(row)
        print(row, flush=True)
    notes = f"Max |difference| between {args.reps} runs of each stage on identical inputs (0 = bit-identical)."
    print(report.write("gdn_determinism", rows, ["shape", *STAGES], notes, Path(args.out)).read_text())


if __name__ == "__main__":
    main()
