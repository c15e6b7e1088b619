"""A window of training steps under the PyTorch profiler: a Chrome trace and where the GPU's time went.

``--profile-step-start N --profile-steps M`` profiles steps N .. N+M-1 (1-based, as the console counts them) on the
ranks in ``--profile-ranks`` (default: rank 0). Each profiled rank writes, into ``--profile-dir``:
- ``trace_rank{r}.json.gz``: the Chrome / Perfetto trace (open it in https://ui.perfetto.dev);
- ``gpu_time_rank{r}.json`` and ``.md``: GPU kernel time by category (communication, GEMM, attention, the
  project's Triton kernels, optimizer, other), each as a share of the window's wall time, plus how much of the
  communication ran while no compute kernel did (exposed) and how long the GPU had no kernel at all (idle: launch
  gaps, host work, synchronisation). Kernel names come from the CUDA driver, so the categories are name patterns.
  The profiler slows the host's kernel launches, so the idle share of a profiled step is an upper bound.

``python -m megatron_hybrid.training.profiler TRACE [--steps N] [--wall-ms X]`` prints the table for any trace.

That split is what says why a step is below the GEMM-bound MFU: the GEMMs' share, the non-GEMM kernels' share,
and the communication that is not hidden.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from pathlib import Path

import torch

# First match wins: flash-attention kernels can carry cutlass names, so attention comes before GEMM.
CATEGORIES = (
    ("communication", re.compile(r"nccl|all_?gather|reduce_?scatter|all_?reduce|sendrecv|broadcast", re.I)),
    ("attention", re.compile(r"flash|fmha|attention|attn|sdpa", re.I)),
    ("gemm", re.compile(r"gemm|xmma|cutlass|nvjet|cublas|matmul|wgmma", re.I)),
    ("gdn (Triton)", re.compile(r"^(chunk_|split_|conv1d_|l2norm_|gated_rms_norm_|gdn_gates_|fused_recurrent_)")),
    ("norms, swiglu (Triton)", re.compile(r"^(rms_norm_|rms_sumsq_|swiglu_)")),
    ("optimizer", re.compile(r"adam|multi_tensor|optimizer|clip", re.I)),
)
OTHER = "other (elementwise, copies, loss)"
TOP_KERNELS = 15
TOP_PER_CATEGORY = 8


def category(kernel_name: str) -> str:
    for name, pattern in CATEGORIES:
        if pattern.search(kernel_name):
            return name
    return OTHER


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of ``intervals`` as sorted, disjoint intervals."""
    merged: list[list[float]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def _outside(intervals: list[tuple[float, float]], cover: list[tuple[float, float]]) -> float:
    """Length of the union of ``intervals`` not covered by the (merged, sorted) ``cover``: one sweep over both."""
    total, first = 0.0, 0
    for a, b in _merge(intervals):
        while first < len(cover) and cover[first][1] <= a:  # ends before this interval, so before all later ones
            first += 1
        length, i = b - a, first
        while i < len(cover) and cover[i][0] < b:
            c, d = cover[i]
            length -= min(b, d) - max(a, c)
            i += 1
        total += length
    return total


def summarize(kernels: list[tuple[str, float, float]], wall_us: float, steps: int) -> dict:
    """GPU time by category for kernels given as (name, start_us, end_us) over a window of ``wall_us``.

    Shares are of the wall time. Kernels on different streams overlap, so the category shares can add up to more than
    the busy share; ``exposed communication`` is the communication time during which no compute kernel ran."""
    by_cat: dict[str, list[tuple[float, float]]] = {}
    time_by_kernel: dict[str, float] = {}
    calls: dict[str, int] = {}
    for name, start, end in kernels:
        by_cat.setdefault(category(name), []).append((start, end))
        time_by_kernel[name] = time_by_kernel.get(name, 0.0) + (end - start)
        calls[name] = calls.get(name, 0) + 1
    compute = _merge([iv for cat, ivs in by_cat.items() if cat != "communication" for iv in ivs])
    compute_time = sum(b - a for a, b in compute)
    exposed = _outside(by_cat.get("communication", []), compute)
    busy = compute_time + exposed  # the union of all kernels: compute, plus communication outside it
    wall = max(wall_us, 1e-9)
    rows = []
    for cat in [c for c, _ in CATEGORIES] + [OTHER]:
        ivs = by_cat.get(cat, [])
        ms = sum(b - a for a, b in ivs) / 1e3 / steps
        rows.append({"category": cat, "ms_per_step": ms, "share_of_wall": ms * 1e3 * steps / wall, "kernels": len(ivs)})
    ranked = sorted(time_by_kernel.items(), key=lambda kv: -kv[1])

    def kernel_row(name: str, us: float) -> dict:
        return {"kernel": name[:160], "ms_per_step": us / 1e3 / steps, "calls_per_step": calls[name] / steps}

    by_category: dict[str, list[dict]] = {}
    for name, us in ranked:  # the largest few of every category: where the next fusion would pay
        rows_of = by_category.setdefault(category(name), [])
        if len(rows_of) < TOP_PER_CATEGORY:
            rows_of.append(kernel_row(name, us))
    return {
        "steps": steps,
        "wall_ms_per_step": wall / 1e3 / steps,
        "busy_share": busy / wall,
        "idle_share": 1 - busy / wall,
        "compute_share": compute_time / wall,
        "exposed_communication_share": exposed / wall,
        "categories": rows,
        "top_kernels": [kernel_row(k, t) | {"category": category(k)} for k, t in ranked[:TOP_KERNELS]],
        "top_kernels_by_category": by_category,
    }


def to_markdown(summary: dict, title: str) -> str:
    s = summary
    lines = [
        f"# {title}",
        "",
        f"{s['steps']} step(s), {s['wall_ms_per_step']:.1f} ms of wall time per step. "
        f"GPU busy {100 * s['busy_share']:.1f}% (compute kernels {100 * s['compute_share']:.1f}%), "
        f"idle {100 * s['idle_share']:.1f}%, communication not "
        f"overlapped by compute {100 * s['exposed_communication_share']:.1f}%.",
        "",
        "| category | ms per step | share of wall time | kernels |",
        "|---|---|---|---|",
    ]
    for r in s["categories"]:
        lines.append(f"| {r['category']} | {r['ms_per_step']:.1f} | {100 * r['share_of_wall']:.1f}% | {r['kernels']} |")
    lines += ["", "Top kernels:", "", "| kernel | category | ms per step | calls per step |", "|---|---|---|---|"]
    for r in s["top_kernels"]:
        lines.append(f"| `{_cell(r['kernel'])}` | {r['category']} | {r['ms_per_step']:.2f} | {r['calls_per_step']:g} |")
    lines += ["", "Largest kernels of each category:", "", "| category | kernel | ms per step | calls per step |"]
    lines.append("|---|---|---|---|")
    for cat, rows in s.get("top_kernels_by_category", {}).items():
        for r in rows:
            lines.append(f"| {cat} | `{_cell(r['kernel'])}` | {r['ms_per_step']:.2f} | {r['calls_per_step']:g} |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "/")


DEVICE_EVENTS = ("kernel", "gpu_memcpy", "gpu_memset")  # not "gpu_user_annotation": NCCL's ranges would count twice


def kernels_from_trace(path: str | Path) -> list[tuple[str, float, float]]:
    """(name, start_us, end_us) of every GPU kernel, memcpy and memset in a Chrome trace the profiler exported."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    return [
        (e["name"], float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0.0)))
        for e in events
        if e.get("ph") == "X" and e.get("cat") in DEVICE_EVENTS
    ]


def summarize_trace(path: str | Path, steps: int, wall_us: float | None = None) -> dict:
    """``summarize`` of a trace file; without ``wall_us`` the window is the span of its device events."""
    kernels = kernels_from_trace(path)
    if wall_us is None:
        wall_us = max((b for _, _, b in kernels), default=0.0) - min((a for _, a, _ in kernels), default=0.0)
    return summarize(kernels, wall_us, steps)


class StepProfiler:
    """Wraps the step loop: ``before_step(step)`` and ``after_step(step)`` with the 1-based number of the step about
    to run / just run. Profiles steps ``start .. start + steps - 1`` on the listed ranks; a no-op elsewhere."""

    def __init__(self, start: int | None, steps: int, ranks: list[int], out_dir: str | None, rank: int, title: str):
        self.start, self.steps, self.rank, self.title = start, steps, rank, title
        self.active = start is not None and rank in ranks
        self.out_dir = Path(out_dir or "profile")
        self._prof = None
        self._t0 = 0.0

    def before_step(self, step: int) -> None:
        if not self.active or step != self.start:
            return
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
            torch.cuda.synchronize()
        self._prof = torch.profiler.profile(activities=activities, record_shapes=False, with_stack=False)
        self._prof.__enter__()
        self._t0 = _now_us()

    def after_step(self, step: int) -> Path | None:
        if self._prof is None or step != self.start + self.steps - 1:
            return None
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        wall = _now_us() - self._t0
        self._prof.__exit__(None, None, None)
        prof, self._prof = self._prof, None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        trace = self.out_dir / f"trace_rank{self.rank}.json.gz"
        prof.export_chrome_trace(str(trace))
        summary = summarize_trace(trace, self.steps, wall)
        summary["profiled_steps"] = [self.start, self.start + self.steps - 1]
        base = self.out_dir / f"gpu_time_rank{self.rank}"
        base.with_suffix(".json").write_text(json.dumps(summary, indent=2))
        base.with_suffix(".md").write_text(to_markdown(summary, f"{self.title}: GPU time, rank {self.rank}"))
        self.active = False
        return base.with_suffix(".md")


def _now_us() -> float:
    import time

    return time.perf_counter() * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="GPU time by kernel category of a profiler trace (.json[.gz])")
    parser.add_argument("trace")
    parser.add_argument("--steps", type=int, default=1, help="training steps the trace covers")
    parser.add_argument("--wall-ms", type=float, default=None, help="window length (default: span of GPU events)")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    wall = None if args.wall_ms is None else args.wall_ms * 1e3
    print(to_markdown(summarize_trace(args.trace, args.steps, wall), args.title or Path(args.trace).name), end="")


if __name__ == "__main__":
    main()
