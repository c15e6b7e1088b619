"""The step profiler: GPU-time accounting on hand-made kernel timelines, and a profiled CPU run's files."""

from __future__ import annotations

import json

import pytest

from megatron_hybrid.training.config import load_config
from megatron_hybrid.training.profiler import category, summarize, to_markdown
from tests.distributed_harness import run_on_ranks
from tests.training import bodies


def test_kernel_names_fall_into_categories():
    assert category("ncclDevKernel_AllGather_RING_LL(ncclDevComm*, unsigned long, ncclWork*)") == "communication"
    assert category("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64") == "gemm"
    assert category("nvjet_tst_256x128_64x4_1x2_h_bz_coopA_NTN") == "gemm"
    assert category("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128>>") == "attention"
    assert category("chunk_fwd_h_kernel") == "gdn (Triton)"
    assert category("conv1d_bwd_ring_kernel") == "gdn (Triton)"
    assert category("rms_norm_fwd_kernel") == "norms, swiglu (Triton)"
    assert category("void multi_tensor_apply_kernel<TensorListMetadata<4>, AdamFunctor<float>>") == "optimizer"
    assert category("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>>") == (
        "other (elementwise, copies, loss)"
    )


def test_summary_counts_overlap_exposure_and_idle():
    # 100 us window, 2 steps: GEMM 0-40, attention 30-50 (overlaps the GEMM by 10), NCCL 45-70 (45-50 hidden under
    # attention, 50-70 exposed), nothing from 70 to 100 (idle 30).
    kernels = [("sm90_xmma_gemm_x", 0, 40), ("flash_fwd_kernel", 30, 50), ("ncclDevKernel_ReduceScatter", 45, 70)]
    kernels += [("elementwise_add", 80 + i, 81 + i) for i in range(4)]  # four calls, 1 us each: idle 30 -> 26
    s = summarize(kernels, wall_us=100.0, steps=2)
    cats = {r["category"]: r for r in s["categories"]}
    assert cats["gemm"]["ms_per_step"] == pytest.approx(0.020)
    assert cats["attention"]["share_of_wall"] == pytest.approx(0.20)
    assert cats["communication"]["kernels"] == 1
    assert s["busy_share"] == pytest.approx(0.74)
    assert s["idle_share"] == pytest.approx(0.26)
    assert s["compute_share"] == pytest.approx(0.54)
    assert s["exposed_communication_share"] == pytest.approx(0.20)
    assert s["top_kernels"][0]["kernel"] == "sm90_xmma_gemm_x"
    (add,) = s["top_kernels_by_category"]["other (elementwise, copies, loss)"]
    assert add == {"kernel": "elementwise_add", "ms_per_step": pytest.approx(0.002), "calls_per_step": 2}
    md = to_markdown(s, "t")
    assert "| gemm | 0.0 | 40.0% | 1 |" in md and "communication not overlapped by compute 20.0%" in md
    assert "| other (elementwise, copies, loss) | `elementwise_add` | 0.00 | 2 |" in md


def test_profile_window_is_checked():
    cfg = load_config(None, {"train_iters": 4, "profile_step_start": 0})
    with pytest.raises(ValueError, match="profile_step_start"):
        cfg.check(1)


@pytest.mark.slow
def test_profiled_cpu_run_writes_trace_and_table(corpus, tmp_path):
    r = run_on_ranks(bodies.profiled_run, 1, (corpus, str(tmp_path)))[0]
    assert r["step"] == 4
    assert r["files"] == ["gpu_time_rank0.json", "gpu_time_rank0.md", "trace_rank0.json.gz"]
    summary = json.loads((tmp_path / "prof" / "gpu_time_rank0.json").read_text())
    assert summary["profiled_steps"] == [2, 3] and summary["steps"] == 2 and summary["wall_ms_per_step"] > 0
