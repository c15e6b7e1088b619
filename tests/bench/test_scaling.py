"""bench/nccl_bandwidth.py on gloo processes, and bench/scaling.py's estimate on synthetic measurements."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import nccl_bandwidth  # noqa: E402
import scaling  # noqa: E402

from tests.distributed_harness import run_on_ranks  # noqa: E402

# ---------------------------------------------------------------------------------------------
# nccl_bandwidth


def _measure_body(rank, world_size, sizes):
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    return nccl_bandwidth.measure(
        sizes=sizes, dtype=torch.bfloat16, device=torch.device("cpu"), warmup=1, iters=3, repeats=3
    )


def test_bus_factor_and_sizes():
    assert nccl_bandwidth.bus_factor("all_reduce", 8) == pytest.approx(2 * 7 / 8)
    assert nccl_bandwidth.bus_factor("all_gather", 8) == pytest.approx(7 / 8)
    assert nccl_bandwidth.bus_factor("reduce_scatter", 4) == pytest.approx(3 / 4)
    assert nccl_bandwidth.message_sizes(2**20, 2**30) == [4**k * 2**20 for k in range(6)]
    assert nccl_bandwidth.message_sizes(1000, 5000, 4) == [1000, 4000, 5000]  # the maximum always included


@pytest.mark.slow
def test_nccl_bandwidth_on_two_gloo_ranks():
    sizes = [1024, 16 * 1024 + 6]  # the second is not a whole number of bf16 elements per rank
    per_rank = run_on_ranks(_measure_body, 2, args=(sizes,))
    rows = per_rank[0]
    assert per_rank[1] == rows  # every rank reports the slowest rank's time
    # 16390 B is cut to whole elements per rank: 2 ranks x 4097 bf16 elements = 16388 B
    assert {(r["op"], r["bytes"]) for r in rows} == {(op, b) for op in nccl_bandwidth.OPS for b in (1024, 16388)}
    for r in rows:
        assert r["ranks"] == 2 and r["groups"] == 1
        assert r["time_us"] > 0 and r["algbw_gbps"] > 0 and r["busbw_gbps"] > 0
        assert r["algbw_gbps"] == pytest.approx(r["bytes"] / (r["time_us"] * 1e-6) / 1e9)
        factor = 1.0 if r["op"] == "all_reduce" else 0.5  # 2(n-1)/n and (n-1)/n at n = 2
        assert r["busbw_gbps"] == pytest.approx(r["algbw_gbps"] * factor)


@pytest.mark.slow
def test_nccl_bandwidth_cli_writes_results(tmp_path):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        str(ROOT / "bench" / "nccl_bandwidth.py"), "--backend", "gloo", "--device", "cpu",
        "--min-bytes", "1024", "--max-bytes", "4096", "--warmup", "1", "--iters", "2", "--repeats", "2",
        "--out", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((tmp_path / "nccl_bandwidth_2gpu.json").read_text())
    assert data["environment"]["card"] == "cpu"
    assert sorted({r["bytes"] for r in data["rows"]}) == [1024, 4096]
    assert all(r["busbw_gbps"] > 0 for r in data["rows"])
    assert "busbw = algbw x 2(n-1)/n" in (tmp_path / "nccl_bandwidth_2gpu.md").read_text()


# ---------------------------------------------------------------------------------------------
# scaling: synthetic inputs in the formats model_step.py and nccl_bandwidth.py write

MEASURED = {"olmo_hybrid_7b": 9000.0, "olmo3_7b": 8500.0}  # tokens/s per GPU at TP=2 on 8 GPUs


def write_model_step(path: Path, tp: int = 2, gpus: int = 8, micro: int = 8, peak_gib: float = 50.0) -> Path:
    dp = gpus // tp
    rows = [
        {
            "arm": arm,
            "layers": "all",
            "gpus": gpus,
            "layout": f"TP={tp} PP=1 VP=None DP={dp}, {micro} micro-batch(es) of 1 x 8192 per step",
            "tokens_per_s_per_gpu": tps,
            "tflops_per_gpu": 0.0,
            "mfu_percent": 0.0,
            "peak_memory_gib": peak_gib,
        }
        for arm, tps in MEASURED.items()
    ]
    path.write_text(json.dumps({"environment": {"card": "synthetic"}, "rows": rows}))
    return path


def write_nccl(path: Path, busbw_gbps: float = 360.0, latency_us: float = 20.0) -> Path:
    rows = []
    for n in (2, 4, 8):
        for op in nccl_bandwidth.OPS:
            for size in nccl_bandwidth.message_sizes(1024, 2**30):
                seconds = latency_us * 1e-6 + size * nccl_bandwidth.bus_factor(op, n) / (busbw_gbps * 1e9)
                algbw = size / seconds / 1e9
                rows.append(
                    {
                        "op": op,
                        "ranks": n,
                        "bytes": size,
                        "time_us": seconds * 1e6,
                        "algbw_gbps": algbw,
                        "busbw_gbps": algbw * nccl_bandwidth.bus_factor(op, n),
                    }
                )
    path.write_text(json.dumps({"environment": {"card": "synthetic"}, "rows": rows}))
    return path


@pytest.fixture
def inputs(tmp_path):
    return write_model_step(tmp_path / "model_step.json"), write_nccl(tmp_path / "nccl_bandwidth_8gpu.json")


def run_scaling(tmp_path, model_step, nccl, *extra) -> dict:
    out = tmp_path / "out"
    argv = ["--model-step", str(model_step), "--nccl", str(nccl), "--out", str(out), *map(str, extra)]
    return scaling.main(argv)


def pick(data: dict, **match) -> list[dict]:
    return [r for r in data["rows"] if all(r[k] == v for k, v in match.items())]


def test_estimate_reproduces_the_measured_layout(tmp_path, inputs):
    # One node at the measured layout and batch: the inverted model must give back the measurement.
    data = run_scaling(tmp_path, *inputs, "--nodes", 1, "--tp", 2, "--pp", 1, "--global-batch", 32)
    for arm, tps in MEASURED.items():
        (row,) = pick(data, arm=arm, nodes=1)
        assert row["tokens_per_s_per_gpu"] == pytest.approx(tps, rel=1e-6)
        assert row["tp_comm_s"] > 0  # TP=2 over NVLink is part of the measured step ...
        assert row["compute_s"] < row["step_s"]  # ... so the compute rate is above the measured one


def test_more_nodes_cost_only_communication(tmp_path, inputs):
    args = ("--nodes", 8, 64, "--tp", 2, "--pp", 1)
    data = run_scaling(tmp_path, *inputs, *args)
    for arm in MEASURED:
        (r8,) = pick(data, arm=arm, nodes=8)
        (r64,) = pick(data, arm=arm, nodes=64)
        per_gpu_tokens = {r["nodes"]: 512 * 8192 / r["gpus"] for r in (r8, r64)}
        # the same compute per token on every GPU ...
        assert r8["compute_s"] / per_gpu_tokens[8] == pytest.approx(r64["compute_s"] / per_gpu_tokens[64])
        # ... the step is compute plus communication (PP=1: no bubble) ...
        for r in (r8, r64):
            comm = r["tp_comm_s"] + r["dp_comm_s"] + r["pp_p2p_s"]
            assert r["pp_bubble_s"] == 0 and r["step_s"] == pytest.approx(r["compute_s"] + comm)
        # ... and more nodes lose per-GPU throughput through a larger communication share only.
        assert r64["tokens_per_s_per_gpu"] < r8["tokens_per_s_per_gpu"]
        assert r64["comm_share_percent"] > r8["comm_share_percent"]
        assert r64["dp_comm_total_s"] > 0
    # With a practically free network the node count stops mattering.
    free_nccl = write_nccl(tmp_path / "free.json", busbw_gbps=1e9, latency_us=0.0)
    fast = run_scaling(tmp_path, inputs[0], free_nccl, *args, "--inter-node-busbw", 1e9, "--inter-node-latency-us", 0)
    for arm in MEASURED:
        (f8,) = pick(fast, arm=arm, nodes=8)
        (f64,) = pick(fast, arm=arm, nodes=64)
        assert f64["tokens_per_s_per_gpu"] == pytest.approx(f8["tokens_per_s_per_gpu"], rel=1e-4)
        assert f64["comm_share_percent"] < 0.01


def test_faster_network_lowers_the_communication_share(tmp_path, inputs):
    # 20 and 40 GB/s per NIC: even 8 NICs x 40 stay under the synthetic NVLink 360 GB/s cap.
    args = ("--nodes", 64, "--overlap", 0)
    slow = run_scaling(tmp_path, *inputs, *args, "--inter-node-busbw", 20)
    fast = run_scaling(tmp_path, *inputs, *args, "--inter-node-busbw", 40)
    lone = run_scaling(tmp_path, *inputs, *args, "--inter-node-busbw", 20, "--no-nic-aggregation")
    capped = run_scaling(tmp_path, *inputs, *args, "--inter-node-busbw", 4000)
    compared = 0
    for s, f, one, cap in zip(slow["rows"], fast["rows"], lone["rows"], capped["rows"]):
        assert (s["arm"], s["tp"], s["pp"]) == (f["arm"], f["tp"], f["pp"]) == (cap["arm"], cap["tp"], cap["pp"])
        if s["status"].startswith("invalid"):
            continue
        compared += 1
        assert f["comm_share_percent"] < s["comm_share_percent"]
        assert f["tokens_per_s_per_gpu"] > s["tokens_per_s_per_gpu"]
        assert f["compute_s"] == pytest.approx(s["compute_s"])  # the network changes communication only
        assert cap["comm_share_percent"] <= f["comm_share_percent"]
        if s["tp"] < 8:  # several DP ranks per node share their NICs' bandwidth; one NIC alone is slower
            assert one["dp_comm_s"] > s["dp_comm_s"]
    assert compared >= 12
    # At TP=1 a node's 8 NICs x 4000 GB/s are capped by NVLink: the data-parallel traffic still takes time.
    (tp1,) = pick(capped, arm="olmo3_7b", tp=1, pp=1)
    assert tp1["dp_comm_s"] > 0


def test_overlap_hides_dp_communication(tmp_path, inputs):
    hidden = run_scaling(tmp_path, *inputs, "--nodes", 64, "--tp", 2, "--pp", 1)
    exposed = run_scaling(tmp_path, *inputs, "--nodes", 64, "--tp", 2, "--pp", 1, "--overlap", 0)
    for h, e in zip(hidden["rows"], exposed["rows"]):
        assert e["dp_comm_s"] == pytest.approx(e["dp_comm_total_s"])
        assert h["dp_comm_s"] < 0.5 * h["dp_comm_total_s"]


def test_a_layout_that_does_not_fit_is_never_chosen(tmp_path, inputs):
    roomy = run_scaling(tmp_path, *inputs, "--nodes", 8, "--memory-budget-gib", 1000)
    for arm in MEASURED:
        (best,) = pick(roomy, arm=arm, status="chosen")
        valid = [r for r in pick(roomy, arm=arm) if not r["status"].startswith("invalid")]
        assert best["tokens_per_s_per_gpu"] == max(r["tokens_per_s_per_gpu"] for r in valid)
    budget = min(r["memory_gib"] for r in pick(roomy, status="chosen")) - 0.01
    tight = run_scaling(tmp_path, *inputs, "--nodes", 8, "--memory-budget-gib", budget)
    for row in tight["rows"]:
        if "memory_gib" in row and row["memory_gib"] > budget:
            assert row["status"] == "no fit"
    for arm in MEASURED:
        (before,) = pick(roomy, arm=arm, status="chosen")
        chosen = pick(tight, arm=arm, status="chosen")
        assert all(r["memory_gib"] <= budget for r in chosen)
        assert all((r["tp"], r["pp"]) != (before["tp"], before["pp"]) for r in chosen)
    none = run_scaling(tmp_path, *inputs, "--nodes", 8, "--memory-budget-gib", 1)
    assert not pick(none, status="chosen")
    assert all(c["status"] == "nothing fits the memory budget" for c in none["chosen"])


def test_memory_follows_the_layout(tmp_path, inputs):
    data = run_scaling(tmp_path, *inputs, "--nodes", 8, "--memory-budget-gib", 1000)
    olmo3 = {(r["tp"], r["pp"]): r["memory_gib"] for r in pick(data, arm="olmo3_7b")}
    assert olmo3[(1, 1)] > olmo3[(2, 1)] > olmo3[(4, 1)] > olmo3[(8, 1)]  # weights, grads, activations / TP
    # A higher measured peak means more activation memory at every layout.
    heavy = write_model_step(tmp_path / "heavy.json", peak_gib=70.0)
    more = run_scaling(tmp_path, heavy, inputs[1], "--nodes", 8, "--memory-budget-gib", 1000)
    for r in pick(more, arm="olmo3_7b"):
        assert r["memory_gib"] > olmo3[(r["tp"], r["pp"])]


def test_hybrid_heads_rule_out_tp_4_and_8(tmp_path, inputs):
    data = run_scaling(tmp_path, *inputs, "--nodes", 8)
    for r in pick(data, arm="olmo_hybrid_7b"):
        assert r["status"].startswith("invalid") == (r["tp"] in (4, 8))  # 30 heads: TP must divide 30
    assert any(r["tp"] == 4 and r["status"] != "invalid" for r in pick(data, arm="olmo3_7b"))


def test_output_is_an_estimate_that_names_its_inputs(tmp_path, inputs):
    model_step, nccl = inputs
    data = run_scaling(tmp_path, model_step, nccl, "--inter-node-busbw", 50)
    assert data["estimate"] is True
    assert {(i["kind"], i["path"]) for i in data["inputs"]} == {
        ("model_step", str(model_step)),
        ("nccl_bandwidth", str(nccl)),
    }
    assert data["assumptions"]["inter_node_busbw_gbps_per_gpu"] == 50
    assert {c["source"] for c in data["calibration"]} == {str(model_step)}
    on_disk = json.loads((tmp_path / "out" / "scaling_estimate.json").read_text())
    assert on_disk["inputs"] == data["inputs"] and on_disk["rows"] == data["rows"]
    text = (tmp_path / "out" / "scaling_estimate.md").read_text()
    assert text.splitlines()[0] == "# scaling_estimate (ESTIMATE)"
    assert str(model_step) in text and str(nccl) in text
    assert "ASSUMED inter-node bandwidth 50 GB/s" in text
    for nodes in (8, 64):
        for arm in MEASURED:
            (chosen,) = [c for c in data["chosen"] if c["arm"] == arm and c["nodes"] == nodes]
            assert chosen["status"] == "chosen" and 0 < chosen["mfu_percent"] < 100
            assert math.isclose(chosen["mfu_percent"], 100 * chosen["tflops_per_gpu"] / 989.0, rel_tol=1e-9)


def test_measurement_faster_than_its_modelled_communication_is_refused(tmp_path, inputs):
    crawling = write_nccl(tmp_path / "crawling.json", busbw_gbps=0.001)  # TP=2 comm alone would take minutes
    with pytest.raises(ValueError, match="not longer than the modelled communication"):
        run_scaling(tmp_path, inputs[0], crawling)


def test_a_multi_round_record_calibrates_on_each_arms_median(tmp_path):
    """model_step.py --repeat N writes one row per arm and round, then a ``median`` row per arm: the estimate rests on
    the median, not on whichever round comes first."""
    single = write_model_step(tmp_path / "single.json")
    data = json.loads(single.read_text())
    rounds = []
    for label, scale in ((1, 1.10), (2, 0.95), ("median", 1.0)):
        rounds += [dict(r, round=label, tokens_per_s_per_gpu=r["tokens_per_s_per_gpu"] * scale) for r in data["rows"]]
    multi = tmp_path / "multi.json"
    multi.write_text(json.dumps({"environment": {"card": "synthetic"}, "rows": rounds}))
    nccl = write_nccl(tmp_path / "nccl_bandwidth_8gpu.json")
    assert [r["round"] for r in scaling.summary_rows(rounds)] == ["median", "median"]
    from_multi = run_scaling(tmp_path / "a", multi, nccl, "--nodes", "1")
    from_single = run_scaling(tmp_path / "b", single, nccl, "--nodes", "1")
    chosen = [pick(d, status="chosen") for d in (from_multi, from_single)]
    for a, b in zip(*chosen, strict=True):
        assert a.pop("compute_from").endswith("multi.json") and b.pop("compute_from").endswith("single.json")
        assert a == b
