"""The ``--dry-run`` memory estimate's per-block activation bytes equal what autograd really keeps (Triton Functions
under the interpreter, the same tensors as on a GPU), counted once per storage like bench/activation_memory.py."""

from __future__ import annotations

import os

import pytest
import torch

assert os.environ.get("TRITON_INTERPRET") == "1", "run through tests/ops/test_triton_interpreter.py"


@pytest.mark.parametrize("kind,recompute_wy", [("G", "0"), ("G", "1"), ("A", "0")], ids=["G", "G-recompute-wy", "A"])
def test_block_activation_bytes_match_autograd(kind, recompute_wy, monkeypatch):
    """(A sliding-window block keeps what a full one does on the GPU, where FlexAttention saves q, k, v, the output
    and the log-sum-exp; the CPU's banded fallback for windows shorter than the sequence keeps more.)"""
    from megatron.core.transformer.spec_utils import build_module

    from layer_specs.hybrid import attention_layer_spec, gdn_layer_spec
    from megatron_hybrid.compat.distributed import init_distributed
    from megatron_hybrid.models import presets
    from megatron_hybrid.training.estimate import block_activation_bytes, saved_tensors

    monkeypatch.setenv("MEGATRON_HYBRID_GDN_RECOMPUTE_WY", recompute_wy)
    init_distributed()
    cfg = presets.tiny("GGGA", gdn_num_key_heads=4, gdn_key_head_dim=16, gdn_value_head_dim=32)
    tcfg = cfg.transformer_config(params_dtype=torch.bfloat16, bf16=True, use_cpu_initialization=True)
    spec = {"G": gdn_layer_spec(), "A": attention_layer_spec(None)}
    block = build_module(spec[kind], config=tcfg, layer_number=1)
    x = torch.randn(64, 1, cfg.d_model, dtype=torch.bfloat16, requires_grad=True)
    assert sum(e["bytes"] for e in saved_tensors(block, x)) / x.shape[0] == block_activation_bytes(cfg, kind)
