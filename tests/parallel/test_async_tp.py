"""Async-TP linears (megatron_hybrid/layers/async_tp.py) equal Megatron's local linears at TP=2 with SP."""

from __future__ import annotations

import pytest
import torch

from tests.distributed_harness import run_on_ranks
from tests.parallel import bodies


def test_async_tp_linears_equal_megatron_on_gloo():
    """The autograd logic (collectives, dgrad, wgrad) with plain collectives in fp32: equal to fp32 rounding."""
    for r in run_on_ranks(bodies.async_tp_linears_match, 2, (False,)):
        assert not r["cuda"]
        assert r["async_fns"] == ["_AllGatherMatmulBackward", "_MatmulReduceScatterBackward"]
        assert max(r["rel"]) < 1e-6, r["rel"]  # out, dx, dW1, dW2


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
@pytest.mark.parametrize("fusion", [False, True], ids=["wgrad", "wgrad-into-main-grad"])
def test_async_tp_linears_equal_megatron_with_symm_mem(fusion):
    """torch's symm_mem fused ops in bf16 (pipelined chunks: another summation order in the reduce-scatter)."""
    for r in run_on_ranks(bodies.async_tp_linears_match, 2, (fusion,)):
        assert r["cuda"]
        assert r["async_fns"] == ["_AllGatherMatmulBackward", "_MatmulReduceScatterBackward"]
        assert max(r["rel"]) < 1e-2, r["rel"]


def test_async_tp_needs_tp_and_sequence_parallel():
    from megatron_hybrid.training.config import load_config

    cfg = load_config(None, {"train_iters": 4, "async_tensor_parallel": True, "tensor_model_parallel_size": 2})
    with pytest.raises(ValueError, match="async_tensor_parallel .* sequence_parallel: true"):
        cfg.check(2)


def test_async_tp_model_step_equals_local_linears(tmp_path):
    """A tiny hybrid (GDN, full and sliding-window attention) at TP=2 with SP: the same loss and gradients with the
    async-TP linears and the GDN mixer's reduce-scatter inside it (plain collectives on gloo) as with Megatron's."""
    ckpt = str(tmp_path / "ref")
    run_on_ranks(bodies.save_reference, 1, ("GAGS", ckpt))
    for r in run_on_ranks(bodies.async_tp_model_step, 2, ("GAGS", ckpt)):
        local, fused = r["local"], r["local_async_tp"]
        assert fused["kinds"] == ["AsyncTPColumnParallelLinear", "AsyncTPRowParallelLinear", "ColumnParallelLinear"]
        # the two GDN layers' input projections gathered their input once each (pipelined under async TP)
        assert local["shared_gathers"] == [False, False] and fused["shared_gathers"] == [True, True]
        assert abs(fused["loss"] - local["loss"]) < 1e-6
        for name, g in local["grads"].items():
            err = ((fused["grads"][name] - g).norm() / g.norm().clamp_min(1e-12)).item()
            assert err < 1e-5, (name, err)
