"""Collective bandwidth inside one node: all-reduce, all-gather and reduce-scatter over message sizes.

Run under torchrun, one process per GPU; rank 0 writes ``bench/results/<name>.{json,md}``:

    torchrun --standalone --nproc-per-node 8 bench/nccl_bandwidth.py                     # one group of 8
    torchrun --standalone --nproc-per-node 8 bench/nccl_bandwidth.py --group-sizes 2 4 8  # + TP-like groups
    torchrun --standalone --nproc-per-node 2 bench/nccl_bandwidth.py --backend gloo --device cpu \\
        --min-bytes 1024 --max-bytes 65536                                                # CPU check

``--group-sizes g`` splits the world into world/g groups of g consecutive ranks that run the
collective at the same time (how tensor-parallel groups share a node); the reported time is the
slowest rank's. Conventions are nccl-tests': ``bytes`` is the whole buffer (the all-reduce buffer,
the all-gather output, the reduce-scatter input); ``algbw = bytes / time``; ``busbw`` is algbw
times 2(n-1)/n for all-reduce and (n-1)/n for all-gather and reduce-scatter, n the group size, so
that it compares with the link bandwidth at any n. GB/s are 1e9 bytes per second. Each time is the
median over ``--repeats`` trials of ``--iters`` back-to-back collectives (CUDA events on a GPU),
after ``--warmup`` untimed ones.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402

OPS = ("all_reduce", "all_gather", "reduce_scatter")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def bus_factor(op: str, n: int) -> float:
    """busbw / algbw for a collective over ``n`` ranks (nccl-tests' PERFORMANCE.md)."""
    if op == "all_reduce":
        return 2 * (n - 1) / n
    if op in ("all_gather", "reduce_scatter"):
        return (n - 1) / n
    raise ValueError(f"unknown collective {op!r}; choose one of {OPS}")


def message_sizes(min_bytes: int, max_bytes: int, factor: int = 4) -> list[int]:
    """min_bytes, min_bytes * factor, ... up to max_bytes (max_bytes itself always included)."""
    if min_bytes < 1 or max_bytes < min_bytes or factor < 2:
        raise ValueError(f"need 1 <= min_bytes <= max_bytes and factor >= 2, got {min_bytes}, {max_bytes}, {factor}")
    sizes, size = [], min_bytes
    while size < max_bytes:
        sizes.append(size)
        size *= factor
    return sizes + [max_bytes]


def human(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:g} {unit}"
    return f"{nbytes} B"


def _buffers(op: str, numel: int, n: int, dtype, device):
    """(input, output) of one collective whose whole buffer holds ``numel`` elements."""
    if op == "all_reduce":
        buf = torch.zeros(numel, dtype=dtype, device=device)  # zeros: repeated sums never overflow
        return buf, buf
    if op == "all_gather":
        return torch.zeros(numel // n, dtype=dtype, device=device), torch.empty(numel, dtype=dtype, device=device)
    return torch.zeros(numel, dtype=dtype, device=device), torch.empty(numel // n, dtype=dtype, device=device)


# torch >= 2.13 names the tensor forms *_single (the *_tensor names warn); older torch has only those.
_ALL_GATHER = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_REDUCE_SCATTER = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def _launch(op: str, inp, out, group) -> None:
    if op == "all_reduce":
        dist.all_reduce(inp, group=group)
    elif op == "all_gather":
        _ALL_GATHER(out, inp, group=group)
    else:
        _REDUCE_SCATTER(out, inp, group=group)


def time_collective(op, inp, out, group, device, warmup: int, iters: int, repeats: int) -> float:
    """Seconds per collective on this rank: the median over ``repeats`` trials of ``iters`` calls."""
    for _ in range(warmup):
        _launch(op, inp, out, group)
    trials = []
    for _ in range(repeats):
        dist.barrier()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                _launch(op, inp, out, group)
            end.record()
            end.synchronize()
            trials.append(start.elapsed_time(end) / 1e3 / iters)
        else:
            t0 = time.perf_counter()
            for _ in range(iters):
                _launch(op, inp, out, group)
            trials.append((time.perf_counter() - t0) / iters)
    return statistics.median(trials)


def make_groups(group_size: int):
    """This rank's group among world/group_size groups of consecutive ranks (None: the whole world)."""
    world, rank = dist.get_world_size(), dist.get_rank()
    if world % group_size or group_size < 2:
        raise ValueError(f"group size {group_size} must be >= 2 and divide the world size {world}")
    if group_size == world:
        return None
    mine = None
    for first in range(0, world, group_size):  # every rank creates every group, in the same order
        group = dist.new_group(list(range(first, first + group_size)))
        if first <= rank < first + group_size:
            mine = group
    return mine


def measure(
    ops=OPS,
    sizes=(2**20,),
    group_sizes=None,
    dtype=torch.bfloat16,
    device=None,
    warmup: int = 5,
    iters: int = 20,
    repeats: int = 5,
) -> list[dict]:
    """Rows (op, group size, bytes, time, algbw, busbw) on an initialised process group; same on every rank."""
    device = device or torch.device("cpu")
    world = dist.get_world_size()
    elem = torch.tensor([], dtype=dtype).element_size()
    rows = []
    for n in group_sizes or [world]:
        group = make_groups(n)
        for op in ops:
            for size in sizes:
                numel = max(n, size // elem // n * n)  # a whole number of elements per rank
                nbytes = numel * elem
                inp, out = _buffers(op, numel, n, dtype, device)
                seconds = time_collective(op, inp, out, group, device, warmup, iters, repeats)
                slowest = torch.tensor([seconds], dtype=torch.float64, device=device)
                dist.all_reduce(slowest, op=dist.ReduceOp.MAX)  # a collective ends when its slowest rank does
                seconds = float(slowest.item())
                algbw = nbytes / seconds / 1e9
                rows.append(
                    {
                        "op": op,
                        "ranks": n,
                        "groups": world // n,
                        "bytes": nbytes,
                        "size": human(nbytes),
                        "time_us": seconds * 1e6,
                        "algbw_gbps": algbw,
                        "busbw_gbps": algbw * bus_factor(op, n),
                    }
                )
                del inp, out
    return rows


def summary(rows: list[dict]) -> str:
    """Per op and group size: the peak bus bandwidth and the latency at the smallest size."""
    lines = ["| op | ranks | peak busbw GB/s | at size | smallest size | its time us |", "|---|---|---|---|---|---|"]
    for key in sorted({(r["op"], r["ranks"]) for r in rows}):
        mine = [r for r in rows if (r["op"], r["ranks"]) == key]
        best = max(mine, key=lambda r: r["busbw_gbps"])
        small = min(mine, key=lambda r: r["bytes"])
        lines.append(
            f"| {key[0]} | {key[1]} | {best['busbw_gbps']:.3g} | {best['size']} | {small['size']} | "
            f"{small['time_us']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="nccl", help="nccl (GPUs) or gloo (CPU test)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    parser.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
    parser.add_argument("--min-bytes", type=int, default=1024, help="smallest message (latency end)")
    parser.add_argument("--max-bytes", type=int, default=2**30, help="largest message (1 GiB)")
    parser.add_argument("--factor", type=int, default=4, help="ratio between successive sizes")
    parser.add_argument("--group-sizes", type=int, nargs="+", default=None, help="default: the whole world")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20, help="back-to-back collectives per trial")
    parser.add_argument("--repeats", type=int, default=5, help="trials; the median is reported")
    parser.add_argument("--name", default=None, help="results file name (default nccl_bandwidth_<N>gpu)")
    parser.add_argument("--out", default=None, help="results directory (default bench/results)")
    args = parser.parse_args(argv)

    if args.device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
    dist.init_process_group(backend=args.backend)
    try:
        world = dist.get_world_size()
        sizes = message_sizes(args.min_bytes, args.max_bytes, args.factor)
        rows = measure(
            args.ops, sizes, args.group_sizes, DTYPES[args.dtype], device, args.warmup, args.iters, args.repeats
        )
        if dist.get_rank() == 0:
            name = args.name or f"nccl_bandwidth_{world}gpu"
            unit = "GPU" if device.type == "cuda" else "CPU process"
            notes = (
                f"{world} {unit}(es) on one node, backend {args.backend}, {args.dtype}. nccl-tests conventions: "
                "`bytes` is the whole buffer (all-reduce buffer, all-gather output, reduce-scatter input); "
                "algbw = bytes / time; busbw = algbw x 2(n-1)/n (all-reduce) or x (n-1)/n (all-gather, "
                "reduce-scatter), n = `ranks`; `groups` groups of `ranks` consecutive ranks ran at once. "
                f"Time: median of {args.repeats} trials of {args.iters} back-to-back calls after {args.warmup} "
                "warm-up calls, slowest rank. GB/s = 1e9 B/s.\n\n" + summary(rows)
            )
            columns = ["op", "ranks", "groups", "size", "time_us", "algbw_gbps", "busbw_gbps"]
            path = report.write(name, rows, columns, notes, out_dir=Path(args.out) if args.out else None)
            print(path.read_text(), flush=True)
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
