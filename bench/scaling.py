"""ESTIMATE of the 7B runs at 8 and 64 nodes from one-node measurements: an analytic model, not a run.

Inputs (the measurements it rests on, all listed in the output):

* ``bench/results/model_step*.json`` (``bench/model_step.py``): each row is one arm's measured
  tokens/s per GPU and peak memory at a measured layout (``TP=.. PP=.. VP=.. DP=.., N micro-batch(es)
  of B x S per step``). The per-GPU compute rate (model FLOP/s, the trainer's own FLOP count) is
  recovered by inverting the step model below at that layout, i.e. the modelled communication of
  the measured run is taken out. A candidate TP uses the row measured at that TP, else the nearest
  measured TP (flagged in ``compute_from``: GEMMs and the GDN kernel get less efficient at higher TP,
  so a rate borrowed from a lower TP flatters a higher one, and one borrowed from a higher TP
  understates a lower one).
* ``bench/results/nccl_bandwidth_*gpu.json`` (``bench/nccl_bandwidth.py``): intra-node bus bandwidth
  per collective, group size and message size (log-log interpolation; the smallest size's time is
  the latency floor).
* An ASSUMED inter-node bandwidth: ``--inter-node-busbw`` GB/s per GPU (default 45: one 400 Gb/s
  InfiniBand NIC per GPU, a typical measured bus bandwidth). A data-parallel group with k GPUs per
  node drives k NICs, so its bus bandwidth is k x that, capped by the measured NVLink value
  (``--no-nic-aggregation``: always 1 x); each of the n-1 ring steps adds ``--inter-node-latency-us``.

Step model, per GPU, per optimizer step (m micro-batches per DP rank, Megatron rank order TP, DP, PP):

* compute: m x FLOPs(micro-batch) / (TP x PP) / rate;
* TP with sequence parallelism, inside a node, not overlapped: per layer and micro-batch 6
  all-gathers + 4 reduce-scatters of the s x b x d bf16 activation (forward 2 + 2; backward 2 + 2 and
  the re-gather of the inputs for the weight gradients), plus 3 + 2 for the embedding and LM head;
* DP with the distributed optimizer: reduce-scatter of the gradient buffer (fp32 when the trainer's
  ``grad_reduce_in_fp32``, as the 7B configs set) and all-gather of the bf16 parameters, over the
  stage's parameters / TP, in Megatron's buckets (max(40M, 1M x DP) parameters). With the trainer's
  ``overlap_grad_reduce`` / ``overlap_param_gather`` (on in the 7B configs), all but the last grad
  bucket hide under the backward of the last micro-batch and all but the first param bucket under the
  forward of the first, times ``--overlap`` (default 1.0); without them, or beyond that window, exposed;
* PP (1F1B): a bubble of (PP-1) micro-batch slots, and two p2p sends of the s/TP x b x d activation per
  micro-batch, across nodes when a pipeline stage spans nodes;
* memory (stage 0, ``megatron_hybrid.training.estimate``): weights, gradients and distributed-optimizer
  state analytic; activations the analytic per-layer figure scaled by what the measured peak left
  after the analytic static part (so allocator slack and buffers scale with it). A layout above
  ``--memory-budget-gib`` is never chosen.

    python bench/scaling.py                                        # inputs from bench/results/
    python bench/scaling.py --model-step a.json b.json --nccl bench/results/nccl_bandwidth_8gpu.json \\
        --inter-node-busbw 45 --nodes 8 64 --out bench/results

Results: ``bench/results/scaling_estimate.{json,md}``.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import report  # noqa: E402

from megatron_hybrid.training import model as model_api  # noqa: E402
from megatron_hybrid.training.config import TrainConfig, load_config  # noqa: E402
from megatron_hybrid.training.estimate import memory_estimate  # noqa: E402

GB = 1e9
LAYOUT = re.compile(
    r"TP=(?P<tp>\d+) PP=(?P<pp>\d+) VP=(?P<vp>\w+) DP=(?P<dp>\d+), (?P<micro>\d+) micro-batch\(es\) of "
    r"(?P<mb>\d+) x (?P<seq>\d+)"
)
BUS_FACTOR = {"all_reduce": lambda n: 2 * (n - 1) / n, "all_gather": lambda n: (n - 1) / n}
BUS_FACTOR["reduce_scatter"] = BUS_FACTOR["all_gather"]


def bus_factor(op: str, n: int) -> float:
    return BUS_FACTOR[op](n)


# ---------------------------------------------------------------------------------------------
# Inputs


def read_results(path: str | Path) -> dict:
    data = json.loads(Path(path).read_text())
    if "rows" not in data:
        raise ValueError(f"{path}: not a bench results file (no 'rows')")
    return data


@dataclass
class Measured:
    """One model_step row: an arm's step at a measured layout."""

    arm: str
    layers: int | None  # None: the preset's depth
    gpus: int
    tp: int
    pp: int
    dp: int
    micro_batches: int
    micro_batch: int
    seq: int
    tokens_per_s_per_gpu: float
    peak_memory_gib: float
    source: str

    @property
    def tokens_per_step(self) -> int:
        return self.micro_batches * self.micro_batch * self.seq * self.dp

    @property
    def step_s(self) -> float:
        return self.tokens_per_step / (self.tokens_per_s_per_gpu * self.gpus)


def summary_rows(rows: list[dict]) -> list[dict]:
    """A model_step record's rows to calibrate on: with several rounds (``round`` 1, 2, ..., then ``median``), each
    arm's median row only, so that no single round's time stands for the arm; else every row."""
    medians = {r.get("arm") for r in rows if r.get("round") == "median"}
    return [r for r in rows if r.get("arm") not in medians or r.get("round") == "median"]


def parse_model_step_row(row: dict, source: str) -> Measured:
    found = LAYOUT.search(row.get("layout", ""))
    if not found:
        raise ValueError(f"{source}: row for {row.get('arm')!r} has no parseable layout: {row.get('layout')!r}")
    if found["vp"] != "None":
        raise ValueError(f"{source}: interleaved pipelining (VP={found['vp']}) is not modelled")
    layers = row.get("layers", "all")
    return Measured(
        arm=row["arm"],
        layers=None if layers in ("all", None) else int(layers),
        gpus=int(row["gpus"]),
        tp=int(found["tp"]),
        pp=int(found["pp"]),
        dp=int(found["dp"]),
        micro_batches=int(found["micro"]),
        micro_batch=int(found["mb"]),
        seq=int(found["seq"]),
        tokens_per_s_per_gpu=float(row["tokens_per_s_per_gpu"]),
        peak_memory_gib=float(row.get("peak_memory_gib", float("nan"))),
        source=source,
    )


class NcclTable:
    """Measured intra-node collectives: time of (op, bytes) over a group of ``ranks``."""

    def __init__(self, rows: list[dict]):
        self.curves: dict[tuple[str, int], list[tuple[int, float, float]]] = {}
        for r in rows:
            self.curves.setdefault((r["op"], int(r["ranks"])), []).append(
                (int(r["bytes"]), float(r["time_us"]) * 1e-6, float(r["busbw_gbps"]) * GB)
            )
        for curve in self.curves.values():
            curve.sort()
        if not self.curves:
            raise ValueError("no NCCL measurements")

    def _curve(self, op: str, ranks: int) -> list[tuple[int, float, float]]:
        sizes = [n for o, n in self.curves if o == op]
        if not sizes:
            raise ValueError(f"no NCCL measurement of {op}")
        nearest = min(sizes, key=lambda n: (abs(math.log(n / ranks)), n))  # busbw barely depends on n
        return self.curves[(op, nearest)]

    def busbw(self, op: str, nbytes: float, ranks: int) -> float:
        """Bus bandwidth (B/s) at this size: log-log interpolation, clamped to the measured range."""
        curve = self._curve(op, ranks)
        sizes = [c[0] for c in curve]
        i = bisect.bisect_left(sizes, nbytes)
        if i == 0:
            return curve[0][2]
        if i == len(curve):
            return curve[-1][2]
        (s0, _, b0), (s1, _, b1) = curve[i - 1], curve[i]
        w = math.log(nbytes / s0) / math.log(s1 / s0)
        return math.exp((1 - w) * math.log(b0) + w * math.log(b1))

    def time(self, op: str, nbytes: float, ranks: int) -> float:
        if ranks < 2 or nbytes <= 0:
            return 0.0
        curve = self._curve(op, ranks)
        if nbytes <= curve[0][0]:
            return curve[0][1]  # latency floor: the smallest measured message
        return nbytes * bus_factor(op, ranks) / self.busbw(op, nbytes, ranks)


@dataclass
class Network:
    intra: NcclTable
    gpus_per_node: int = 8
    inter_busbw: float = 45 * GB
    nic_aggregation: bool = True
    inter_step_latency: float = 5e-6

    def collective(self, op: str, nbytes: float, ranks: int, ranks_per_node: int) -> float:
        """Seconds for a collective over ``ranks`` ranks, ``ranks_per_node`` of them in each node."""
        if ranks < 2 or nbytes <= 0:
            return 0.0
        if ranks <= ranks_per_node:
            return self.intra.time(op, nbytes, ranks)
        busbw = self.inter_busbw * (ranks_per_node if self.nic_aggregation else 1)
        if ranks_per_node > 1:
            busbw = min(busbw, self.intra.busbw(op, nbytes, ranks_per_node))
        return (ranks - 1) * self.inter_step_latency + nbytes * bus_factor(op, ranks) / busbw

    def p2p(self, nbytes: float, inter_node: bool) -> float:
        if nbytes <= 0:
            return 0.0
        if inter_node:
            return self.inter_step_latency + nbytes / self.inter_busbw
        # all-gather of 2 x nbytes over 2 ranks moves nbytes per rank over one link, as a send does
        return self.intra.time("all_gather", 2 * nbytes, 2)


# ---------------------------------------------------------------------------------------------
# The arms and the step model


def arm_config(arm: str) -> TrainConfig:
    """The trainer's config of this arm (precision, grad dtype, optimizer, overlap flags)."""
    try:
        return load_config(arm)
    except FileNotFoundError:
        return TrainConfig(model=arm, train_iters=1)


def layout_config(base: TrainConfig, tp: int, pp: int, seq: int, global_batch: int, micro_batch: int) -> TrainConfig:
    return dataclasses.replace(
        base,
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        virtual_pipeline_model_parallel_size=None,
        sequence_parallel=tp > 1,
        seq_length=seq,
        global_batch_size=global_batch,
        micro_batch_size=micro_batch,
    )


def stage_params(model, tp: int, pp: int) -> float:
    """Parameters per GPU on the most loaded stage (the first: its layers and the embedding)."""
    embedding = model.vocab_size * model.d_model
    per_layer = (model_api.num_params(model) - 2 * embedding) / model.n_layers
    params = (per_layer * model.n_layers / pp + embedding) / tp
    return params + (embedding / tp if pp == 1 else 0.0)


def step_breakdown(model, cfg: TrainConfig, world: int, rate: float, net: Network, overlap: float) -> dict:
    """Seconds per optimizer step on one GPU, by part, at a compute rate of ``rate`` model FLOP/s."""
    tp, pp = cfg.tensor_model_parallel_size, cfg.pipeline_model_parallel_size
    dp = world // (tp * pp)
    s, b = cfg.seq_length, cfg.micro_batch_size
    micro = cfg.global_batch_size // (b * dp)
    per_node = net.gpus_per_node
    t_mb = model_api.flops_per_token(model, s) * s * b / (tp * pp) / rate

    act_bytes = 2.0 * s * b * model.d_model  # bf16 hidden states
    tp_mb = 0.0
    if tp > 1:
        ag, rs = net.intra.time("all_gather", act_bytes, tp), net.intra.time("reduce_scatter", act_bytes, tp)
        tp_mb = model.n_layers / pp * (6 * ag + 4 * rs) + 3 * ag + 2 * rs

    bubble = (pp - 1) * (t_mb + tp_mb)
    p2p = 0.0
    if pp > 1:
        p2p = 2 * micro * net.p2p(act_bytes / tp, inter_node=tp * dp >= per_node)

    dp_total = dp_exposed = 0.0
    if dp > 1:
        params = stage_params(model, tp, pp)
        grad_bytes = 4 if (cfg.grad_reduce_in_fp32 or not cfg.bf16) else 2
        param_bytes = 2 if cfg.bf16 else 4
        bucket = max(40e6, 1e6 * dp) if cfg.overlap_grad_reduce else params
        buckets = max(1, math.ceil(params / bucket))
        per_bucket = params / buckets
        k = min(dp, max(1, per_node // tp))  # DP ranks of one group in a node (TP is innermost)
        if cfg.use_distributed_optimizer:
            t_grad = net.collective("reduce_scatter", per_bucket * grad_bytes, dp, k)
            t_param = net.collective("all_gather", per_bucket * param_bytes, dp, k)
        else:
            t_grad, t_param = net.collective("all_reduce", per_bucket * grad_bytes, dp, k), 0.0
        dp_total = buckets * (t_grad + t_param)
        exposed_grad = buckets * t_grad
        if cfg.overlap_grad_reduce:
            exposed_grad = t_grad + max(0.0, (buckets - 1) * t_grad - overlap * (2 / 3) * t_mb)
        exposed_param = buckets * t_param
        if cfg.overlap_param_gather and cfg.use_distributed_optimizer:
            exposed_param = t_param + max(0.0, (buckets - 1) * t_param - overlap * (1 / 3) * t_mb)
        dp_exposed = exposed_grad + exposed_param

    parts = {
        "compute_s": micro * t_mb,
        "tp_comm_s": micro * tp_mb,
        "pp_bubble_s": bubble,
        "pp_p2p_s": p2p,
        "dp_comm_s": dp_exposed,
        "dp_comm_total_s": dp_total,
    }
    parts["step_s"] = sum(v for k, v in parts.items() if k != "dp_comm_total_s")
    parts["micro_batches"] = micro
    return parts


def calibrate(measured: Measured, net: Network, overlap: float) -> dict:
    """Invert the step model at the measured layout: the compute rate that reproduces the measured step."""
    base = arm_config(measured.arm)
    overrides = {"n_layers": measured.layers} if measured.layers else {}
    model = model_api.model_config(base.model, {**base.model_overrides, **overrides})
    gbs = measured.micro_batches * measured.micro_batch * measured.dp
    cfg = layout_config(base, measured.tp, measured.pp, measured.seq, gbs, measured.micro_batch)
    target = measured.step_s

    def step(rate: float) -> float:
        return step_breakdown(model, cfg, measured.gpus, rate, net, overlap)["step_s"]

    lo, hi = 1e6, 1e18  # FLOP/s
    if step(hi) >= target:
        raise ValueError(
            f"{measured.source}: {measured.arm}'s measured step ({target:.3f} s) is not longer than the modelled "
            "communication alone; check the NCCL input"
        )
    for _ in range(200):  # step() falls as the rate rises: bisect in log space
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if step(mid) < target else (mid, hi)
    rate = math.sqrt(lo * hi)
    parts = step_breakdown(model, cfg, measured.gpus, rate, net, overlap)

    mem = memory_estimate(cfg, model, measured.gpus)
    static = mem["total"] - mem["activations"]
    residual = measured.peak_memory_gib - static
    if math.isfinite(residual) and residual > 0 and mem["activations"] > 0:
        act_scale, act_source = residual / mem["activations"], "measured"
    else:
        act_scale, act_source = 1.0, "analytic (measured peak missing or below the static estimate)"
    return {
        "arm": measured.arm,
        "source": measured.source,
        "layout": f"TP={measured.tp} PP={measured.pp} DP={measured.dp} on {measured.gpus} GPU(s)",
        "tp": measured.tp,
        "gpus": measured.gpus,
        "layers": measured.layers or "all",
        "measured_tokens_per_s_per_gpu": measured.tokens_per_s_per_gpu,
        "measured_step_s": target,
        "modelled_comm_s": parts["step_s"] - parts["compute_s"] - parts["pp_bubble_s"],
        "compute_tflops_per_gpu": rate / 1e12,
        "peak_memory_gib": measured.peak_memory_gib,
        "activation_scale": act_scale,
        "activation_source": act_source,
        "rate": rate,
    }


def pick_calibration(calibrations: list[dict], arm: str, tp: int) -> dict:
    """The measurement at this TP (full depth, then most GPUs first), else the nearest measured TP."""
    mine = [c for c in calibrations if c["arm"] == arm]
    if not mine:
        raise ValueError(f"no model_step measurement of {arm!r} (have: {sorted({c['arm'] for c in calibrations})})")
    return min(
        mine,
        key=lambda c: (abs(math.log2(c["tp"] / tp)), c["tp"], c["layers"] != "all", -c["gpus"]),
    )


def estimate_layout(arm: str, nodes: int, tp: int, pp: int, calibration: dict, net: Network, opts) -> dict:
    """One candidate row: validity, memory, step breakdown, throughput."""
    base = arm_config(arm)
    model = model_api.model_config(base.model, base.model_overrides)
    world = nodes * net.gpus_per_node
    seq = opts.seq or base.seq_length
    gbs = opts.global_batch or base.global_batch_size
    mb = opts.micro_batch or base.micro_batch_size
    cfg = layout_config(base, tp, pp, seq, gbs, mb)
    row = {"arm": arm, "nodes": nodes, "gpus": world, "tp": tp, "pp": pp, "dp": world // (tp * pp)}
    try:
        if tp > net.gpus_per_node:
            raise ValueError(f"TP={tp} spans nodes")
        cfg.check(world)
        model.validate(tp, pp)
    except ValueError as err:
        return row | {"status": f"invalid: {str(err).split(';')[0]}"}
    mem = memory_estimate(cfg, model, world)
    memory = mem["total"] - mem["activations"] + mem["activations"] * calibration["activation_scale"]
    parts = step_breakdown(model, cfg, world, calibration["rate"], net, opts.overlap)
    tokens_per_s = gbs * seq / parts["step_s"] / world
    flops = model_api.flops_per_token(model, seq)
    comm = parts["tp_comm_s"] + parts["pp_p2p_s"] + parts["dp_comm_s"]
    fits = memory <= opts.memory_budget_gib
    compute_from = f"TP={calibration['tp']}" + ("" if calibration["tp"] == tp else " (nearest)")
    return row | {
        "status": "ok" if fits else "no fit",
        "memory_gib": memory,
        **parts,
        "comm_share_percent": 100 * comm / parts["step_s"],
        "tokens_per_s_per_gpu": tokens_per_s,
        "tflops_per_gpu": flops * tokens_per_s / 1e12,
        "mfu_percent": 100 * flops * tokens_per_s / (opts.peak_tflops * 1e12),
        "compute_from": f"{compute_from}, {Path(calibration['source']).name}",
    }


def estimate(arms, node_counts, tps, pps, calibrations, net: Network, opts) -> list[dict]:
    """All candidate rows; per arm and node count the fitting layout of most tokens/s is 'chosen'."""
    rows = []
    for arm in arms:
        for nodes in node_counts:
            group = [
                estimate_layout(arm, nodes, tp, pp, pick_calibration(calibrations, arm, tp), net, opts)
                for tp in tps
                for pp in pps
            ]
            fitting = [r for r in group if r["status"] == "ok"]
            if fitting:
                max(fitting, key=lambda r: r["tokens_per_s_per_gpu"])["status"] = "chosen"
            rows += group
    return rows


# ---------------------------------------------------------------------------------------------
# Command line


def _default_inputs(pattern: str) -> list[str]:
    return [str(p) for p in sorted(report.RESULTS.glob(pattern))]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-step", nargs="+", default=None, help="model_step.py JSON files")
    parser.add_argument("--nccl", nargs="+", default=None, help="nccl_bandwidth.py JSON files (intra-node)")
    parser.add_argument("--arms", nargs="+", default=["olmo_hybrid_7b", "olmo3_7b"], help="trainer configs")
    parser.add_argument("--nodes", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--tp", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--pp", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seq", type=int, default=None, help="default: the arm's config (8192)")
    parser.add_argument("--global-batch", type=int, default=None, help="default: the arm's config (512)")
    parser.add_argument("--micro-batch", type=int, default=None, help="default: the arm's config (1)")
    parser.add_argument("--inter-node-busbw", type=float, default=45.0, help="ASSUMED GB/s per GPU (per NIC)")
    parser.add_argument("--no-nic-aggregation", action="store_true", help="DP groups get 1 x the per-GPU value")
    parser.add_argument("--inter-node-latency-us", type=float, default=5.0, help="ASSUMED per ring step")
    parser.add_argument("--overlap", type=float, default=1.0, help="fraction of the DP overlap window used")
    parser.add_argument("--memory-budget-gib", type=float, default=72.0, help="usable per GPU (80 GB H100: 79.1)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak per GPU for MFU")
    parser.add_argument("--name", default="scaling_estimate")
    parser.add_argument("--out", default=None, help="results directory (default bench/results)")
    opts = parser.parse_args(argv)
    if not 0.0 <= opts.overlap <= 1.0:
        parser.error("--overlap is a fraction in [0, 1]")

    step_files = opts.model_step or _default_inputs("model_step*.json")
    nccl_files = opts.nccl or _default_inputs("nccl_bandwidth_*.json")
    if not step_files or not nccl_files:
        parser.error(
            "needs measurements: bench/model_step.py results (--model-step) and bench/nccl_bandwidth.py "
            f"results (--nccl); found model_step {step_files}, nccl {nccl_files}"
        )
    inputs = []
    measured, nccl_rows = [], []
    for kind, files in (("model_step", step_files), ("nccl_bandwidth", nccl_files)):
        for f in files:
            data = read_results(f)
            env = data.get("environment", {})
            inputs.append({"kind": kind, "path": str(f), "card": env.get("card"), "date": env.get("date")})
            inputs[-1]["commit"] = env.get("commit")
            if kind == "model_step":
                rows = summary_rows(data["rows"])
                measured += [parse_model_step_row(r, str(f)) for r in rows if r.get("arm") in opts.arms]
            else:
                nccl_rows += data["rows"]
    net = Network(
        intra=NcclTable(nccl_rows),
        gpus_per_node=opts.gpus_per_node,
        inter_busbw=opts.inter_node_busbw * GB,
        nic_aggregation=not opts.no_nic_aggregation,
        inter_step_latency=opts.inter_node_latency_us * 1e-6,
    )
    calibrations = [calibrate(m, net, opts.overlap) for m in measured]
    rows = estimate(opts.arms, opts.nodes, opts.tp, opts.pp, calibrations, net, opts)
    chosen = [r for r in rows if r["status"] == "chosen"]
    for arm in opts.arms:
        for nodes in opts.nodes:
            if not any(r["arm"] == arm and r["nodes"] == nodes for r in chosen):
                chosen.append({"arm": arm, "nodes": nodes, "status": "nothing fits the memory budget"})

    assumptions = {
        "inter_node_busbw_gbps_per_gpu": opts.inter_node_busbw,
        "nic_aggregation": not opts.no_nic_aggregation,
        "inter_node_latency_us_per_ring_step": opts.inter_node_latency_us,
        "dp_overlap_fraction": opts.overlap,
        "memory_budget_gib": opts.memory_budget_gib,
        "peak_tflops": opts.peak_tflops,
        "gpus_per_node": opts.gpus_per_node,
    }
    columns = ["arm", "nodes", "gpus", "tp", "pp", "dp", "micro_batches", "status", "memory_gib", "step_s"]
    columns += ["tokens_per_s_per_gpu", "mfu_percent", "comm_share_percent", "tp_comm_s", "dp_comm_s"]
    columns += ["dp_comm_total_s", "pp_bubble_s", "pp_p2p_s", "compute_from"]
    short = ["arm", "nodes", "gpus", "tp", "pp", "dp", "status", "step_s", "tokens_per_s_per_gpu", "mfu_percent"]
    short += ["comm_share_percent", "memory_gib", "compute_from"]
    cal_cols = ["arm", "source", "layout", "layers", "measured_tokens_per_s_per_gpu", "measured_step_s"]
    cal_cols += ["modelled_comm_s", "compute_tflops_per_gpu", "peak_memory_gib", "activation_scale"]
    cal_cols += ["activation_source"]
    notes = "\n\n".join(
        [
            "## Chosen layouts (ESTIMATE: most tokens/s per GPU among layouts that fit memory)",
            report.markdown_table(chosen, short),
            "## Inputs (measurements this estimate rests on)",
            "\n".join(f"- {i['kind']}: `{i['path']}` ({i['card']}, {i['date']}, commit {i['commit']})" for i in inputs),
            "## Calibration: the measured runs, inverted through the same step model",
            report.markdown_table(calibrations, cal_cols),
            "## Assumptions",
            "\n".join(
                [
                    f"- ASSUMED inter-node bandwidth {opts.inter_node_busbw:g} GB/s bus bandwidth per GPU (one "
                    "400 Gb/s NIC per GPU); a DP group with k GPUs per node gets "
                    + ("k x that, capped by the measured NVLink bus bandwidth" if net.nic_aggregation else "1 x that")
                    + f"; {opts.inter_node_latency_us:g} us per ring step across nodes.",
                    f"- DP communication overlap: {opts.overlap:g} of the window (backward of the last micro-batch "
                    "for the grad reduce-scatter, forward of the first for the param all-gather); the last grad and "
                    "first param bucket always exposed; TP communication never overlapped (no TE comm overlap).",
                    "- Per-GPU compute rate (model FLOP/s, optimizer step included) as measured at the same TP, "
                    "else the nearest measured TP; independent of node count, PP and DP; the measured sequence "
                    "length's rate used at the target length. Rank order TP, DP, PP (Megatron's default); TP inside "
                    "a node; sequence parallelism whenever TP > 1.",
                    f"- Memory: fits when the stage-0 estimate <= {opts.memory_budget_gib:g} GiB.",
                    f"- MFU against {opts.peak_tflops:g} TFLOP/s, FLOPs/token from the model config at the target "
                    "sequence length.",
                    "- Not modelled: compute slowed by overlapped communication (SM and memory contention), the "
                    "optimizer step shrinking with DP (it stays in the measured rate), uneven pipeline stages "
                    "(embedding, LM head), stragglers, data loading, checkpoint saves, NCCL algorithm choices "
                    "other than rings (tree, PAT, SHARP).",
                ]
            ),
        ]
    )
    path = report.write(opts.name, rows, columns, notes, out_dir=Path(opts.out) if opts.out else None)
    banner = (
        "**ESTIMATE: an analytic model built on the one-node measurements listed under Inputs, not a measured "
        "multi-node run.**"
    )
    text = path.read_text().split("\n", 1)
    path.write_text(f"{text[0]} (ESTIMATE)\n\n{banner}\n{text[1]}")
    result_json = path.with_suffix(".json")
    data = json.loads(result_json.read_text())
    data = {
        "estimate": True,
        "environment": data["environment"],
        "inputs": inputs,
        "assumptions": assumptions,
        "calibration": [{k: v for k, v in c.items() if k != "rate"} for c in calibrations],
        "chosen": chosen,
        "rows": data["rows"],
    }
    result_json.write_text(json.dumps(data, indent=2))
    print(path.read_text(), flush=True)
    return data


if __name__ == "__main__":
    main()
