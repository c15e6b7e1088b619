"""Logits of the Megatron model equal ``transformers``' Olmo 3 / Olmo Hybrid on the same weights."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from megatron_hybrid.hf import mcore_model_from_hf  # noqa: E402


def _rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def tiny_olmo3(**changes):
    cfg = dict(
        vocab_size=128,
        hidden_size=48,
        intermediate_size=80,
        num_hidden_layers=4,
        num_attention_heads=4,  # head_dim 12: not a power of two
        num_key_value_heads=4,
        max_position_embeddings=256,
        sliding_window=5,  # shorter than every test sequence
        pad_token_id=None,
        eos_token_id=None,
        bos_token_id=None,
    )
    cfg.update(changes)
    return transformers.Olmo3Config(**cfg)


def tiny_olmo_hybrid(**changes):
    cfg = dict(
        vocab_size=128,
        hidden_size=48,
        intermediate_size=80,
        num_hidden_layers=4,
        num_attention_heads=4,
        linear_num_key_heads=4,
        linear_key_head_dim=12,
        linear_value_head_dim=24,
        max_position_embeddings=256,
        rope_parameters={"rope_type": "default", "rope_theta": 10_000.0},
        pad_token_id=None,
        eos_token_id=None,
        bos_token_id=None,
    )
    cfg.update(changes)
    return transformers.OlmoHybridConfig(**cfg)


def _randomise(model):
    """HF initialises norms to one and A_log/dt_bias deterministically: make every tensor matter."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("dt_bias"):
                p.copy_(torch.randn(p.shape, generator=gen) - 2)
            elif name.endswith("A_log"):
                p.copy_(torch.rand(p.shape, generator=gen).log())
    return model


def _hf_model(config, tmp_path):
    torch.manual_seed(0)
    model_cls = transformers.Olmo3ForCausalLM if config.model_type == "olmo3" else transformers.OlmoHybridForCausalLM
    model = _randomise(model_cls(config).float().eval())
    model.save_pretrained(tmp_path)
    return model


def _compare(hf_model, tmp_path, seq_len, batch=2):
    mcore = mcore_model_from_hf(tmp_path)
    ids = torch.randint(0, hf_model.config.vocab_size, (batch, seq_len), generator=torch.Generator().manual_seed(1))
    pos = torch.arange(seq_len).expand(batch, -1)
    with torch.no_grad():
        want = hf_model(input_ids=ids).logits
        got = mcore(input_ids=ids, position_ids=pos, attention_mask=None)
    assert got.shape == want.shape
    err = _rel_err(got, want)
    assert err <= 1e-4, f"relative logits error {err:.2e}"


@pytest.mark.parametrize("seq_len", [1, 13, 37])
def test_olmo3_logits_match_transformers(tmp_path, seq_len):
    hf = _hf_model(tiny_olmo3(), tmp_path)
    _compare(hf, tmp_path, seq_len)


def test_olmo3_grouped_query_attention(tmp_path):
    hf = _hf_model(tiny_olmo3(num_key_value_heads=2), tmp_path)
    _compare(hf, tmp_path, 29)


@pytest.mark.parametrize("seq_len", [1, 37, 70])
def test_olmo_hybrid_logits_match_transformers(tmp_path, seq_len):
    hf = _hf_model(tiny_olmo_hybrid(), tmp_path)
    _compare(hf, tmp_path, seq_len)


def test_olmo_hybrid_without_rope_matches(tmp_path):
    """The released Olmo Hybrid checkpoint has no RoPE (rope_parameters=None)."""
    hf = _hf_model(tiny_olmo_hybrid(rope_parameters=None), tmp_path)
    _compare(hf, tmp_path, 41)


def test_olmo_hybrid_sigmoid_beta_and_default_head_dims(tmp_path):
    hf = _hf_model(
        tiny_olmo_hybrid(linear_allow_neg_eigval=False, linear_key_head_dim=None, linear_value_head_dim=None), tmp_path
    )
    _compare(hf, tmp_path, 23)
