"""Benchmark the gated-delta-rule kernels against fla 0.6.0 on identical inputs (GPU only).

Forward and forward+backward median time (triton.testing.do_bench: the op as called, host launches included), the
forward+backward replayed from a CUDA graph (the GPU's time alone), and the peak extra memory of one
forward+backward, for the Olmo Hybrid shape, its TP=2 slice, ladder shapes and a packed batch. fla is timed in the
same run when importable; on Triton < 3.7.1 on Hopper its version guard is bypassed for timing only (the output says
so). Writes bench/results/gdn_kernels.{json,md}. Run the GPU tests first (``make bench-kernels`` does).

    python bench/gdn_kernels.py [--shapes olmo,olmo_tp2,...] [--out bench/results] [--no-fla]
    python bench/gdn_kernels.py --shapes olmo_tp2,olmo --split-state 1 [--split-segments S]   (opt-in split state
        passes, MEGATRON_HYBRID_GDN_SPLIT_STATE; writes gdn_kernels_split.{json,md} instead)
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import triton

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import report  # noqa: E402

from megatron_hybrid.ops import chunk_gated_delta_rule  # noqa: E402

SHAPES = {
    # name: (B, T, H, K, V, seq lengths or None)
    "olmo": (1, 8192, 30, 96, 192, None),
    "olmo_tp2": (1, 8192, 15, 96, 192, None),
    "olmo_b2": (2, 8192, 30, 96, 192, None),
    "olmo_packed": (1, 8192, 30, 96, 192, [3000, 17, 1100, 2048, 64, 1963]),
    "ladder_h8_t2048": (1, 2048, 8, 128, 128, None),
    "ladder_h8_t8192": (1, 8192, 8, 128, 128, None),
    "ladder_h12_t4096": (1, 4096, 12, 128, 128, None),
    "ladder_h16_t2048": (1, 2048, 16, 128, 128, None),
    "ladder_h16_t8192": (1, 8192, 16, 128, 128, None),
}


def load_fla():
    try:
        import fla.ops.common.chunk_o as fla_chunk_o
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule as fla_op
    except Exception as e:  # noqa: BLE001
        return None, f"fla not importable: {e}"
    note = "fla 0.6.0"
    if not getattr(fla_chunk_o, "TRITON_ABOVE_3_7_1", True):
        fla_chunk_o.TRITON_ABOVE_3_7_1 = True
        note += (
            f" (Triton-version guard bypassed for timing only: triton {triton.__version__} is in the range"
            " fla refuses on Hopper)"
        )
    return fla_op, note


def make(B, T, H, K, V, lens, seed=0):
    torch.manual_seed(seed)
    dev, dt = "cuda", torch.bfloat16
    q = torch.randn(B, T, H, K, device=dev, dtype=dt)
    k = torch.randn(B, T, H, K, device=dev, dtype=dt)
    v = torch.randn(B, T, H, V, device=dev, dtype=dt)
    g = F.logsigmoid(torch.randn(B, T, H, device=dev, dtype=torch.float32))
    beta = torch.rand(B, T, H, device=dev, dtype=dt) * 2
    cu = None
    if lens is not None:
        assert sum(lens) == T
        cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device=dev)
    return q, k, v, g, beta, cu


HOST_ITERS = 20  # fwd+bwd calls timed on the host without a sync (~20 launches each: well inside the launch queue)


def chosen_configs() -> dict[str, str]:
    """The launch config each of our autotuned kernels ran last (the autotuner's pick, or the single config with
    MEGATRON_HYBRID_AUTOTUNE=0)."""
    from megatron_hybrid.ops.gated_delta_rule import chunk as C
    from megatron_hybrid.ops.gated_delta_rule.chunk_bwd import chunk_bwd_dv_local_kernel

    kernels = (C.chunk_wy_solve_kernel, C.chunk_wy_fwd_kernel, C.chunk_fwd_h_kernel, C.chunk_fwd_o_kernel,
               chunk_bwd_dv_local_kernel, C.chunk_bwd_dh_kernel, C.chunk_bwd_dqk_kernel,
               C.chunk_wy_bwd_kernel)  # fmt: skip
    return {kern.fn.__name__: str(getattr(kern, "best_config", None)) for kern in kernels}


class Timed:
    """One implementation on its own copy of the inputs: compiled (and autotuned) at construction, then timed as
    often as asked, so that two implementations can be timed in alternating rounds."""

    def __init__(self, fn, inputs, do, graph_error=None):
        self.fn, self.do = fn, do
        self.xs = [x.clone().requires_grad_() for x in inputs]
        self.fwd_bwd()  # compile / autotune
        torch.cuda.synchronize()
        self.fwd_ms, self.fwd_bwd_ms, self.graph_ms = [], [], []
        self.graph_error = graph_error  # set: no graph replay timing, for this reason

    def fwd(self):
        with torch.no_grad():
            self.fn(*self.xs)

    def fwd_bwd(self):
        self.fn(*self.xs).backward(self.do)

    def time_round(self):
        self.fwd_ms.append(triton.testing.do_bench(self.fwd, warmup=50, rep=300, return_mode="median"))
        self.fwd_bwd_ms.append(
            triton.testing.do_bench(self.fwd_bwd, warmup=50, rep=500, grad_to_none=self.xs, return_mode="median")
        )
        if self.graph_error is None:
            self.time_graph_replay()

    def time_graph_replay(self):
        """fwd+bwd under CUDA-graph replay (``report.cuda_graph_ms``); a failure is kept as the reason and ends it."""
        ms, self.graph_error = report.cuda_graph_ms(self.fwd_bwd, self.xs)
        if ms is not None:
            self.graph_ms.append(ms)

    def host_ms(self):
        """The host's own time per fwd+bwd (launches return before the GPU finishes): when it reaches the GPU time,
        the op is launch-bound at this shape and the GPU time is the host's."""
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(HOST_ITERS):
            self.fwd_bwd()
        return (time.perf_counter() - t0) / HOST_ITERS * 1e3

    def peak_and_outputs(self):
        """Peak extra memory (MiB) of one fwd+bwd, and its output and input gradients."""
        for x in self.xs:
            x.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        self.fwd_bwd()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        grads = [x.grad for x in self.xs]
        with torch.no_grad():
            o = self.fn(*self.xs)
        return peak, o, grads


def graph_fields(prefix: str, timed: Timed) -> dict:
    """The row's CUDA-graph replay entries for one implementation: the median over rounds, each round, and why it
    could not be captured (if so)."""
    fields = {f"{prefix}_graph_ms": statistics.median(timed.graph_ms) if timed.graph_ms else None,
              f"{prefix}_graph_ms_per_round": timed.graph_ms}  # fmt: skip
    if timed.graph_error is not None:
        fields[f"{prefix}_graph_error"] = timed.graph_error
    return fields


def time_alternating(impls, rounds):
    """``rounds`` rounds of each implementation's fwd and fwd+bwd medians, their order flipped every round: the
    card's clock and power state drift over a run (fla's fwd+bwd moved 2.98-3.97 ms at one shape across one session's
    runs), and alternating puts every implementation under the same drift."""
    for r in range(rounds):
        for impl in impls if r % 2 == 0 else impls[::-1]:
            impl.time_round()


def check_fp64(q, k, v, g, beta, cu, do, o, grads):
    """Relative RMS error of the benchmarked (autotuned) kernels against the fp64 torch reference, same inputs."""
    from megatron_hybrid.ops import torch_chunk_gated_delta_rule

    xs = [x.detach().double().requires_grad_() for x in (q, k, v, g, beta)]
    o_r, _ = torch_chunk_gated_delta_rule(*xs, cu_seqlens=cu, use_qk_l2norm=True)
    o_r.backward(do.double())
    out = {"o": ((o.double() - o_r).norm() / o_r.norm()).item()}
    for n, a, x in zip(["dq", "dk", "dv", "dg", "dbeta"], grads, xs):
        out[n] = ((a.double() - x.grad).norm() / x.grad.norm()).item()
    return out


def ms_or_dash(value, digits=3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def write_results(rows, meta, stem):
    """``stem``.json and ``stem``.md with every row so far."""
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    with open(stem + ".json", "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    lines = [f"# GDN kernel benchmark ({meta['date']})", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items() if k != "date"]
    lines += ["", "| shape | B | T | H | K | V | ours fwd ms | ours fwd+bwd ms | ours host ms | ours graph ms | "
              "ours peak MiB | fla fwd ms | fla fwd+bwd ms | fla graph ms | fla peak MiB | fwd+bwd ours/fla | "
              "per round | graph ours/fla |",
              "|" + "---|" * 18]  # fmt: skip
    for r in rows:
        name = r["shape"] + (" (packed)" if r["packed"] else "")
        spread = "{:.2f}-{:.2f}".format(*r["ratio_fwd_bwd_range"]) if "ratio_fwd_bwd_range" in r else "-"
        fla = (f"{r['fla_fwd_ms']:.3f} | {r['fla_fwd_bwd_ms']:.3f} | {ms_or_dash(r.get('fla_graph_ms'))} | "
               f"{r['fla_peak_mib']:.0f} | {r['ratio_fwd_bwd']:.2f} | {spread} | {ms_or_dash(r.get('ratio_graph'), 2)}"
               if "fla_fwd_ms" in r else "- | - | - | - | - | - | -")  # fmt: skip
        ours = (f"{r['ours_fwd_ms']:.3f} | {r['ours_fwd_bwd_ms']:.3f} | {ms_or_dash(r.get('ours_host_fwd_bwd_ms'))} | "
                f"{ms_or_dash(r.get('ours_graph_ms'))} | {r['ours_peak_mib']:.0f}")  # fmt: skip
        lines.append(f"| {name} | {r['B']} | {r['T']} | {r['H']} | {r['K']} | {r['V']} | {ours} | {fla} |")
    lines += [
        "",
        "Times: the median over the rounds (`rounds` in the JSON, ours and fla alternating, the order flipped "
        "each round) of each round's do_bench median; `per round`: the lowest and highest of the rounds' ratios. "
        "`ours host ms`: the host's time per fwd+bwd call, launches only (no sync); where it reaches `ours "
        "fwd+bwd ms`, that time is the host's launch time, not the GPU's. `graph ms`: fwd+bwd replayed from a "
        "CUDA graph (triton's do_bench_cudagraph, median over the rounds; calls back to back, no L2 flush between "
        "them): the GPU's time without the host's launches (`-`: not capturable, the reason in the JSON). Our "
        "kernels' configs per shape "
        "(autotuned, or the first of each list with MEGATRON_HYBRID_AUTOTUNE=0) are in the JSON.",
    ]
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated names from: " + ", ".join(SHAPES))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                    help="folder for gdn_kernels.json and gdn_kernels.md")  # fmt: skip
    ap.add_argument("--no-fla", action="store_true", help="do not time fla even if importable")
    ap.add_argument("--rounds", type=int, default=3,
                    help="timing rounds each, ours and fla alternating; the table gives medians")  # fmt: skip
    ap.add_argument("--no-check", dest="check", action="store_false",
                    help="skip the fp64 check of the autotuned kernels on each benchmark input")  # fmt: skip
    ap.add_argument("--split-state", default=None, metavar="MODE",
                    help="set MEGATRON_HYBRID_GDN_SPLIT_STATE (1, fwd, bwd) for our kernels; results go to "
                    "gdn_kernels_split.{json,md}")  # fmt: skip
    ap.add_argument("--split-segments", type=int, default=None, help="force S (MEGATRON_HYBRID_GDN_SPLIT_SEGMENTS)")
    args = ap.parse_args()
    suffix = ""
    if args.split_state is not None:
        os.environ["MEGATRON_HYBRID_GDN_SPLIT_STATE"] = args.split_state  # read at each forward
        suffix = "_split"
    if args.split_segments is not None:
        os.environ["MEGATRON_HYBRID_GDN_SPLIT_SEGMENTS"] = str(args.split_segments)
    assert torch.cuda.is_available(), "this benchmark needs a CUDA GPU"
    fla_op, fla_note = (None, "skipped (--no-fla)") if args.no_fla else load_fla()
    print(fla_note, flush=True)
    meta = {
        **report.environment(),  # date, card, versions, commit, command: as every benchmark records them
        "fla": fla_note,
        "dtype": "bf16 inputs, fp32 g, use_qk_l2norm=True, beta in (0, 2)",
        "split_state": f"{args.split_state} (segments: {args.split_segments or 'auto'})" if suffix else "off",
    }
    meta["warm_up_s"] = round(report.warm_up_gpu(), 1)
    meta["gpu_state_after_warm_up"] = report.gpu_state()
    rows = []
    for name in args.shapes.split(","):
        B, T, H, K, V, lens = SHAPES[name]
        q, k, v, g, beta, cu = make(B, T, H, K, V, lens)
        do = torch.randn(B, T, H, V, device="cuda", dtype=torch.bfloat16)

        def ours(q, k, v, g, beta, cu=cu):
            return chunk_gated_delta_rule(q, k, v, g, beta, cu_seqlens=cu, use_qk_l2norm=True)[0]

        row = {"shape": name, "B": B, "T": T, "H": H, "K": K, "V": V, "packed": lens, "rounds": args.rounds}
        # packed: both ops read cu_seqlens on the host (chunk indices), which a CUDA graph cannot capture
        no_graph = None if cu is None else "not timed: cu_seqlens is read on the host"
        mine = Timed(ours, (q, k, v, g, beta), do, no_graph)
        row["ours_configs"] = chosen_configs()
        theirs_timed = None
        if fla_op is not None:
            cu_l = None if cu is None else cu.long()

            def theirs(q, k, v, g, beta, cu=cu_l):
                return fla_op(q, k, v, g, beta, cu_seqlens=cu, use_qk_l2norm_in_kernel=True)[0]

            theirs_timed = Timed(theirs, (q, k, v, g, beta), do, no_graph)
        time_alternating([t for t in (mine, theirs_timed) if t is not None], args.rounds)
        t_f, t_fb = statistics.median(mine.fwd_ms), statistics.median(mine.fwd_bwd_ms)
        t_host = mine.host_ms()
        peak, o, grads = mine.peak_and_outputs()
        row.update(ours_fwd_ms=t_f, ours_fwd_bwd_ms=t_fb, ours_peak_mib=peak, ours_host_fwd_bwd_ms=t_host,
                   ours_fwd_bwd_ms_per_round=mine.fwd_bwd_ms, **graph_fields("ours", mine))  # fmt: skip
        if theirs_timed is not None:
            f_peak, f_o, f_grads = theirs_timed.peak_and_outputs()
            f_fb = statistics.median(theirs_timed.fwd_bwd_ms)
            per_round = [a / b for a, b in zip(mine.fwd_bwd_ms, theirs_timed.fwd_bwd_ms)]
            row.update(fla_fwd_ms=statistics.median(theirs_timed.fwd_ms), fla_fwd_bwd_ms=f_fb, fla_peak_mib=f_peak,
                       fla_fwd_bwd_ms_per_round=theirs_timed.fwd_bwd_ms, ratio_fwd_bwd=t_fb / f_fb,
                       ratio_fwd_bwd_range=[min(per_round), max(per_round)],
                       **graph_fields("fla", theirs_timed))  # fmt: skip
            if row["ours_graph_ms"] is not None and row["fla_graph_ms"] is not None:
                row["ratio_graph"] = row["ours_graph_ms"] / row["fla_graph_ms"]

            def rel(a, b):
                return ((a.float() - b.float()).norm() / b.float().norm()).item()

            row["rel_diff_vs_fla"] = {"o": rel(o, f_o)}
            # (fla's gated backward is known to be miscompiled on Triton < 3.7.1 on Hopper: a gradient difference
            # here is not by itself an error of ours; the fp64 check below is the correctness gate.)
            for n, a, b in zip(["dq", "dk", "dv", "dg", "dbeta"], grads, f_grads):
                row["rel_diff_vs_fla"][n] = rel(a, b)
            del theirs_timed, f_o, f_grads
        if args.check:
            row["rel_err_vs_fp64"] = check_fp64(q, k, v, g, beta, cu, do, o, grads)
            bad = {n: e for n, e in row["rel_err_vs_fp64"].items() if e > (5e-3 if n == "o" else 1e-2)}
            if bad:
                raise SystemExit(f"{name}: autotuned kernels off the fp64 reference: {bad}")
        rows.append(row)
        msg = (f"{name:18s} ours fwd {t_f:.3f} ms fwd+bwd {t_fb:.3f} ms (host {t_host:.3f}, graph "
               f"{ms_or_dash(row['ours_graph_ms'])}) peak {peak:.0f} MiB")  # fmt: skip
        if fla_op is not None:
            msg += (f" | fla fwd {row['fla_fwd_ms']:.3f} fwd+bwd {row['fla_fwd_bwd_ms']:.3f} (graph "
                    f"{ms_or_dash(row['fla_graph_ms'])}) peak {row['fla_peak_mib']:.0f}")  # fmt: skip
            lo, hi = row["ratio_fwd_bwd_range"]
            msg += f" | ratio {row['ratio_fwd_bwd']:.2f} (rounds {lo:.2f}-{hi:.2f})"
        print(msg, flush=True)
        del q, k, v, g, beta, do, mine, o, grads
        torch.cuda.empty_cache()
        write_results(rows, meta, os.path.join(args.out, f"gdn_kernels{suffix}"))  # after each shape: a time limit
    print(pathlib.Path(args.out, f"gdn_kernels{suffix}.md").read_text())  # keeps what finished


if __name__ == "__main__":
    main()
