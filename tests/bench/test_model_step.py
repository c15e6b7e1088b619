"""bench/model_step.py's reading of the trainer's TensorBoard scalars: medians after warm-up, skipped steps, spread."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


def test_perf_medians_drop_warmup_and_skipped_steps(tmp_path):
    from model_step import perf_medians
    from torch.utils.tensorboard import SummaryWriter

    tokens = {1: 1000.0, 2: 1000.0, 3: 8000.0, 4: 8200.0, 5: 100.0, 6: 7800.0}  # warm-up 1-2, profiled step 5
    with SummaryWriter(str(tmp_path)) as w:
        for step, value in tokens.items():
            w.add_scalar("perf/tokens_per_s", value, step)
            w.add_scalar("perf/tflops_per_gpu", value / 20, step)
            w.add_scalar("perf/mfu", 0.4, step)
            w.add_scalar("perf/peak_memory_gib", 60.0 + step, step)
    row = perf_medians(tmp_path, gpus=2, after_step=2, skip_steps=(5,))
    assert row["tokens_per_s_per_gpu"] == pytest.approx(4000.0)  # median of 8000, 8200, 7800 over 2 GPUs
    assert row["step_spread_percent"] == pytest.approx(100 * 400 / 8000)
    assert row["mfu_percent"] == pytest.approx(40.0)
    assert row["peak_memory_gib"] == pytest.approx(64.0)  # median of steps 3, 4, 6


def test_arm_specs_and_same_round_ratios():
    from model_step import add_ratios, parse_arm

    assert parse_arm("olmo3_7b") == ("olmo3_7b", [], {})
    assert parse_arm("olmo_hybrid_7b:--async-tensor-parallel true") == (
        "olmo_hybrid_7b",
        ["--async-tensor-parallel", "true"],
        {},
    )
    assert parse_arm("olmo3_7b:MEGATRON_HYBRID_FUSED_ROPE=0 --lr 1e-3 CUDA_DEVICE_MAX_CONNECTIONS=8") == (
        "olmo3_7b",
        ["--lr", "1e-3"],
        {"MEGATRON_HYBRID_FUSED_ROPE": "0", "CUDA_DEVICE_MAX_CONNECTIONS": "8"},
    )
    with pytest.raises(ValueError, match="trainer config name"):
        parse_arm(":--lr 1")
    specs = ["hyb", "hyb:--x 1", "olmo"]
    tokens = {("hyb", 1): 9.0, ("hyb:--x 1", 1): 9.9, ("olmo", 1): 9.0, ("hyb", 2): 8.8, ("hyb:--x 1", 2): float("nan")}
    tokens[("olmo", 2)] = 8.0
    rows = [
        {"arm": a, "round": r, "layers": "all", "gpus": 4, "layout": "L", "tokens_per_s_per_gpu": t}
        for (a, r), t in tokens.items()
    ]
    add_ratios(rows, specs)
    by = {(r["arm"], r["round"]): r for r in rows}
    assert by[("hyb", 1)]["vs_last_arm"] == pytest.approx(1.0)
    assert by[("hyb:--x 1", 1)]["vs_last_arm"] == pytest.approx(1.1)
    assert by[("hyb", 2)]["vs_last_arm"] == pytest.approx(1.1)
    assert "vs_last_arm" not in by[("hyb:--x 1", 2)]  # a failed run (nan) gets no ratio
    assert by[("hyb", "median")]["vs_last_arm"] == pytest.approx(1.05)
    assert by[("hyb:--x 1", "median")]["tokens_per_s_per_gpu"] == pytest.approx(9.9)  # the failed round left out
    assert by[("olmo", "median")]["layout"] == "L"
