"""A/B timing of two versions of the package on one GPU: the gated delta rule op and the fused GDN mixer, fwd+bwd.

Run-to-run and machine-to-machine spread (5-25% on the H100s we get) hides changes of a few percent between
separate benchmark runs. This times both versions on the same warm GPU in alternating processes (A B A B ...),
each process importing one version first on ``sys.path``:

    git archive <old-commit> megatron_hybrid | tar x -C /tmp/old          # a second copy of the package
    python bench/ab_versions.py --a . --b /tmp/old [--rounds 2] [--out bench/results]

Shapes: the Olmo Hybrid GDN at TP=1 (30 heads) and its TP=2 slice (15 heads), T=8192, K=96, V=192, bf16. Each
process reports its median (triton ``do_bench``, the host's launches included) and the median replayed from a CUDA
graph (``do_bench_cudagraph``: the GPU's time alone, steady to ~0.01 ms where do_bench moves by 0.1-0.3 ms at 15
heads, whose op is launch-bound on slow hosts); the table lists every round, so the spread is visible. Use
MEGATRON_HYBRID_AUTOTUNE=0 to compare the same launch configs (autotuning may pick different ones per version).
Writes ``ab_versions.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SHAPES = {"olmo": 30, "olmo_tp2": 15}
T, K, V = 8192, 96, 192


def _time_shape(H: int) -> dict:
    """fwd+bwd medians of the op and the mixer with H heads, for the package ``import megatron_hybrid`` finds."""
    import report  # (bench/ is this script's folder: on the child's path)
    import torch
    import triton

    from megatron_hybrid.ops import chunk_gated_delta_rule, gdn_mixer

    def bench(fn, grads):
        return triton.testing.do_bench(fn, warmup=25, rep=200, grad_to_none=grads, return_mode="median")

    def graph(fn, grads):  # None where not capturable (a host sync): the do_bench column still stands
        return report.cuda_graph_ms(fn, grads)[0]

    gen = torch.Generator(device="cuda").manual_seed(0)

    def rnd(*shape):
        return torch.randn(*shape, device="cuda", generator=gen).bfloat16().requires_grad_()

    q, k, v = rnd(1, T, H, K), rnd(1, T, H, K), rnd(1, T, H, V)
    g = (-torch.rand(1, T, H, device="cuda", generator=gen)).requires_grad_()
    beta = torch.rand(1, T, H, device="cuda", generator=gen).bfloat16().requires_grad_()
    do = torch.randn(1, T, H, V, device="cuda", generator=gen).bfloat16()

    def op_step():
        chunk_gated_delta_rule(q, k, v, g, beta, use_qk_l2norm=True)[0].backward(do)

    C = 2 * H * K + H * V
    # the projection as the layer holds it: an [s, b, .] tensor seen as [b, s, .]
    proj = torch.randn(T, 1, C + H * V, device="cuda", generator=gen).bfloat16().transpose(0, 1).requires_grad_()
    conv_w = (0.5 * torch.randn(C, 4, device="cuda", generator=gen)).bfloat16().requires_grad_()
    norm_w = torch.ones(V, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    dy = torch.randn(1, T, H * V, device="cuda", generator=gen).bfloat16()

    def mixer_step():
        gdn_mixer(proj, conv_w, g, beta, norm_w, (H, H, K, V), scale=K**-0.5, norm_eps=1e-5).backward(dy)

    op_leaves, mixer_leaves = [q, k, v, g, beta], [proj, conv_w, g, beta, norm_w]
    return {
        "op": bench(op_step, op_leaves),
        "op graph": graph(op_step, op_leaves),
        "mixer": bench(mixer_step, mixer_leaves),
        "mixer graph": graph(mixer_step, mixer_leaves),
    }


def time_here() -> dict:
    """In the child: every shape, for the package ``import megatron_hybrid`` finds."""
    import megatron_hybrid

    out = {"package": str(Path(megatron_hybrid.__file__).parent)}
    for name, H in SHAPES.items():
        for what, ms in _time_shape(H).items():
            out[f"{name} {what} ms"] = ms
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--a", default=".", help="directory holding version A's megatron_hybrid/")
    parser.add_argument("--b", required=False, help="directory holding version B's megatron_hybrid/")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=None, help="results directory (default bench/results)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:  # one measurement, in a process of its own
        print(json.dumps(time_here()), flush=True)
        return
    if not args.b:
        parser.error("--b (the second package root) is required")
    for label, root in (("a", args.a), ("b", args.b)):
        if not (Path(root) / "megatron_hybrid" / "__init__.py").is_file():
            parser.error(f"--{label} {root!r} holds no megatron_hybrid/ package")

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import report

    rows = []
    for rnd in range(args.rounds):
        for label, root in (("A", args.a), ("B", args.b)):
            # the version's root first on the path, then this checkout (for bench/ and tests/), then the caller's
            env = dict(
                os.environ, PYTHONPATH=os.pathsep.join([str(Path(root).resolve()), os.environ.get("PYTHONPATH", "")])
            )
            res = subprocess.run(
                [sys.executable, __file__, "--child", label], env=env, capture_output=True, text=True, check=True
            )
            row = {"round": rnd + 1, "version": label, **json.loads(res.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(row, flush=True)
    kinds = ("op", "op graph", "mixer", "mixer graph")
    columns = ["round", "version", "package"] + [f"{n} {w} ms" for n in SHAPES for w in kinds]
    notes = (
        f"fwd+bwd medians (triton do_bench; `graph`: replayed from a CUDA graph, the GPU's time without the host's "
        f"launches), B=1 T={T} K={K} V={V} bf16; A and B alternate on one GPU, "
        "each in its own process. op: chunk_gated_delta_rule with use_qk_l2norm; mixer: ops.gdn_mixer (conv, norms, "
        "delta rule, gated norm) without the projections."
    )
    out = Path(args.out) if args.out else None
    print(report.write("ab_versions", rows, columns, notes, out, float_format=".4f").read_text())


if __name__ == "__main__":
    main()
