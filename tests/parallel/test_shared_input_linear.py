"""The GDN layer's two input projections with one round of TP communication equal the two linears' own calls."""

from __future__ import annotations

import pytest
import torch

from tests.distributed_harness import run_on_ranks
from tests.parallel import bodies


@pytest.mark.parametrize(
    "sequence_parallel,async_cls", [(True, False), (False, False), (True, True)], ids=["sp", "tp-only", "async-tp"]
)
def test_shared_input_projections_equal_two_linears_on_gloo(sequence_parallel, async_cls):
    """fp32, plain collectives: outputs, input gradient and both weight gradients to fp32 rounding."""
    for r in run_on_ranks(bodies.shared_input_projections_match, 2, (sequence_parallel, async_cls, False)):
        assert r["paths"] == {"1": True, "0": False}
        assert max(r["rel"]) < 1e-6, r["rel"]  # y_a, y_b, dx, dW_a, dW_b


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
@pytest.mark.parametrize("async_cls", [False, True], ids=["local", "async-tp"])
@pytest.mark.parametrize("fusion", [False, True], ids=["wgrad", "wgrad-into-main-grad"])
def test_shared_input_projections_on_gpus(async_cls, fusion):
    """bf16 on 2 GPUs, NCCL (and symm_mem for async TP), with and without the wgrad accumulation into main_grad."""
    for r in run_on_ranks(bodies.shared_input_projections_match, 2, (True, async_cls, fusion)):
        assert r["cuda"] and r["paths"] == {"1": True, "0": False}
        assert max(r["rel"]) < 1e-2, r["rel"]
